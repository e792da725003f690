"""Recovery through `run_main`: resume, exactly-once state, GC, and every error."""

import shutil
from datetime import timedelta

import pytest
from _stores import change_set_count, change_sets, stored_state
from hypothesis import given, settings
from hypothesis import strategies as st

import fastflow.operators as op
from fastflow._runtime.snapshot import load_resume
from fastflow._store.store import RecoveryStore
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.outputs import FixedPartitionedSink, StatefulSinkPartition
from fastflow.recovery import (
    CorruptPartitionError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    PartitionsExistError,
    RecoveryConfig,
    StoreLockedError,
    init_db_dir,
)
from fastflow.testing import TestingSink, TestingSource, run_main

TINY_EPOCH = timedelta(microseconds=1)


def sum_flow(items, out):
    flow = Dataflow("sums")
    s = op.input("inp", flow, TestingSource(items, batch_size=3))
    s = op.stateful_map("sum", s, lambda acc, v: ((acc or 0) + v, (acc or 0) + v))
    op.output("out", s, TestingSink(out))
    return flow


def final_sums(pairs):
    sums = {}
    for key, value in pairs:
        if not isinstance(key, str):
            continue
        sums[key] = sums.get(key, 0) + value
    return sums


items_st = st.lists(st.tuples(st.sampled_from("abcd"), st.integers(-5, 5)), max_size=40)


@settings(max_examples=40, deadline=None)
@given(
    items=items_st,
    aborts=st.lists(st.integers(0, 40), max_size=4),
    interval=st.sampled_from([TINY_EPOCH, timedelta(seconds=10)]),
)
def test_run_and_resume_after_aborts_equals_one_uninterrupted_run(
    tmp_path_factory, items, aborts, interval
):
    db = tmp_path_factory.mktemp("db")
    init_db_dir(db, 2)
    script = list(items)
    for at in sorted(aborts, reverse=True):
        script.insert(min(at, len(script)), TestingSource.ABORT())
    config = RecoveryConfig(db)
    for _attempt in range(len(aborts) + 1):
        run_main(sum_flow(script, []), epoch_interval=interval, recovery_config=config)
    assert stored_state(db, "sums.sum.stateful_batch") == final_sums(items)
    # Everything was consumed: one more run has nothing left to do.
    out = []
    run_main(sum_flow(script, out), epoch_interval=interval, recovery_config=config)
    assert out == []


def test_state_resumes_with_new_input(tmp_path):
    init_db_dir(tmp_path, 1)
    config = RecoveryConfig(tmp_path)
    out = []
    run_main(sum_flow([("a", 1), ("b", 2)], out), recovery_config=config)
    run_main(sum_flow([("a", 10)], out), recovery_config=config)
    assert out == [("a", 1), ("b", 2), ("a", 11)]


def test_without_recovery_every_run_starts_fresh(tmp_path):
    out = []
    run_main(sum_flow([("a", 1)], out))
    run_main(sum_flow([("a", 1)], out))
    assert out == [("a", 1), ("a", 1)]


def test_discarded_key_is_a_tombstone_and_starts_over(tmp_path):
    init_db_dir(tmp_path, 1)
    config = RecoveryConfig(tmp_path)

    def flow_of(items, out):
        flow = Dataflow("disc")
        s = op.input("inp", flow, TestingSource(items))
        # A value of 0 resets the key: returning None as the state discards it.
        s = op.stateful_map("m", s, lambda acc, v: (None if v == 0 else (acc or 0) + v, acc))
        op.output("out", s, TestingSink(out))
        return flow

    out = []
    # Created and discarded within one epoch: the key never reaches the store.
    run_main(flow_of([("a", 1), ("a", 0)], out), recovery_config=config)
    assert stored_state(tmp_path, "disc.m.stateful_batch") == {}
    assert change_sets(tmp_path / "part-0.sqlite3", "disc.m.stateful_batch") == []
    run_main(flow_of([("a", 5)], out), recovery_config=config)
    assert out == [("a", None), ("a", 1), ("a", None)]
    # Committed in one run (epoch 2, then compacted into a base as the next run starts),
    # discarded in the next (epoch 3): a deletion in a delta.
    run_main(flow_of([("a", 0)], out), recovery_config=config)
    assert out[-1] == ("a", 5)
    assert stored_state(tmp_path, "disc.m.stateful_batch") == {}
    assert change_sets(tmp_path / "part-0.sqlite3", "disc.m.stateful_batch") == [
        (2, "base", 1, {"set": {"a": 5}, "del": []}),
        (3, "delta", 1, {"set": {}, "del": ["a"]}),
    ]


class CountLogic(op.StatefulLogic):
    def __init__(self, resume):
        self.n = resume or 0

    def on_item(self, value):
        self.n += 1
        return [self.n], self.RETAIN

    def snapshot(self):
        return self.n


def test_general_logic_gets_its_snapshot_back(tmp_path):
    init_db_dir(tmp_path, 1)
    config = RecoveryConfig(tmp_path)
    out = []
    for items in ([("a", "x"), ("a", "y")], [("a", "z")]):
        flow = Dataflow("logic")
        s = op.input("inp", flow, TestingSource(items))
        op.output("out", op.stateful("count", s, CountLogic), TestingSink(out))
        run_main(flow, recovery_config=config)
    assert out == [("a", 1), ("a", 2), ("a", 3)]


class ListSink(FixedPartitionedSink):
    """Two partitions that remember how many values they wrote."""

    def __init__(self, written):
        self.written = written

    def list_parts(self):
        return ["p0", "p1"]

    def build_part(self, step_id, for_part, resume_state):
        return ListPart(for_part, self.written, resume_state or 0)


class ListPart(StatefulSinkPartition):
    def __init__(self, name, written, count):
        self.name, self.written, self.count = name, written, count

    def write_batch(self, values):
        for v in values:
            self.count += 1
            self.written.append((self.name, self.count, v))

    def snapshot(self):
        return self.count


def test_stateful_sink_partitions_resume_their_state(tmp_path):
    init_db_dir(tmp_path, 1)
    config = RecoveryConfig(tmp_path)
    written = []
    for items in ([("a", 1), ("b", 2)], [("a", 3)]):
        flow = Dataflow("sink")
        op.output("out", op.input("inp", flow, TestingSource(items)), ListSink(written))
        run_main(flow, recovery_config=config)
    part_of_a = ListSink([]).part_fn("a") % 2
    a_part = f"p{part_of_a}"
    assert [w for w in written if w[2] in (1, 3)] == [(a_part, 1, 1), (a_part, 2, 3)]


def test_backup_window_keeps_every_epoch_in_it_restorable_then_collects(tmp_path):
    # Forty batches, each in its own epoch, add 3 to one key; the window is 5 epochs.
    # The same run on a store that keeps everything tells what each epoch's state was.
    collected, kept = tmp_path / "collected", tmp_path / "kept"
    for db, window in ((collected, 5 * TINY_EPOCH), (kept, timedelta(days=1))):
        init_db_dir(db, 1)
        config = RecoveryConfig(db, backup_interval=window)
        run_main(sum_flow([("k", 1)] * 120, []), epoch_interval=TINY_EPOCH, recovery_config=config)
    with RecoveryStore.inspect(collected) as store, RecoveryStore.inspect(kept) as reference:
        resume_epoch = store.plan().epoch
        assert resume_epoch == reference.plan().epoch > 40
        (_, horizon) = store.partition_stats(0)
        # Every resume epoch above the GC horizon restores the state of its time.
        for epoch in range(horizon + 1, resume_epoch + 1):
            assert load_resume(store, epoch) == load_resume(reference, epoch)
        assert reference.partition_stats(0)[1] == 0
    # The window (5 epochs, plus the epoch being written) is kept; older history is gone.
    assert resume_epoch - 1 - 5 - 2 <= horizon <= resume_epoch - 1 - 5
    assert change_set_count(collected) < change_set_count(kept) / 3
    assert stored_state(collected, "sums.sum.stateful_batch") == {"k": 120}


def test_copy_taken_within_backup_window_resumes(tmp_path):
    db = tmp_path / "db"
    init_db_dir(db, 1)
    config = RecoveryConfig(db, backup_interval=timedelta(seconds=100))
    run_main(sum_flow([("a", 1)], []), recovery_config=config)
    backup = tmp_path / "backup"
    shutil.copytree(db, backup)
    run_main(sum_flow([("a", 2)], []), recovery_config=config)
    out = []
    run_main(sum_flow([("a", 5)], out), recovery_config=RecoveryConfig(backup))
    assert out == [("a", 6)]


def test_key_churn_keeps_the_store_bounded_by_live_keys(tmp_path):
    init_db_dir(tmp_path, 1)
    config = RecoveryConfig(tmp_path)
    out = []

    def churn(round_no):
        # Every key is created in one epoch and discarded in the next: a deletion each.
        items = []
        for i in range(50):
            key = f"r{round_no}k{i}"
            items += [(key, 1), (key, 0)]
        return items

    rows_after = []
    for round_no in range(6):
        flow = Dataflow("churn")
        s = op.input("inp", flow, TestingSource(churn(round_no), batch_size=1))
        s = op.stateful_map("m", s, lambda acc, v: (None if v == 0 else v, v))
        op.output("out", s, TestingSink(out))
        run_main(flow, epoch_interval=TINY_EPOCH, recovery_config=config)
        rows_after.append(change_set_count(tmp_path))
    # 300 keys came and went; compaction and GC dropped their deletions for good.
    assert stored_state(tmp_path, "churn.m.stateful_batch") == {}
    assert max(rows_after) <= 10


def test_unencodable_state_names_step_key_and_type(tmp_path):
    init_db_dir(tmp_path, 1)
    flow = Dataflow("bad")
    s = op.input("inp", flow, TestingSource([("k", 1)]))
    s = op.stateful_map("gen", s, lambda acc, v: ((x for x in [v]), v))
    op.output("out", s, TestingSink([]))
    with pytest.raises(FastflowRuntimeError) as info:
        run_main(flow, recovery_config=RecoveryConfig(tmp_path))
    message = str(info.value)
    assert "'bad.gen.stateful_batch'" in message
    assert "'k'" in message
    assert "generator" in message


def test_missing_directory_is_an_error_not_a_fresh_start(tmp_path):
    with pytest.raises(NoPartitionsError):
        run_main(sum_flow([], []), recovery_config=RecoveryConfig(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()


def test_empty_directory_has_no_partitions(tmp_path):
    with pytest.raises(NoPartitionsError, match="init-recovery"):
        run_main(sum_flow([], []), recovery_config=RecoveryConfig(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_missing_partition_is_named(tmp_path):
    init_db_dir(tmp_path, 3)
    (tmp_path / "part-1.sqlite3").unlink()
    with pytest.raises(MissingPartitionsError, match="1"):
        run_main(sum_flow([], []), recovery_config=RecoveryConfig(tmp_path))


def test_partitions_of_different_inits_are_inconsistent(tmp_path):
    init_db_dir(tmp_path / "a", 2)
    init_db_dir(tmp_path / "b", 2)
    shutil.copy(tmp_path / "b" / "part-1.sqlite3", tmp_path / "a" / "part-1.sqlite3")
    with pytest.raises(InconsistentPartitionsError):
        run_main(sum_flow([], []), recovery_config=RecoveryConfig(tmp_path / "a"))


def test_corrupt_partition_is_named_and_left_untouched(tmp_path):
    init_db_dir(tmp_path, 1)
    part = tmp_path / "part-0.sqlite3"
    part.write_bytes(b"this is not a database" * 100)
    before = part.read_bytes()
    with pytest.raises(CorruptPartitionError, match="part-0.sqlite3"):
        run_main(sum_flow([("a", 1)], []), recovery_config=RecoveryConfig(tmp_path))
    assert part.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-0.sqlite3"]


def test_second_execution_on_a_directory_in_use_is_refused(tmp_path):
    init_db_dir(tmp_path, 1)
    with RecoveryStore.open(tmp_path):
        with pytest.raises(StoreLockedError):
            run_main(sum_flow([("a", 1)], []), recovery_config=RecoveryConfig(tmp_path))
    out = []
    run_main(sum_flow([("a", 1)], out), recovery_config=RecoveryConfig(tmp_path))
    assert out == [("a", 1)]


def test_init_refuses_existing_partitions_unless_forced(tmp_path):
    init_db_dir(tmp_path, 1)
    run_main(sum_flow([("a", 1)], []), recovery_config=RecoveryConfig(tmp_path))
    with pytest.raises(PartitionsExistError):
        init_db_dir(tmp_path, 1)
    assert stored_state(tmp_path, "sums.sum.stateful_batch") == {"a": 1}
    init_db_dir(tmp_path, 1, force=True)
    assert stored_state(tmp_path, "sums.sum.stateful_batch") == {}


def test_an_epoch_writes_only_the_keys_it_changed(tmp_path):
    init_db_dir(tmp_path, 1)
    flow = Dataflow("sums")
    # First batch: 500 keys; second batch: one key six times. One epoch each.
    items = [(f"k{i}", 1) for i in range(500)] + [("k7", 1)] * 6
    s = op.input("inp", flow, TestingSource(items, batch_size=500))
    s = op.stateful_map("sum", s, lambda acc, v: ((acc or 0) + v, None))
    op.output("out", s, TestingSink([]))
    config = RecoveryConfig(tmp_path, backup_interval=timedelta(days=1))
    run_main(flow, epoch_interval=TINY_EPOCH, recovery_config=config)
    per_epoch = change_sets(tmp_path / "part-0.sqlite3", "sums.sum.stateful_batch")
    assert [(epoch, kind, count) for epoch, kind, count, _ in per_epoch] == [
        (1, "base", 500),
        (2, "delta", 1),
    ]
    assert per_epoch[1][3] == {"set": {"k7": 7}, "del": []}


def test_a_resumed_file_sink_drops_lines_written_after_its_snapshot(tmp_path):
    from fastflow.connectors.files import FileSink

    db, out_file = tmp_path / "db", tmp_path / "out.txt"
    init_db_dir(db, 1)
    items = [("k", "a"), ("k", "b")]

    def run():
        flow = Dataflow("file_out")
        op.output("out", op.input("inp", flow, TestingSource(items)), FileSink(out_file))
        run_main(flow, recovery_config=RecoveryConfig(db))

    run()
    # As if a killed run had written past the last committed snapshot.
    with out_file.open("a") as f:
        f.write("written after the snapshot\n")
    run()  # same input: nothing new reaches the sink, yet it must cut the file back
    assert out_file.read_text() == "a\nb\n"

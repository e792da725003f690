"""fastflow.testing without recovery: TestingSource markers, TestingSink and the helpers."""

from __future__ import annotations

from dataclasses import is_dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, List, Optional

import pytest

import fastflow.operators as op
import fastflow.testing as testing
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.inputs import AbortExecution, StatelessSourcePartition
from fastflow.run import cli_main
from fastflow.testing import (
    TestingSink,
    TestingSource,
    TimeTestingGetter,
    cluster_main,
    ffwd_iter,
    poll_next_batch,
    run_main,
)

EOF = TestingSource.EOF
ABORT = TestingSource.ABORT
PAUSE = TestingSource.PAUSE


def test_public_names() -> None:
    assert sorted(testing.__all__) == [
        "TestingSink",
        "TestingSource",
        "TimeTestingGetter",
        "cluster_main",
        "ffwd_iter",
        "poll_next_batch",
        "run_main",
    ]


def _part(items: Any, batch_size: int = 1, resume: Optional[Any] = None) -> Any:
    source = TestingSource(items, batch_size)
    return source.build_part("df.inp", "iterable", resume)


def _drain(part: Any) -> List[List[Any]]:
    batches = []
    while True:
        try:
            batches.append(part.next_batch())
        except StopIteration:
            return batches


def _run(items: Any, batch_size: int = 1, out: Optional[List[Any]] = None) -> List[Any]:
    out = [] if out is None else out
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, TestingSource(items, batch_size)), TestingSink(out))
    run_main(flow)
    return out


def _running_sum_flow(items: List[Any], out: List[Any]) -> Dataflow:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(items))
    keyed = op.key_on("all", s, lambda _: "ALL")
    summed = op.stateful_map("sum", keyed, lambda acc, x: ((acc or 0) + x,) * 2)
    op.output("out", summed, TestingSink(out))
    return flow


# TestingSource: batches.


def test_testing_source_is_one_partition_named_iterable() -> None:
    assert TestingSource([1]).list_parts() == ["iterable"]


@pytest.mark.parametrize(
    ("batch_size", "batches"),
    [
        (1, [[1], [2], [3], [4], [5]]),
        (2, [[1, 2], [3, 4], [5]]),
        (5, [[1, 2, 3, 4, 5]]),
        (7, [[1, 2, 3, 4, 5]]),
    ],
)
def test_testing_source_batch_size(batch_size: int, batches: List[List[int]]) -> None:
    assert _drain(_part([1, 2, 3, 4, 5], batch_size)) == batches


def test_testing_source_default_batch_size_is_one() -> None:
    assert _drain(TestingSource("ab").build_part("s", "iterable", None)) == [["a"], ["b"]]


def test_testing_source_rejects_batch_size_below_one() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TestingSource([1], batch_size=0)


def test_testing_source_of_an_empty_list() -> None:
    assert _drain(_part([])) == []
    assert _run([]) == []


def test_testing_source_reads_any_iterable() -> None:
    def gen() -> Iterator[int]:
        yield from range(5)

    assert _drain(_part(gen(), 2)) == [[0, 1], [2, 3], [4]]
    assert _run(range(3)) == [0, 1, 2]
    assert _run((c for c in "xy"), 2) == ["x", "y"]


def test_testing_source_stays_ended() -> None:
    part = _part([1])
    assert _drain(part) == [[1]]
    with pytest.raises(StopIteration):
        part.next_batch()


def test_testing_source_int_resume_state_skips_positions() -> None:
    assert _drain(_part([0, 1, 2, 3], 1, 2)) == [[2], [3]]
    assert _drain(_part(iter([0, 1, 2, 3]), 2, 3)) == [[3]]
    assert _drain(_part([0, 1], 1, 5)) == []


def test_testing_source_runs_the_same_list_every_time() -> None:
    items = [1, 2, 3]
    out: List[int] = []
    _run(items, out=out)
    _run(items, out=out)
    assert out == [1, 2, 3, 1, 2, 3]


# EOF.


def test_markers_are_dataclasses() -> None:
    assert is_dataclass(EOF) and is_dataclass(ABORT) and is_dataclass(PAUSE)
    assert EOF() == EOF()
    assert ABORT()._triggered is False
    assert PAUSE(timedelta(seconds=1)).for_duration == timedelta(seconds=1)


@pytest.mark.parametrize("batch_size", [1, 2, 10])
def test_eof_ends_the_input(batch_size: int) -> None:
    assert _run([0, 1, EOF(), 2, 3], batch_size) == [0, 1]


def test_eof_cuts_the_batch_short() -> None:
    part = _part([1, 2, EOF(), 3, 4], 10)
    assert _drain(part) == [[1, 2]]


def test_eof_first_emits_nothing() -> None:
    assert _run([EOF(), 1]) == []


def test_eof_in_an_iterator() -> None:
    assert _run(iter([1, EOF(), 2]), 2) == [1]


def test_eof_ends_every_run_at_the_same_place() -> None:
    items = [0, 1, EOF(), 2, 3]
    out: List[Any] = []
    _run(items, out=out)
    _run(items, out=out)
    assert out == [0, 1, 0, 1]


def test_eof_of_one_input_leaves_the_others_running() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource([1, EOF(), 99]))
    b = op.input("b", flow, TestingSource([2, 3, 4]))
    op.output("out", op.merge("m", a, b), TestingSink(out))
    run_main(flow)
    assert out == [1, 2, 3, 4]


# ABORT (no recovery).


def test_abort_stops_the_run_and_run_main_returns() -> None:
    out: List[Any] = []
    flow = _running_sum_flow([0, 1, ABORT(), 2, 3], out)
    assert run_main(flow) is None
    assert out == [("ALL", 0), ("ALL", 1)]


def test_abort_fires_once_per_marker_object() -> None:
    items = [0, 1, ABORT(), 2, 3]
    out: List[Any] = []
    run_main(_running_sum_flow(items, out))
    assert items[2]._triggered is True
    # Same list again: the marker already fired; without recovery, the run
    # starts from the beginning.
    run_main(_running_sum_flow(items, out))
    assert out == [("ALL", 0), ("ALL", 1), ("ALL", 0), ("ALL", 1), ("ALL", 3), ("ALL", 6)]


def test_a_fresh_abort_marker_aborts_again() -> None:
    out: List[Any] = []
    run_main(_running_sum_flow([5, ABORT(), 6], out))
    run_main(_running_sum_flow([5, ABORT(), 6], out))
    assert out == [("ALL", 5), ("ALL", 5)]


def test_a_fired_abort_is_skipped_and_the_batch_fills_past_it() -> None:
    # As in Bytewax: the snapshot after [0, 1], resumed with the marker fired, gives [2, 3].
    items = [0, 1, 2, ABORT(), 3, 4]
    part = _part(items, 2)
    assert part.next_batch() == [0, 1]
    resume_state = part.snapshot()
    assert part.next_batch() == [2]
    with pytest.raises(AbortExecution):
        part.next_batch()
    assert _drain(_part(items, 2, resume_state)) == [[2, 3], [4]]
    assert _drain(_part(items, 2)) == [[0, 1], [2, 3], [4]]


def test_a_fired_abort_is_skipped_at_the_start_and_the_end_of_a_batch() -> None:
    first, last = ABORT(_triggered=True), ABORT(_triggered=True)
    assert _drain(_part([first, 1, 2, 3, last], 2)) == [[1, 2], [3]]
    assert _drain(_part([first, last], 2)) == []


def test_abort_cuts_the_batch_short() -> None:
    assert _run([1, 2, ABORT(), 3], 10) == [1, 2]


def test_abort_first_emits_nothing() -> None:
    assert _run([ABORT(), 1]) == []


def test_abort_stops_every_input() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource([ABORT()]))
    b = op.input("b", flow, TestingSource([1, 2, 3]))
    op.output("out", op.merge("m", a, b), TestingSink(out))
    run_main(flow)
    assert out == []


def test_abort_skips_the_final_flush_of_stateful_steps() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ABORT()]))
    op.output("out", op.fold_final("f", s, int, int.__add__), TestingSink(out))
    run_main(flow)
    # The input never ended, so the fold never emitted.
    assert out == []


# Stateful logic: notifications due in the round an item arrives.


class _Notified(op.StatefulBatchLogic):
    """Asks to be notified at once after its first batch, then records every call."""

    def __init__(self, calls: List[Any]) -> None:
        self.calls = calls
        self.notified = False

    def on_batch(self, values: List[Any]) -> Any:
        self.calls.append(("on_batch", values))
        return [("batch", values)], False

    def on_notify(self) -> Any:
        self.calls.append(("on_notify",))
        self.notified = True
        return ["notified"], False

    def on_eof(self) -> Any:
        self.calls.append(("on_eof",))
        return ["eof"], True

    def notify_at(self) -> Optional[datetime]:
        due = not self.notified and any(call[0] == "on_batch" for call in self.calls)
        return datetime(2000, 1, 1, tzinfo=timezone.utc) if due else None

    def snapshot(self) -> None:
        return None


@pytest.mark.parametrize("workers", [1, 2])
def test_a_due_notification_comes_after_the_rounds_batch_and_before_eof(workers: int) -> None:
    calls: List[Any] = []
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("k", 1), ("k", 2), ("k", 3)]))
    logic = op.stateful_batch("logic", s, lambda _resume: _Notified(calls))
    op.output("out", logic, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    # The notification asked for after [1] is due by the next round, which brings [2]:
    # on_batch([2]) first, then on_notify, their emits in that order (as in Bytewax).
    assert calls == [("on_batch", [1]), ("on_batch", [2]), ("on_notify",), ("on_batch", [3]),
                     ("on_eof",)]
    assert out == [("k", ("batch", [1])), ("k", ("batch", [2])), ("k", "notified"),
                   ("k", ("batch", [3])), ("k", "eof")]


def test_a_notification_due_at_the_end_of_input_comes_before_eof() -> None:
    calls: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("k", 1)]))
    op.output("out", op.stateful_batch("logic", s, lambda _r: _Notified(calls)), TestingSink([]))
    run_main(flow)
    assert calls == [("on_batch", [1]), ("on_notify",), ("on_eof",)]


# PAUSE.


def test_pause_returns_nothing_and_asks_to_be_woken_later() -> None:
    part = _part([1, PAUSE(timedelta(minutes=5)), 2], 5)
    assert part.next_batch() == [1]
    assert part.next_awake() is None
    before = datetime.now(timezone.utc)
    assert part.next_batch() == []
    awake = part.next_awake()
    assert awake is not None and awake >= before + timedelta(minutes=5)
    assert part.next_batch() == [2]
    assert part.next_awake() is None


def test_pause_keeps_all_items() -> None:
    items = [1, PAUSE(timedelta(milliseconds=1)), 2, PAUSE(timedelta(0)), 3]
    assert _run(items) == [1, 2, 3]
    assert _run(items, 10) == [1, 2, 3]


def test_pause_lets_other_inputs_go_first() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource(["a1", PAUSE(timedelta(milliseconds=500)), "a2"]))
    b = op.input("b", flow, TestingSource(["b1", "b2", "b3"]))
    op.output("out", op.merge("m", a, b), TestingSink(out))
    run_main(flow)
    assert out == ["a1", "b1", "b2", "b3", "a2"]


def test_pause_is_not_counted_as_an_item() -> None:
    part = _part([PAUSE(timedelta(0)), 7])
    assert part.next_batch() == []
    assert part.next_batch() == [7]


# TestingSink.


def test_testing_sink_appends_to_the_callers_list() -> None:
    out: List[Any] = ["old"]
    _run([1, 2], out=out)
    assert out == ["old", 1, 2]


def test_testing_sink_partition_extends_by_batch() -> None:
    out: List[Any] = []
    part = TestingSink(out).build("df.out", 0, 1)
    part.write_batch([1, 2])
    part.write_batch([])
    part.write_batch([3])
    assert out == [1, 2, 3]


def test_two_sinks_may_share_a_list() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([1, 2]))
    op.output("a", s, TestingSink(out))
    op.output("b", op.map("m", s, lambda x: -x), TestingSink(out))
    run_main(flow)
    assert out == [1, -1, 2, -2]


# poll_next_batch, ffwd_iter, TimeTestingGetter.


def test_poll_next_batch_skips_empty_batches() -> None:
    part = _part([PAUSE(timedelta(0)), PAUSE(timedelta(0)), 1, 2], 2)
    assert poll_next_batch(part) == [1, 2]


def test_poll_next_batch_returns_each_batch_in_turn() -> None:
    part = _part([1, 2, 3], 2)
    assert poll_next_batch(part) == [1, 2]
    assert poll_next_batch(part) == [3]
    with pytest.raises(StopIteration):
        poll_next_batch(part)


class _Never(StatelessSourcePartition[Any]):
    def __init__(self) -> None:
        self.calls = 0

    def next_batch(self) -> List[Any]:
        self.calls += 1
        return []


def test_poll_next_batch_times_out() -> None:
    part = _Never()
    with pytest.raises(TimeoutError):
        poll_next_batch(part, timeout=timedelta(0))
    assert part.calls >= 1


def test_poll_next_batch_gives_up_after_the_timeout() -> None:
    part = _Never()
    with pytest.raises(TimeoutError):
        poll_next_batch(part, timeout=timedelta(milliseconds=20))
    assert part.calls > 1


def test_ffwd_iter() -> None:
    it = iter(range(5))
    assert ffwd_iter(it, 3) is None
    assert list(it) == [3, 4]


def test_ffwd_iter_past_the_end_and_by_zero() -> None:
    it = iter(range(2))
    ffwd_iter(it, 0)
    assert next(it) == 0
    ffwd_iter(it, 10)
    assert list(it) == []


def test_time_testing_getter() -> None:
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    clock = TimeTestingGetter(start)
    assert clock.get() == start
    clock.advance(timedelta(minutes=5))
    assert clock.get() == clock.now == start + timedelta(minutes=5)
    assert is_dataclass(clock)


def test_time_testing_getter_drives_enrich_cached_ttl() -> None:
    clock = TimeTestingGetter(datetime(2024, 1, 1, tzinfo=timezone.utc))
    lookups: List[str] = []

    def fetch(key: str) -> str:
        lookups.append(key)
        return key.upper()

    def tick_then_get(cache: Any, item: str) -> str:
        clock.advance(timedelta(seconds=4))
        return cache.get(item)

    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(["a", "a", "a"]))
    enriched = op.enrich_cached(
        "e", s, fetch, tick_then_get, ttl=timedelta(seconds=5), _now_getter=clock.get
    )
    op.output("out", enriched, TestingSink(out))
    run_main(flow)
    assert out == ["A", "A", "A"]
    assert lookups == ["a", "a"]  # the third get came 8 s after the first fetch


# run_main and cluster_main.


def test_run_main_options_are_keyword_only() -> None:
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(TypeError):
        run_main(flow, timedelta(seconds=1))  # type: ignore[misc]
    run_main(flow, epoch_interval=timedelta(milliseconds=1))


def test_run_main_needs_a_dataflow() -> None:
    with pytest.raises(TypeError, match="Dataflow"):
        run_main("flow")  # type: ignore[arg-type]


def test_run_main_accepts_a_zero_epoch_interval() -> None:
    seen: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([1, 2]))
    op.inspect_debug("i", s, lambda _id, item, epoch, _w: seen.append((item, epoch)))
    run_main(flow, epoch_interval=timedelta(0))
    assert [item for item, _ in seen] == [1, 2]
    assert seen[0][1] < seen[1][1]


def test_cluster_main_with_one_process_runs_the_flow() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, TestingSource([1, 2])), TestingSink(out))
    cluster_main(flow, [], 0)
    cluster_main(flow, ["localhost:2101"], 0, epoch_interval=timedelta(seconds=1))
    assert out == [1, 2, 1, 2]


def test_cluster_main_runs_several_workers_in_this_process() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1), ("b", 2), ("a", 3)]))
    s = op.stateful_map("sum", s, lambda acc, v: ((acc or 0) + v, (acc or 0) + v))
    op.output("out", s, TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=3)
    assert sorted(out) == [("a", 1), ("a", 4), ("b", 2)]


def test_cluster_main_rejects_what_it_cannot_run_yet() -> None:
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(NotImplementedError):
        cluster_main(flow, ["localhost:2101", "localhost:2102"], 0)
    with pytest.raises(ValueError, match="worker_count"):
        cluster_main(flow, [], 0, worker_count_per_proc=0)
    with pytest.raises(ValueError, match="proc_id"):
        cluster_main(flow, ["localhost:2101"], 1)


@pytest.mark.parametrize("entry", ["run_main", "cluster_main", "cli_main", "cli_main -p 2"])
def test_a_flow_without_output_is_refused_by_every_entry_point(entry: str) -> None:
    flow = Dataflow("df")
    op.map("m", op.input("inp", flow, TestingSource([1])), str)
    runs = {
        "run_main": lambda: run_main(flow),
        "cluster_main": lambda: cluster_main(flow, [], 0),
        "cli_main": lambda: cli_main(flow),
        "cli_main -p 2": lambda: cli_main(flow, processes=2),
    }
    # As in Bytewax: a RuntimeError (so `except RuntimeError` around a run catches it)
    # raised from the ValueError that says what is missing, in Bytewax's words.
    with pytest.raises(RuntimeError, match="^error building production dataflow$") as info:
        runs[entry]()
    assert isinstance(info.value, FastflowRuntimeError)
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == (
        "Dataflow needs to contain at least one output or inspect step; "
        "add with `fastflow.operators.output` or `fastflow.operators.inspect`"
    )

"""Several workers in one process: same results as one worker, keys owned by one worker,
recovery across worker counts, and ``fastflow run -w``."""

import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional

import pytest
from _stores import stored_state
from hypothesis import given, settings
from hypothesis import strategies as st

import fastflow.operators as op
import fastflow.operators.windowing as win
from fastflow._cext.routing import stable_hash
from fastflow._store.store import RecoveryStore
from fastflow.dataflow import Dataflow, Stream
from fastflow.inputs import (
    AbortExecution,
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from fastflow.outputs import FixedPartitionedSink, StatefulSinkPartition
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, cluster_main

TINY_EPOCH = timedelta(microseconds=1)
WORKER_COUNTS = [1, 2, 3]


class _ListPart(StatefulSourcePartition):
    """Emits its list ``batch_size`` items at a time; ``TestingSource.ABORT()`` aborts once."""

    def __init__(self, items: List[Any], batch_size: int, at: int) -> None:
        self.items, self.batch_size, self.at = items, batch_size, at

    def next_batch(self) -> List[Any]:
        if self.at >= len(self.items):
            raise StopIteration()
        batch = []
        for item in self.items[self.at : self.at + self.batch_size]:
            if isinstance(item, TestingSource.ABORT):
                if batch:
                    break
                self.at += 1
                if not item._triggered:
                    item._triggered = True
                    raise AbortExecution()
                continue
            batch.append(item)
        self.at += len(batch)
        return batch

    def snapshot(self) -> int:
        return self.at


class PartsSource(FixedPartitionedSource):
    """A source of several partitions, each a list (partition ``p0`` gets ``lists[0]``...)."""

    def __init__(self, lists: List[List[Any]], batch_size: int = 2) -> None:
        self.lists, self.batch_size = lists, batch_size

    def list_parts(self) -> List[str]:
        return [f"p{i}" for i in range(len(self.lists))]

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _ListPart:
        return _ListPart(self.lists[int(for_part[1:])], self.batch_size, resume_state or 0)


def run_workers(
    source: Any,
    build: Callable[[Stream[Any]], Stream[Any]],
    workers: int,
    **run_kw: Any,
) -> List[Any]:
    """What ``build(stream)`` emits for ``source``, run by ``workers`` workers."""
    out: List[Any] = []
    flow = Dataflow("df")
    op.output("out", build(op.input("inp", flow, source)), TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers, **run_kw)
    return out


def per_key(items: List[Any]) -> Dict[str, List[Any]]:
    """``(key, value)`` items as ``{key: [value, ...]}`` in arrival order."""
    grouped: Dict[str, List[Any]] = {}
    for key, value in items:
        grouped.setdefault(key, []).append(value)
    return grouped


KEYED = [(k, i) for i, k in enumerate("abcdefgabcdefhhhaaxyzb")]
# Four partitions; each key lives in one partition, so its order is the partition's.
FOUR_PARTS = [[(f"k{p}{j % 3}", (p, j)) for j in range(7)] for p in range(4)]


def running_sum(acc: Optional[int], v: int) -> Any:
    acc = (acc or 0) + v
    return acc, acc


def keep_order(acc: Optional[List[Any]], v: Any) -> Any:
    seen = (acc or []) + [v]
    return seen, list(seen)


def number(value: Any) -> int:
    """The int in a test value: ``KEYED`` values are ints, ``FOUR_PARTS`` values pairs."""
    return value if isinstance(value, int) else 100 * value[0] + value[1]


# Flows built on a keyed stream of ``(str, value)``, by name.
CASES = {
    "stateless chain": lambda s: op.filter(
        "f", op.flat_map("fm", op.map("m", s, lambda kv: (kv[0], kv[1])), lambda kv: [kv, kv]),
        lambda kv: kv[0] != "c",
    ),
    "stateful_map": lambda s: op.stateful_map("sm", s, keep_order),
    "fold_final": lambda s: op.fold_final("ff", s, list, lambda acc, v: acc + [v]),
    "join": lambda s: op.join(
        "j",
        op.filter("odd", s, lambda kv: number(kv[1]) % 2 == 1),
        op.filter("even", s, lambda kv: number(kv[1]) % 2 == 0),
        emit_mode="running",
    ),
    "collect": lambda s: op.collect("c", s, timedelta(hours=1), max_size=2),
    # redistribute does not keep a key's order: sum (in any order) after it.
    "redistribute": lambda s: op.reduce_final(
        "r", op.map_value("n", op.redistribute("rd", s), number), lambda a, b: a + b
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("workers", [2, 3])
def test_one_partition_gives_what_one_worker_gives(case: str, workers: int) -> None:
    build = CASES[case]
    expected = run_workers(TestingSource(KEYED, batch_size=3), build, 1)
    got = run_workers(TestingSource(KEYED, batch_size=3), build, workers)
    assert expected
    assert Counter(map(repr, got)) == Counter(map(repr, expected))
    assert per_key(got) == per_key(expected)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("workers", [2, 3])
def test_four_partitions_give_what_one_worker_gives(case: str, workers: int) -> None:
    build = CASES[case]
    expected = run_workers(PartsSource(FOUR_PARTS), build, 1)
    got = run_workers(PartsSource(FOUR_PARTS), build, workers)
    assert expected
    assert Counter(map(repr, got)) == Counter(map(repr, expected))
    assert per_key(got) == per_key(expected)


def test_fold_window_gives_what_one_worker_gives() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    clock = win.EventClock(
        lambda v: t0 + timedelta(seconds=v), timedelta(seconds=2),
        now_getter=lambda: datetime(2030, 1, 1, tzinfo=timezone.utc),
    )
    windower = win.TumblingWindower(timedelta(seconds=10), t0)
    times = [0, 3, 12, 5, 25, 1, 30, 14, 41, 33, 29, 52]  # some late, in the partition
    lists = [[(f"k{p}{j % 2}", t + p) for j, t in enumerate(times)] for p in range(4)]

    def build(s: Stream[Any]) -> Stream[Any]:
        out = win.fold_window("w", s, clock, windower, list, lambda a, v: a + [v], list.__add__)
        late = op.map("late", out.late, lambda kv: (f"late {kv[0]}", kv[1]))
        return op.merge("all", out.down, late)

    expected = run_workers(PartsSource(lists), build, 1)
    assert any(key.startswith("late") for key, _ in expected)
    for workers in (2, 3):
        got = run_workers(PartsSource(lists), build, workers)
        assert Counter(map(repr, got)) == Counter(map(repr, expected))
        assert per_key(got) == per_key(expected)


def test_a_single_partition_source_is_read_by_worker_zero_only() -> None:
    seen: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(list(range(10)), batch_size=3))
    op.inspect_debug("see", s, lambda _s, item, _e, worker: seen.append((item, worker)))
    cluster_main(flow, [], 0, worker_count_per_proc=3)
    assert seen == [(i, 0) for i in range(10)]


def test_partitions_go_to_workers_by_index() -> None:
    seen: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, PartsSource(FOUR_PARTS))
    op.inspect_debug("see", s, lambda _s, item, _e, worker: seen.append((item[1][0], worker)))
    cluster_main(flow, [], 0, worker_count_per_proc=3)
    assert sorted(set(seen)) == [(0, 0), (1, 1), (2, 2), (3, 0)]


def key_and_worker(seen: List[Any]) -> Callable[..., None]:
    """An inspector appending ``(key, worker index)`` of each item to ``seen``."""
    return lambda _step, kv, _epoch, worker: seen.append((kv[0], worker))


def test_each_key_lives_on_the_worker_its_hash_picks() -> None:
    keys = [f"key{i}" for i in range(30)]
    lists = [[(k, 1) for k in keys[p::4]] * 3 for p in range(4)]
    for workers in WORKER_COUNTS:
        seen: List[Any] = []
        flow = Dataflow("df")
        s = op.stateful_map("sm", op.input("inp", flow, PartsSource(lists)), running_sum)
        op.inspect_debug("see", s, key_and_worker(seen))
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
        assert sorted(set(seen)) == sorted((k, stable_hash(k) % workers) for k in keys)
        assert {worker for _, worker in seen} == set(range(workers))


def test_redistribute_spreads_items_over_the_workers() -> None:
    seen: List[Any] = []
    flow = Dataflow("df")
    s = op.redistribute("rd", op.input("inp", flow, TestingSource(list(range(20)), 4)))
    op.inspect_debug("see", s, lambda _s, item, _e, worker: seen.append((item, worker)))
    cluster_main(flow, [], 0, worker_count_per_proc=3)
    assert sorted(item for item, _ in seen) == list(range(20))
    per_worker = Counter(worker for _, worker in seen)
    assert sorted(per_worker) == [0, 1, 2]
    assert max(per_worker.values()) - min(per_worker.values()) <= 2


class _CountingSource(DynamicSource):
    def __init__(self) -> None:
        self.builds: List[Any] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        self.builds.append((step_id, worker_index, worker_count))
        return _OneItem(f"w{worker_index}")


class _OneItem(StatelessSourcePartition):
    def __init__(self, item: str) -> None:
        self.items = [item]

    def next_batch(self) -> List[str]:
        if not self.items:
            raise StopIteration()
        return [self.items.pop()]


def test_a_dynamic_source_is_built_once_per_worker() -> None:
    source = _CountingSource()
    out = run_workers(source, lambda s: s, 3)
    assert source.builds == [("df.inp", 0, 3), ("df.inp", 1, 3), ("df.inp", 2, 3)]
    assert sorted(out) == ["w0", "w1", "w2"]


class _LogPart(StatefulSinkPartition):
    """Logs ``(partition, items)`` per batch; its state is how many items it wrote."""

    def __init__(self, log: List[Any], name: str, count: int) -> None:
        self.log, self.name, self.count = log, name, count

    def write_batch(self, items: List[Any]) -> None:
        self.count += len(items)
        self.log.append((self.name, list(items)))

    def snapshot(self) -> int:
        return self.count


class _LogSink(FixedPartitionedSink):
    """Three partitions; key ``kN`` goes to partition ``sN % 3``."""

    def __init__(self) -> None:
        self.log: List[Any] = []
        self.built: List[Any] = []

    def list_parts(self) -> List[str]:
        return ["s0", "s1", "s2"]

    def part_fn(self, item_key: str) -> int:
        return int(item_key[1:])

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _LogPart:
        self.built.append((for_part, resume_state))
        return _LogPart(self.log, for_part, resume_state or 0)

    def written(self) -> Dict[str, List[Any]]:
        return {name: [v for n, vs in self.log if n == name for v in vs] for name, _ in self.built}


def by_sink_part(items: List[Any]) -> Dict[str, List[Any]]:
    return {f"s{p}": [v for k, v in items if int(k[1:]) % 3 == p] for p in range(3)}


def test_a_partitioned_sink_gets_each_partition_built_once_and_its_items_in_order() -> None:
    items = [(f"k{i % 5}", i) for i in range(30)]
    for workers in WORKER_COUNTS:
        sink = _LogSink()
        flow = Dataflow("df")
        op.output("out", op.input("inp", flow, TestingSource(items, 4)), sink)
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
        assert sorted(sink.built) == [("s0", None), ("s1", None), ("s2", None)]
        assert sink.written() == by_sink_part(items)


def test_sink_partitions_resume_once_each_with_another_worker_count(tmp_path) -> None:
    lists = [[(f"k{(p + j) % 5}", (p, j)) for j in range(10)] for p in range(4)]
    scripts = [list(part) for part in lists]
    scripts[1].insert(4, TestingSource.ABORT())
    init_db_dir(tmp_path, 2)
    sinks = []
    for workers in (3, 2):
        sinks.append(_LogSink())
        flow = Dataflow("df")
        op.output("out", op.input("inp", flow, PartsSource(scripts)), sinks[-1])
        cluster_main(flow, [], 0, epoch_interval=TINY_EPOCH,
                     recovery_config=RecoveryConfig(tmp_path), worker_count_per_proc=workers)
    first, second = sinks
    assert sorted(name for name, _ in second.built) == ["s0", "s1", "s2"]
    # Each partition resumes from its count and ends having written every item once.
    expected = by_sink_part([kv for part in lists for kv in part])
    resumed = dict(second.built)
    for name, values in expected.items():
        assert resumed[name] == len(first.written().get(name, []))
        assert Counter(first.written().get(name, []) + second.written()[name]) == Counter(values)


# Recovery across worker counts.


def sum_flow(source: Any, sums: List[Any], counts: List[Any]) -> Dataflow:
    """Running sums per key into ``sums``; at end of input, item counts into ``counts``."""
    flow = Dataflow("sums")
    s = op.input("inp", flow, source)
    op.output("sums", op.stateful_map("sum", s, running_sum), TestingSink(sums))
    counted = op.fold_final("count", s, lambda: 0, lambda n, _v: n + 1)
    op.output("counts", counted, TestingSink(counts))
    return flow


def stored_sums(db: Any) -> Dict[str, Any]:
    return stored_state(db, "sums.sum.stateful_batch")


def final_sums(items: List[Any]) -> Dict[str, int]:
    sums: Dict[str, int] = {}
    for key, value in items:
        sums[key] = sums.get(key, 0) + value
    return sums


def run_resuming(scripts: List[List[Any]], workers: int, db: Any, interval: timedelta,
                 batch_size: int = 2) -> Any:
    """Run :func:`sum_flow` on ``scripts`` with recovery in ``db``; return its two outputs."""
    sums: List[Any] = []
    counts: List[Any] = []
    cluster_main(
        sum_flow(PartsSource(scripts, batch_size), sums, counts), [], 0,
        epoch_interval=interval, recovery_config=RecoveryConfig(db),
        worker_count_per_proc=workers,
    )
    return sums, counts


@pytest.mark.parametrize("worker_counts", [(2, 3, 1), (1, 2, 3), (3, 1, 2)])
def test_resume_with_another_worker_count_gives_the_uninterrupted_state(
    tmp_path, worker_counts
) -> None:
    lists = [[(f"k{(p * 7 + j) % 9}", j) for j in range(12)] for p in range(4)]
    items = [kv for part in lists for kv in part]
    scripts = [list(part) for part in lists]
    scripts[0].insert(3, TestingSource.ABORT())  # stops the first run
    scripts[1].insert(9, TestingSource.ABORT())  # stops the second run
    init_db_dir(tmp_path, 3)
    runs = [run_resuming(scripts, workers, tmp_path, TINY_EPOCH) for workers in worker_counts]
    assert stored_sums(tmp_path) == final_sums(items)
    assert all(sums for sums, _ in runs)  # every run did part of the work
    assert {key: value for sums, _ in runs for key, value in sums} == final_sums(items)
    # Restored state went to one worker per key: each key's count comes once, and right.
    assert [counts for _, counts in runs[:2]] == [[], []]
    assert sorted(runs[2][1]) == sorted(Counter(key for key, _ in items).items())
    with RecoveryStore.inspect(tmp_path) as store:
        assert [e.worker_count for e in store.executions()] == list(worker_counts)


@settings(max_examples=30, deadline=None)
@given(
    items=st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(-5, 5)), max_size=40),
    aborts=st.lists(st.integers(0, 40), max_size=4),
    interval=st.sampled_from([TINY_EPOCH, timedelta(seconds=10)]),
    workers=st.lists(st.integers(1, 3), min_size=6, max_size=6),
    partitions=st.integers(1, 3),
)
def test_abort_and_resume_with_random_worker_counts_equals_one_run(
    tmp_path_factory, items, aborts, interval, workers, partitions
):
    db = tmp_path_factory.mktemp("db")
    init_db_dir(db, 2)
    scripts = [items[p::partitions] for p in range(partitions)]
    for n, at in enumerate(sorted(aborts, reverse=True)):
        script = scripts[n % partitions]
        script.insert(min(at, len(script)), TestingSource.ABORT())
    for attempt in range(len(aborts) + 1):
        _sums, counts = run_resuming(scripts, workers[attempt], db, interval, batch_size=3)
    assert stored_sums(db) == final_sums(items)
    assert sorted(counts) == sorted(Counter(key for key, _ in items).items())
    # Everything was consumed: one more run has nothing left to do.
    assert run_resuming(scripts, workers[-1], db, interval) == ([], [])


# The command line.

WORDS = """\
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

words = "the cat and the dog and the bird saw a cat".split()
flow = Dataflow("words")
s = op.input("inp", flow, TestingSource(words, batch_size=2))
s = op.count_final("count", s, lambda w: w)
s = op.inspect_debug("seen", s)
op.output("out", s, StdOutSink())
"""


@pytest.mark.parametrize(
    "how, workers",
    [("fastflow run -w", 2), ("python -m fastflow.run -w", 3), ("FASTFLOW_WORKERS_PER_PROCESS", 2)],
)
def test_the_command_line_runs_several_workers(
    tmp_path, fastflow_command: List[str], how: str, workers: int
) -> None:
    (tmp_path / "words.py").write_text(textwrap.dedent(WORDS))
    env = dict(os.environ)
    if how == "fastflow run -w":
        args = [*fastflow_command, "run", "-w", str(workers), "words.py"]
    elif how == "python -m fastflow.run -w":
        args = [sys.executable, "-m", "fastflow.run", "-w", str(workers), "words.py"]
    else:
        args = [*fastflow_command, "run", "words.py"]
        env[how] = str(workers)
    proc = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    counts = Counter("the cat and the dog and the bird saw a cat".split())
    expected = [f"('{w}', {n})" for w, n in counts.items()]
    expected += [
        f"words.seen W{stable_hash(w) % workers} @1: ('{w}', {n})" for w, n in counts.items()
    ]
    assert sorted(proc.stdout.splitlines()) == sorted(expected)
    assert {f"W{stable_hash(w) % workers}" for w in counts} == {f"W{i}" for i in range(workers)}



"""Sources, sinks, the batch helpers and the stdio connectors."""

from __future__ import annotations

import asyncio
import io
import os
import queue
import subprocess
import sys
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterable, List, Optional

import pytest

import fastflow
import fastflow.operators as op
from fastflow._cext.routing import RoutingError
from fastflow.connectors.stdio import StdInSource, StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.inputs import (
    AbortExecution,
    DynamicSource,
    FixedPartitionedSource,
    SimplePollingSource,
    Source,
    StatefulSourcePartition,
    StatelessSourcePartition,
    batch,
    batch_async,
    batch_getter,
    batch_getter_ex,
)
from fastflow.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    Sink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)
from fastflow.testing import TestingSink, TestingSource, run_main

# The batch helpers.


@pytest.mark.parametrize(
    ("items", "size", "batches"),
    [
        (range(5), 2, [[0, 1], [2, 3], [4]]),
        (range(4), 2, [[0, 1], [2, 3]]),
        (range(3), 10, [[0, 1, 2]]),
        ([], 3, []),
        (iter("abc"), 1, [["a"], ["b"], ["c"]]),
    ],
)
def test_batch(items: Iterable[Any], size: int, batches: List[List[Any]]) -> None:
    assert list(batch(items, size)) == batches


def test_batch_is_lazy() -> None:
    def numbers() -> Iterable[int]:
        yield 1
        yield 2
        raise AssertionError("read too far")

    assert next(batch(numbers(), 2)) == [1, 2]


def _getter(values: List[Any]) -> Any:
    it = iter(values)
    return lambda: next(it)


def test_batch_getter_ends_a_batch_on_yield_on() -> None:
    batches = batch_getter(_getter([1, 2, None, 3, 4, 5, None]), 2)
    assert [next(batches) for _ in range(4)] == [[1, 2], [], [3, 4], [5]]


def test_batch_getter_with_a_custom_yield_on() -> None:
    batches = batch_getter(_getter(["a", "", "b", "c", ""]), 5, yield_on="")
    assert [next(batches) for _ in range(2)] == [["a"], ["b", "c"]]


def test_batch_getter_ex_ends_a_batch_on_the_exception() -> None:
    q: queue.Queue[int] = queue.Queue()
    for i in range(3):
        q.put(i)
    batches = batch_getter_ex(q.get_nowait, 2)
    assert [next(batches) for _ in range(3)] == [[0, 1], [2], []]
    q.put(9)
    assert next(batches) == [9]


def test_batch_getter_ex_with_a_custom_exception() -> None:
    values = iter([1, 2, 3])

    def get() -> int:
        try:
            return next(values)
        except StopIteration:
            raise LookupError() from None

    batches = batch_getter_ex(get, 5, yield_ex=LookupError)
    assert next(batches) == [1, 2, 3]
    assert next(batches) == []


def test_batch_getter_ex_lets_other_exceptions_through() -> None:
    def get() -> int:
        raise KeyError("x")

    with pytest.raises(KeyError):
        next(batch_getter_ex(get, 2))


async def _numbers(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def test_batch_async_fills_batches() -> None:
    assert list(batch_async(_numbers(5), timedelta(seconds=5), 2)) == [[0, 1], [2, 3], [4]]


def test_batch_async_of_nothing() -> None:
    assert list(batch_async(_numbers(0), timedelta(seconds=5), 2)) == []


def test_batch_async_yields_what_came_within_the_timeout() -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[int]:
        yield 1
        await release.wait()
        yield 2

    batches = batch_async(slow(), timedelta(milliseconds=20), 10)
    assert next(batches) == [1]
    # Nothing arrives while the iterable waits: the batch is empty, not an error.
    assert next(batches) == []
    release.set()
    assert [b for b in batches if b] == [[2]]


def test_batch_async_with_a_given_loop() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert list(batch_async(_numbers(3), timedelta(seconds=5), 5, loop)) == [[0, 1, 2]]
    finally:
        loop.close()


# SimplePollingSource.


class _Polled(SimplePollingSource[Any, int]):
    """Polls ``values`` in order; ``StopIteration`` after them."""

    def __init__(self, values: List[Any], align_to: Optional[datetime] = None) -> None:
        super().__init__(timedelta(milliseconds=1), align_to)
        self.values = values
        self.pos = 0

    def next_item(self) -> Any:
        if self.pos == len(self.values):
            raise StopIteration()
        value = self.values[self.pos]
        self.pos += 1
        if isinstance(value, SimplePollingSource.Retry):
            raise value
        return value

    def snapshot(self) -> int:
        return self.pos

    def resume(self, resume_state: int) -> None:
        self.pos = resume_state


def _run_source(source: Source[Any]) -> List[Any]:
    out: List[Any] = []
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    run_main(flow)
    return out


def test_simple_polling_source_emits_each_item() -> None:
    assert _run_source(_Polled(["a", "b", "c"])) == ["a", "b", "c"]


def test_simple_polling_source_skips_none() -> None:
    assert _run_source(_Polled([None, 1, None, 2])) == [1, 2]


def test_simple_polling_source_retry_polls_again() -> None:
    retry = SimplePollingSource.Retry(timedelta(milliseconds=1))
    assert retry.timeout == timedelta(milliseconds=1)
    assert _run_source(_Polled([1, retry, 2, retry, retry, 3])) == [1, 2, 3]


class _CountToThree(SimplePollingSource[int]):
    """Bytewax's ``examples/batch_operator.py`` source: one type argument, no state."""

    def __init__(self) -> None:
        super().__init__(timedelta(microseconds=1))
        self.count = 0

    def next_item(self) -> int:
        self.count += 1
        if self.count > 3:
            raise StopIteration()
        return self.count


def test_simple_polling_source_takes_one_type_argument() -> None:
    assert _run_source(_CountToThree()) == [1, 2, 3]
    assert _CountToThree().snapshot() is None


_TYPED_USE = """
from datetime import timedelta
from fastflow.inputs import SimplePollingSource

class Counter(SimplePollingSource[int]):
    def next_item(self) -> int | None:
        return 1

class Resumable(SimplePollingSource[int, str]):
    def next_item(self) -> int | None:
        return 1

    def snapshot(self) -> str:
        return "resume here"

none: None = Counter(timedelta(seconds=1)).snapshot()
text: str = Resumable(timedelta(seconds=1)).snapshot()
wrong: int = Counter(timedelta(seconds=1)).snapshot()
"""


def test_simple_polling_source_state_type_defaults_to_none_for_mypy(tmp_path: Path) -> None:
    (tmp_path / "use.py").write_text(_TYPED_USE)
    checkout = Path(fastflow.__file__).parent.parent  # mypy does not read editable installs
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
         str(tmp_path / "cache"), "use.py"],
        cwd=tmp_path, env={**os.environ, "MYPYPATH": str(checkout)}, capture_output=True,
        text=True, timeout=600, check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [
        'use.py:18: error: Incompatible types in assignment (expression has type "None", '
        'variable has type "int")  [assignment]'
    ], done.stdout + done.stderr


def test_simple_polling_source_is_one_partition() -> None:
    source = _Polled([])
    assert source.list_parts() == ["singleton"]


def test_simple_polling_partition_schedules_by_interval() -> None:
    source = _Polled([1, 2])
    part = source.build_part("df.inp", "singleton", None)
    first = part.next_awake()
    assert first is not None
    assert part.next_batch() == [1]
    assert part.next_awake() == first + timedelta(milliseconds=1)
    assert part.next_batch() == [2]
    assert part.next_awake() == first + timedelta(milliseconds=2)
    with pytest.raises(StopIteration):
        part.next_batch()


def test_simple_polling_partition_aligns_to_a_grid() -> None:
    before = datetime.now(timezone.utc)
    align = before - timedelta(hours=1, microseconds=300)
    part = _Polled([1], align_to=align).build_part("df.inp", "singleton", None)
    awake = part.next_awake()
    assert awake is not None and awake >= before
    assert (awake - align) % timedelta(milliseconds=1) == timedelta(0)


def test_simple_polling_partition_aligned_in_the_future_waits_for_it() -> None:
    align = datetime.now(timezone.utc) + timedelta(hours=1)
    part = _Polled([1], align_to=align).build_part("df.inp", "singleton", None)
    awake = part.next_awake()
    assert awake is not None
    assert (align - awake) % timedelta(milliseconds=1) == timedelta(0)
    assert awake <= align


def test_simple_polling_source_snapshot_and_resume() -> None:
    source = _Polled(["a", "b", "c"])
    part = source.build_part("df.inp", "singleton", None)
    assert part.next_batch() == ["a"]
    assert part.snapshot() == 1
    resumed = _Polled(["a", "b", "c"]).build_part("df.inp", "singleton", 1)
    assert resumed.next_batch() == ["b"]


def test_simple_polling_source_default_snapshot_is_none() -> None:
    class Once(SimplePollingSource[int, None]):
        def __init__(self) -> None:
            super().__init__(timedelta(seconds=1))

        def next_item(self) -> int:
            return 1

    part = Once().build_part("df.inp", "singleton", None)
    assert part.next_batch() == [1]
    assert part.snapshot() is None


def test_simple_polling_source_needs_a_positive_interval() -> None:
    class Zero(_Polled):
        def __init__(self) -> None:
            SimplePollingSource.__init__(self, timedelta(0))

    with pytest.raises(ValueError, match="interval must be positive"):
        Zero()


# Custom dynamic sources.


class _Counter(StatelessSourcePartition[int]):
    def __init__(self, log: List[Any], worker_index: int, n: int) -> None:
        self.log = log
        self.i = 0
        self.n = n
        self.worker_index = worker_index

    def next_batch(self) -> List[int]:
        if self.i == self.n:
            raise StopIteration()
        self.i += 1
        return [self.i] if self.i % 2 else [self.i, -self.i]

    def close(self) -> None:
        self.log.append("close")


class _CounterSource(DynamicSource[int]):
    def __init__(self, n: int) -> None:
        self.n = n
        self.log: List[Any] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Counter:
        self.log.append(("build", step_id, worker_index, worker_count))
        return _Counter(self.log, worker_index, self.n)


def test_dynamic_source_is_built_once_per_worker_and_closed() -> None:
    source = _CounterSource(4)
    assert _run_source(source) == [1, 2, -2, 3, 4, -4]
    assert source.log == [("build", "df.inp", 0, 1), "close"]


def test_dynamic_source_that_ends_at_once() -> None:
    assert _run_source(_CounterSource(0)) == []


def test_stateless_partition_defaults() -> None:
    # API surface: the base class's default methods, as in Bytewax (what a
    # None wake time does in a run is checked in runtime/test_engine.py).
    part = _Counter([], 0, 1)
    assert part.next_awake() is None
    assert StatelessSourcePartition.close(part) is None


class _Listed(StatelessSourcePartition[Any]):
    """Returns the given batches in order; empty batches are fine."""

    def __init__(self, batches: List[Iterable[Any]]) -> None:
        self.batches = list(batches)

    def next_batch(self) -> Iterable[Any]:
        if not self.batches:
            raise StopIteration()
        return self.batches.pop(0)


class _ListedSource(DynamicSource[Any]):
    def __init__(self, batches: List[Iterable[Any]]) -> None:
        self.batches = batches

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Listed:
        return _Listed(self.batches)


def test_source_batches_may_be_empty_or_any_iterable() -> None:
    source = _ListedSource([[], (1, 2), iter([3]), [], range(4, 6)])
    assert _run_source(source) == [1, 2, 3, 4, 5]


def test_source_next_awake_delays_the_next_poll() -> None:
    class Later(_Listed):
        def __init__(self) -> None:
            super().__init__([[1], [2]])
            self.polls: List[datetime] = []
            self.awake: Optional[datetime] = None

        def next_batch(self) -> Iterable[Any]:
            self.polls.append(datetime.now(timezone.utc))
            self.awake = self.polls[-1] + timedelta(milliseconds=50)
            return super().next_batch()

        def next_awake(self) -> Optional[datetime]:
            return self.awake

    part = Later()

    class LaterSource(DynamicSource[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Later:
            return part

    assert _run_source(LaterSource()) == [1, 2]
    # Every poll came after the time the previous one asked for.
    for earlier, later in zip(part.polls, part.polls[1:], strict=False):
        assert later >= earlier + timedelta(milliseconds=50)


def test_source_raising_abort_execution_ends_the_run_quietly() -> None:
    class Aborting(_Listed):
        def next_batch(self) -> Iterable[Any]:
            if not self.batches:
                raise AbortExecution()
            return super().next_batch()

    class AbortingSource(DynamicSource[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Aborting:
            return Aborting([[1], [2]])

    assert issubclass(AbortExecution, RuntimeError)  # API surface, as in Bytewax
    assert _run_source(AbortingSource()) == [1, 2]


def test_source_raising_is_a_runtime_error_naming_the_step() -> None:
    class Broken(StatelessSourcePartition[Any]):
        def next_batch(self) -> List[Any]:
            raise OSError("disk gone")

    class BrokenSource(DynamicSource[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Broken:
            return Broken()

    with pytest.raises(FastflowRuntimeError, match=r"`next_batch` in step 'df\.inp'") as info:
        _run_source(BrokenSource())
    assert isinstance(info.value.__cause__, OSError)


# Custom fixed-partitioned sources.


class _Part(StatefulSourcePartition[str, int]):
    def __init__(self, name: str, n: int, start: int, log: List[Any]) -> None:
        self.name = name
        self.n = n
        self.i = start
        self.log = log

    def next_batch(self) -> List[str]:
        if self.i >= self.n:
            raise StopIteration()
        self.i += 1
        return [f"{self.name}{self.i}"]

    def snapshot(self) -> int:
        return self.i

    def close(self) -> None:
        self.log.append(("close", self.name))


class _PartsSource(FixedPartitionedSource[str, int]):
    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.log: List[Any] = []

    def list_parts(self) -> List[str]:
        return list(self.sizes)

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _Part:
        self.log.append(("build", step_id, for_part, resume_state))
        return _Part(for_part, self.sizes[for_part], resume_state or 0, self.log)


def test_fixed_partitioned_source_reads_every_partition() -> None:
    source = _PartsSource({"x": 2, "y": 3, "z": 0})
    assert _run_source(source) == ["x1", "y1", "x2", "y2", "y3"]
    assert source.log[:3] == [
        ("build", "df.inp", "x", None),
        ("build", "df.inp", "y", None),
        ("build", "df.inp", "z", None),
    ]
    assert sorted(source.log[3:]) == [("close", "x"), ("close", "y"), ("close", "z")]


def test_fixed_partitioned_source_with_no_partitions() -> None:
    assert _run_source(_PartsSource({})) == []


def test_stateful_partition_defaults() -> None:
    # API surface: the base class's default methods, as in Bytewax.
    part = _Part("p", 1, 0, [])
    assert part.next_awake() is None
    assert StatefulSourcePartition.close(part) is None


# Sinks.


class _ListPart(StatelessSinkPartition[Any]):
    def __init__(self, log: List[Any]) -> None:
        self.log = log

    def write_batch(self, items: List[Any]) -> None:
        self.log.append(("write", list(items)))

    def close(self) -> None:
        self.log.append("close")


class _LogSink(DynamicSink[Any]):
    def __init__(self) -> None:
        self.log: List[Any] = []

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ListPart:
        self.log.append(("build", step_id, worker_index, worker_count))
        return _ListPart(self.log)


def _run_to_sink(items: List[Any], sink: Sink[Any], batch_size: int = 1) -> None:
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, TestingSource(items, batch_size)), sink)
    run_main(flow)


def test_dynamic_sink_gets_batches_and_is_closed() -> None:
    sink = _LogSink()
    _run_to_sink([1, 2, 3], sink, 2)
    assert sink.log == [("build", "df.out", 0, 1), ("write", [1, 2]), ("write", [3]), "close"]


def test_dynamic_sink_with_no_items_is_built_and_closed() -> None:
    sink = _LogSink()
    _run_to_sink([], sink)
    assert sink.log == [("build", "df.out", 0, 1), "close"]


def test_sink_raising_is_a_runtime_error_naming_the_step() -> None:
    class Broken(StatelessSinkPartition[Any]):
        def write_batch(self, items: List[Any]) -> None:
            raise ValueError("full")

    class BrokenSink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> Broken:
            return Broken()

    with pytest.raises(FastflowRuntimeError, match=r"`write_batch` in step 'df\.out'") as info:
        _run_to_sink([1], BrokenSink())
    assert isinstance(info.value.__cause__, ValueError)


class _KeepPart(StatefulSinkPartition[Any, int]):
    def __init__(self, name: str, log: List[Any]) -> None:
        self.name = name
        self.log = log
        self.written = 0

    def write_batch(self, values: List[Any]) -> None:
        self.log.append(("write", self.name, list(values)))
        self.written += len(values)

    def snapshot(self) -> int:
        return self.written

    def close(self) -> None:
        self.log.append(("close", self.name))


class _PartsSink(FixedPartitionedSink[Any, int]):
    def __init__(self, parts: List[str]) -> None:
        self.parts = parts
        self.log: List[Any] = []

    def list_parts(self) -> List[str]:
        return self.parts

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _KeepPart:
        self.log.append(("build", step_id, for_part, resume_state))
        return _KeepPart(for_part, self.log)


def test_default_part_fn_is_adler32() -> None:
    sink = _PartsSink(["p0"])
    assert sink.part_fn("a") == 6422626 == zlib.adler32(b"a")
    assert sink.part_fn("héllo") == zlib.adler32("héllo".encode())


def test_fixed_partitioned_sink_routes_values_by_part_fn() -> None:
    sink = _PartsSink(["p0", "p1", "p2"])
    _run_to_sink([("a", 1), ("b", 2), ("c", 3), ("hello", 4)], sink)
    writes = [entry for entry in sink.log if entry[0] == "write"]
    assert writes == [
        ("write", "p1", [1]),
        ("write", "p0", [2]),
        ("write", "p2", [3]),
        ("write", "p1", [4]),
    ]


def test_fixed_partitioned_sink_builds_partitions_lazily() -> None:
    sink = _PartsSink(["p0", "p1", "p2"])
    _run_to_sink([("a", 1), ("a", 2)], sink)  # "a" goes to p1 only
    assert sink.log == [
        ("build", "df.out", "p1", None),
        ("write", "p1", [1]),
        ("write", "p1", [2]),
        ("close", "p1"),
    ]


def test_fixed_partitioned_sink_groups_a_batch_per_partition() -> None:
    sink = _PartsSink(["p0", "p1", "p2"])
    _run_to_sink([("a", 1), ("b", 2), ("a", 3)], sink, batch_size=3)
    writes = sorted(entry for entry in sink.log if entry[0] == "write")
    assert writes == [("write", "p0", [2]), ("write", "p1", [1, 3])]


def test_fixed_partitioned_sink_custom_part_fn() -> None:
    class ByLength(_PartsSink):
        def part_fn(self, item_key: str) -> int:
            return len(item_key)

    sink = ByLength(["even", "odd"])
    _run_to_sink([("ab", "x"), ("abc", "y"), ("", "z")], sink)
    writes = [entry for entry in sink.log if entry[0] == "write"]
    assert writes == [("write", "even", ["x"]), ("write", "odd", ["y"]), ("write", "even", ["z"])]


@pytest.mark.parametrize("bad", [1, ("a", 1, 2), ["a", 1], (1, 1)])
def test_fixed_partitioned_sink_needs_str_keyed_pairs(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"step 'df\.out' requires `\(key, value\)`") as info:
        _run_to_sink([bad], _PartsSink(["p0"]))
    assert isinstance(info.value, RoutingError)  # the exception class is API surface
    assert repr(bad) in str(info.value)


# stdio.


def test_stdout_sink_prints_like_print(capsys: pytest.CaptureFixture[str]) -> None:
    _run_to_sink(["a", 1, ("k", "v"), None, b"x", 1.5, "two\nlines"], StdOutSink(), 3)
    assert capsys.readouterr().out == "a\n1\n('k', 'v')\nNone\nb'x'\n1.5\ntwo\nlines\n"


def test_stdout_sink_with_no_items_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    _run_to_sink([], StdOutSink())
    assert capsys.readouterr().out == ""


def test_stdout_sink_interleaves_with_inspect(capsys: pytest.CaptureFixture[str]) -> None:
    flow = Dataflow("df")
    s = op.inspect("i", op.input("inp", flow, TestingSource(["x", "y"])))
    op.output("out", s, StdOutSink())
    run_main(flow)
    assert capsys.readouterr().out == "df.i: 'x'\nx\ndf.i: 'y'\ny\n"


@pytest.mark.parametrize("batch_size", [1, 2, 10])
def test_stdin_source_reads_lines(monkeypatch: pytest.MonkeyPatch, batch_size: int) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a\nb b\n\nlast"))
    assert _run_source(StdInSource(batch_size)) == ["a", "b b", "", "last"]


def test_stdin_source_on_empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert _run_source(StdInSource()) == []

"""Run flows in-process and feed them test data.

:class:`TestingSource` plays a list (with ``EOF``, ``ABORT`` and ``PAUSE``
markers to script endings, crashes and stalls); :class:`TestingSink` collects
output into a list; :func:`run_main` runs a flow in the calling thread.

>>> import fastflow.operators as op
>>> from fastflow.dataflow import Dataflow
>>> out = []
>>> flow = Dataflow("testing_eg")
>>> s = op.input("inp", flow, TestingSource([1, 2, TestingSource.EOF(), 3]))
>>> op.output("out", s, TestingSink(out))
>>> run_main(flow)
>>> out
[1, 2]
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any, TypeVar

from fastflow._cext.ops import index_of_type
from fastflow.dataflow import Dataflow
from fastflow.inputs import (
    AbortExecution,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from fastflow.outputs import DynamicSink, StatelessSinkPartition
from fastflow.recovery import RecoveryConfig

__all__ = [
    "TestingSink",
    "TestingSource",
    "TimeTestingGetter",
    "cluster_main",
    "ffwd_iter",
    "poll_next_batch",
    "run_main",
]

X = TypeVar("X")


class TestingSource(FixedPartitionedSource[X, Any]):
    """Emit the items of an iterable, ``batch_size`` at a time, on one partition.

    Markers in the iterable script what a real source would do:
    ``TestingSource.EOF()`` ends the input there, ``TestingSource.ABORT()``
    stops the execution as if the process had crashed (once per marker
    object), ``TestingSource.PAUSE(for_duration)`` holds back the next items.

    Resuming: the snapshot holds how many positions were consumed and a
    fingerprint of them. If the iterable given on resume starts with the same
    items, reading continues after them; if it differs, it is new data and is
    read from its start. A plain ``int`` resume state skips that many positions.
    """

    __test__ = False  # not a pytest test class

    @dataclass
    class EOF:
        """End the input here, as if the source had no more data."""

    @dataclass
    class ABORT:
        """Stop the execution here without finishing the epoch, as a crash would."""

        _triggered: bool = False

    @dataclass
    class PAUSE:
        """Emit nothing for ``for_duration``."""

        for_duration: timedelta

    def __init__(self, ib: Iterable[X | EOF | ABORT | PAUSE], batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ValueError(f"TestingSource batch_size must be at least 1; got {batch_size}")
        self._ib = ib
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        """One partition, named ``"iterable"``."""
        return ["iterable"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any | None
    ) -> StatefulSourcePartition[X, Any]:
        """Build the partition, continuing after ``resume_state`` when it matches."""
        return _IterPartition(self._ib, self._batch_size, resume_state)


_MARKERS = (TestingSource.EOF, TestingSource.ABORT, TestingSource.PAUSE)


class _Fingerprint:
    """A digest of the items at positions 0, 1, 2, 4, 8, ... and of the last one.

    Sampling keeps its cost per batch tiny while still telling a continuation
    of the same data from new data.
    """

    def __init__(self) -> None:
        self._digest = hashlib.blake2b(digest_size=8)
        self._count = 0
        self._last: Any = None

    def add(self, items: Sequence[Any]) -> None:
        start, end = self._count, self._count + len(items)
        pos = 0 if start == 0 else 1 << (start - 1).bit_length()
        while pos < end:
            self._digest.update(f"{pos}:{items[pos - start]!r}\n".encode())
            pos = 1 if pos == 0 else pos * 2
        if items:
            self._last = items[-1]
        self._count = end

    @property
    def count(self) -> int:
        return self._count

    def hexdigest(self) -> str:
        digest = self._digest.copy()
        digest.update(f"last:{self._last!r}".encode())
        return digest.hexdigest()


class _IterPartition(StatefulSourcePartition[X, Any]):
    def __init__(self, ib: Iterable[Any], batch_size: int, resume_state: Any | None) -> None:
        self._batch_size = batch_size
        self._seq = ib if isinstance(ib, (list, tuple)) else None
        self._it: Iterator[Any] | None = None if self._seq is not None else iter(ib)
        self._pos = 0  # next index into ``_seq``
        self._pending: list[Any] = []  # read from ``_it`` but not consumed yet
        self._seen = _Fingerprint()
        self._next_awake: datetime | None = None
        self._ended = False
        if isinstance(resume_state, int):
            self._take(resume_state)
        elif isinstance(resume_state, dict):
            head = self._take(resume_state["consumed"])
            if (
                self._seen.count != resume_state["consumed"]
                or self._seen.hexdigest() != resume_state["fingerprint"]
            ):
                self._restart_with(head)

    def _restart_with(self, head: list[Any]) -> None:
        """The input is new data: read it from its start, ``head`` included."""
        self._seen = _Fingerprint()
        if self._seq is None:
            self._pending = head
        else:
            self._pos = 0

    def _take(self, n: int) -> list[Any]:
        """Consume up to ``n`` positions and return them."""
        return self._consume(self._peek(n))

    def _peek(self, n: int) -> list[Any]:
        """Return (a new list of) up to ``n`` next positions without consuming them."""
        if self._seq is not None:
            chunk = self._seq[self._pos : self._pos + n]
            return chunk if type(chunk) is list else list(chunk)
        assert self._it is not None
        if len(self._pending) < n:
            self._pending.extend(islice(self._it, n - len(self._pending)))
        return self._pending[:n]

    def _consume(self, chunk: list[Any]) -> list[Any]:
        """Consume ``chunk``, a head of what :meth:`_peek` returned, and return it."""
        if self._seq is not None:
            self._pos += len(chunk)
        else:
            del self._pending[: len(chunk)]
        self._seen.add(chunk)
        return chunk

    def next_batch(self) -> list[X]:
        """Up to ``batch_size`` items; a marker ends the batch early and acts on the next call.

        An ``ABORT`` that has already fired is skipped as if it were not there
        (the batch goes on filling), as in Bytewax.
        """
        if self._ended:
            raise StopIteration()
        self._next_awake = None
        batch: list[Any] = []
        while len(batch) < self._batch_size:
            wanted = self._batch_size - len(batch)
            chunk = self._peek(wanted)
            if not chunk:
                break
            at = index_of_type(chunk, _MARKERS)
            if at != 0:
                taken = self._consume(chunk if at < 0 else chunk[:at])
                if batch:
                    batch += taken
                else:
                    batch = taken  # a new list from ``_peek``: no copy in the common case
                if at < 0 and len(chunk) < wanted:
                    break  # the input has no more
                continue
            marker = chunk[0]
            if isinstance(marker, TestingSource.ABORT) and marker._triggered:
                self._consume(chunk[:1])  # fired in an earlier execution
                continue
            if batch:
                return batch  # the marker acts on the next call
            self._consume(chunk[:1])
            if isinstance(marker, TestingSource.EOF):
                self._ended = True
                raise StopIteration()
            if isinstance(marker, TestingSource.ABORT):
                marker._triggered = True
                raise AbortExecution()
            self._next_awake = datetime.now(timezone.utc) + marker.for_duration
            return []
        if not batch:
            self._ended = True
            raise StopIteration()
        return batch

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> Any:
        return {"consumed": self._seen.count, "fingerprint": self._seen.hexdigest()}


class TestingSink(DynamicSink[X]):
    """Append every output item to a list (which the caller keeps)."""

    __test__ = False  # not a pytest test class

    def __init__(self, ls: list[X]) -> None:
        self._ls = ls

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[X]:
        """Every worker appends to the same list."""
        return _ListPartition(self._ls)


class _ListPartition(StatelessSinkPartition[X]):
    def __init__(self, ls: list[X]) -> None:
        self._ls = ls

    def write_batch(self, items: list[X]) -> None:
        self._ls.extend(items)


@dataclass
class TimeTestingGetter:
    """A clock for tests: ``get()`` returns ``now``, which only moves by ``advance``."""

    now: datetime

    def advance(self, td: timedelta) -> None:
        """Move the clock forward."""
        self.now += td

    def get(self) -> datetime:
        """Return the current test time."""
        return self.now


def ffwd_iter(it: Iterator[Any], n: int) -> None:
    """Skip ``n`` items of an iterator.

    >>> it = iter(range(5))
    >>> ffwd_iter(it, 3)
    >>> next(it)
    3
    """
    for _ in islice(it, n):
        pass


def poll_next_batch(
    part: StatefulSourcePartition[X, Any] | StatelessSourcePartition[X],
    timeout: timedelta = timedelta(seconds=5),
) -> list[X]:
    """Call ``part.next_batch()`` until it returns items; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        batch = list(part.next_batch())
        if batch:
            return batch
        if time.monotonic() >= deadline:
            raise TimeoutError()
        time.sleep(0.001)


def run_main(
    flow: Dataflow,
    *,
    epoch_interval: timedelta | None = None,
    recovery_config: RecoveryConfig | None = None,
) -> None:
    """Run ``flow`` to completion in this thread, with one worker.

    ``epoch_interval`` (default 10 s) is how often state is snapshotted when
    ``recovery_config`` is given.
    """
    from fastflow._runtime.execute import run_flow

    run_flow(flow, epoch_interval=epoch_interval, recovery_config=recovery_config)


def cluster_main(
    flow: Dataflow,
    addresses: list[str],
    proc_id: int,
    *,
    epoch_interval: timedelta | None = None,
    recovery_config: RecoveryConfig | None = None,
    worker_count_per_proc: int = 1,
) -> None:
    """Run ``flow`` as process ``proc_id`` of a cluster at ``addresses``.

    The process runs ``worker_count_per_proc`` workers, in this thread, round
    by round. Only a one-process cluster is supported so far: ``addresses``
    of at most one entry, ``proc_id`` 0.
    """
    from fastflow._runtime.execute import check_one_process, run_flow

    check_one_process(addresses, proc_id)
    run_flow(
        flow,
        epoch_interval=epoch_interval,
        recovery_config=recovery_config,
        worker_count=worker_count_per_proc,
    )


if __name__ == "__main__":  # `python -m fastflow.testing FLOW -p N`, as Bytewax's testing module
    import sys

    from fastflow.run import main

    sys.exit(main(prog="python -m fastflow.testing"))

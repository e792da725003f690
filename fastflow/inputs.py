"""Sources: where a dataflow's items come from.

Subclass :class:`FixedPartitionedSource` for input that is split into a fixed
set of named partitions which can resume from a snapshot (files, queues with
offsets), or :class:`DynamicSource` for input read independently on every
worker with nothing to resume. The ``batch*`` helpers turn iterables and
getters into the lists of items ``next_batch`` returns.
"""

from __future__ import annotations

import asyncio
import queue
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any, Generic

from typing_extensions import TypeVar

__all__ = [
    "AbortExecution",
    "DynamicSource",
    "FixedPartitionedSource",
    "SimplePollingSource",
    "Source",
    "StatefulSourcePartition",
    "StatelessSourcePartition",
    "batch",
    "batch_async",
    "batch_getter",
    "batch_getter_ex",
]

X = TypeVar("X")
S = TypeVar("S")
Sn = TypeVar("Sn", default=None)
"""A state type that may be left out: ``SimplePollingSource[int]`` keeps no state (``None``)."""


class AbortExecution(RuntimeError):
    """Raised from ``next_batch`` to stop the execution as if the process died."""


class Source(ABC, Generic[X]):  # noqa: B024 - a marker base, like Bytewax's
    """Base of all sources; subclass one of the two kinds below instead."""


class StatefulSourcePartition(ABC, Generic[X, S]):
    """One partition of a :class:`FixedPartitionedSource`, able to resume."""

    @abstractmethod
    def next_batch(self) -> Iterable[X]:
        """Return the next items (maybe none); raise ``StopIteration`` at the end."""

    def next_awake(self) -> datetime | None:
        """When to call :meth:`next_batch` next (UTC); ``None`` means right away."""
        return None

    @abstractmethod
    def snapshot(self) -> S:
        """Return the state to resume from: it is passed to ``build_part`` after a restart."""

    def close(self) -> None:
        """Release resources once the partition is done."""


class FixedPartitionedSource(Source[X], Generic[X, S]):
    """Input split into a fixed set of named partitions, each resumable."""

    @abstractmethod
    def list_parts(self) -> list[str]:
        """Return the names of the partitions this source is made of."""

    @abstractmethod
    def build_part(
        self, step_id: str, for_part: str, resume_state: S | None
    ) -> StatefulSourcePartition[X, S]:
        """Build partition ``for_part``, resuming from ``resume_state`` if not ``None``."""


class StatelessSourcePartition(ABC, Generic[X]):
    """A worker's share of a :class:`DynamicSource`; it keeps no resume state."""

    @abstractmethod
    def next_batch(self) -> Iterable[X]:
        """Return the next items (maybe none); raise ``StopIteration`` at the end."""

    def next_awake(self) -> datetime | None:
        """When to call :meth:`next_batch` next (UTC); ``None`` means right away."""
        return None

    def close(self) -> None:
        """Release resources once the partition is done."""


class DynamicSource(Source[X]):
    """Input read by every worker on its own, with no resume."""

    @abstractmethod
    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSourcePartition[X]:
        """Build this worker's partition."""


class SimplePollingSource(FixedPartitionedSource[X, Sn]):
    """Call :meth:`next_item` every ``interval``, on one worker.

    Raise :class:`SimplePollingSource.Retry` from ``next_item`` to try again
    sooner (or later) than the interval; return ``None`` to emit nothing this
    time. ``align_to`` pins the polling times to a grid starting at that
    moment. By default nothing is snapshotted, so after a restart polling
    starts again (at-least-once); override :meth:`snapshot` and :meth:`resume`
    to continue where the last snapshot left off.

    >>> from datetime import timedelta
    >>> from fastflow.dataflow import Dataflow
    >>> import fastflow.operators as op
    >>> from fastflow.testing import run_main
    >>> class Countdown(SimplePollingSource):
    ...     def __init__(self):
    ...         super().__init__(timedelta(milliseconds=1))
    ...         self.left = 2
    ...     def next_item(self):
    ...         if self.left == 0:
    ...             raise StopIteration()
    ...         self.left -= 1
    ...         return self.left
    >>> flow = Dataflow("poll_eg")
    >>> _ = op.inspect("show", op.input("inp", flow, Countdown()))
    >>> run_main(flow)
    poll_eg.show: 1
    poll_eg.show: 0
    """

    class Retry(Exception):
        """Raised by ``next_item`` to be called again after ``timeout``."""

        def __init__(self, timeout: timedelta) -> None:
            super().__init__(timeout)
            self.timeout = timeout

    def __init__(self, interval: timedelta, align_to: datetime | None = None) -> None:
        if interval <= timedelta(0):
            raise ValueError("SimplePollingSource interval must be positive")
        self._interval = interval
        self._align_to = align_to

    def list_parts(self) -> list[str]:
        """The source is a single partition."""
        return ["singleton"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Sn | None
    ) -> StatefulSourcePartition[X, Sn]:
        """Build the polling partition, first passing ``resume_state`` to :meth:`resume`."""
        if resume_state is not None:
            self.resume(resume_state)
        return _PollingPartition(self._interval, self._align_to, self.next_item, self.snapshot)

    @abstractmethod
    def next_item(self) -> X | None:
        """Return the next item (``None``: none this time); ``StopIteration`` ends the input."""

    def snapshot(self) -> Sn:
        """Return where to resume reading after a restart (default ``None``: nothing to resume)."""
        # None is an Sn only for sources without resume state (Sn = None), the ones that keep
        # this default; a typed default for one choice of Sn is beyond Python's type system.
        return None  # type: ignore[return-value]

    def resume(self, resume_state: Sn) -> None:
        """Continue after ``resume_state`` (what :meth:`snapshot` returned), before polling."""


class _PollingPartition(StatefulSourcePartition[X, S]):
    def __init__(
        self,
        interval: timedelta,
        align_to: datetime | None,
        getter: Callable[[], X | None],
        snapshot: Callable[[], S],
    ) -> None:
        self._interval = interval
        self._getter = getter
        self._snapshot = snapshot
        now = datetime.now(timezone.utc)
        self._next_awake = now
        if align_to is not None:
            since_mark = (now - align_to) % interval
            if since_mark:
                self._next_awake += interval - since_mark

    def next_batch(self) -> list[X]:
        try:
            item = self._getter()
        except SimplePollingSource.Retry as retry:
            self._next_awake = datetime.now(timezone.utc) + retry.timeout
            return []
        self._next_awake += self._interval
        return [] if item is None else [item]

    def next_awake(self) -> datetime | None:
        return self._next_awake

    def snapshot(self) -> S:
        return self._snapshot()


def batch(ib: Iterable[X], batch_size: int) -> Iterator[list[X]]:
    """Cut an iterable into lists of at most ``batch_size`` items.

    >>> list(batch(range(5), 2))
    [[0, 1], [2, 3], [4]]
    """
    it = iter(ib)
    while chunk := list(islice(it, batch_size)):
        yield chunk


def batch_getter(
    getter: Callable[[], X], batch_size: int, yield_on: X | None = None
) -> Iterator[list[X]]:
    """Call ``getter`` into lists of up to ``batch_size``; a ``yield_on`` result ends a list early.

    >>> it = iter([1, None, 2, 3])
    >>> next(batch_getter(lambda: next(it), 5))
    [1]
    """
    while True:
        chunk: list[X] = []
        while len(chunk) < batch_size:
            item = getter()
            if item == yield_on:
                break
            chunk.append(item)
        yield chunk


def batch_getter_ex(
    getter: Callable[[], X],
    batch_size: int,
    yield_ex: type[Exception] = queue.Empty,
) -> Iterator[list[X]]:
    """Like :func:`batch_getter`, but a list ends early when ``getter`` raises ``yield_ex``.

    >>> q = queue.Queue()
    >>> q.put(1)
    >>> next(batch_getter_ex(q.get_nowait, 5))
    [1]
    """
    while True:
        chunk: list[X] = []
        while len(chunk) < batch_size:
            try:
                chunk.append(getter())
            except yield_ex:
                break
        yield chunk


def batch_async(
    aib: AsyncIterable[X],
    timeout: timedelta,
    batch_size: int,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Iterator[list[X]]:
    """Drive an async iterable, yielding what arrived within ``timeout`` (up to ``batch_size``).

    >>> async def numbers():
    ...     for i in range(3):
    ...         yield i
    >>> list(batch_async(numbers(), timedelta(seconds=1), 2))
    [[0, 1], [2]]
    """
    loop = loop if loop is not None else asyncio.new_event_loop()
    ait = aib.__aiter__()
    pending: asyncio.Future[Any] | None = None
    exhausted = False

    async def fill() -> list[X]:
        nonlocal pending, exhausted
        chunk: list[X] = []
        deadline = loop.time() + timeout.total_seconds()
        while len(chunk) < batch_size:
            if pending is None:
                pending = asyncio.ensure_future(ait.__anext__())
            left = deadline - loop.time()
            if left <= 0:
                break
            finished, _ = await asyncio.wait([pending], timeout=left)
            if not finished:
                break
            fut, pending = pending, None
            try:
                chunk.append(fut.result())
            except StopAsyncIteration:
                exhausted = True
                break
        return chunk

    while not exhausted:
        chunk = loop.run_until_complete(fill())
        if chunk or not exhausted:
            yield chunk

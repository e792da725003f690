"""Wiring between nodes: a stream's emit and end, within a worker or across workers.

With one worker, a stream's emit is its consumers' ``inbox.append`` (see
:func:`fan_out`). With several workers in a process, some edges *exchange*:
the batch a producer on any worker emits is split, and each part goes into the
inbox of the consumer on the worker that must handle it (:class:`Exchange`).
Keyed steps split by key owner (``stable_hash(key) % N``), ``redistribute``
spreads items over all workers, a partitioned sink sends items to the worker
owning their partition. Workers of one process run in the same thread, so an
exchange between them is a list append, like any other edge; a part for a
worker of another process goes to a :class:`RemoteSlot`, which queues it on the
link to that process (``distributed/wire.py``, ``distributed/processes.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastflow._runtime.distributed.wire import Link
from fastflow._runtime.nodes import End, Node, Push

Split = Callable[[list[Any]], list[list[Any]]]


class RemoteInbox:
    """Input ``port`` of a consumer on another process: appending sends the batch."""

    def __init__(self, link: Link, step: int, port: int, worker: int) -> None:
        self._link, self._step, self._port, self._worker = link, step, port, worker

    def append(self, batch: list[Any]) -> None:
        """Queue ``batch`` on the link to the consumer's process."""
        self._link.send_batch(self._step, self._port, self._worker, batch)

    def end(self) -> None:
        """Tell the consumer that this process's producers into the port ended."""
        self._link.send_end(self._step, self._port, self._worker)


class RemoteSlot:
    """Stands, in an exchange, for the node of plan step ``step`` on another process."""

    def __init__(self, link: Link, step: int, worker: int, port_count: int) -> None:
        self.inboxes = [RemoteInbox(link, step, port, worker) for port in range(port_count)]


def port_end(consumer: Node | RemoteSlot, port: int) -> End:
    """How an exchange ends ``consumer``'s input ``port``."""
    if isinstance(consumer, RemoteSlot):
        return consumer.inboxes[port].end
    return consumer.upstream_ended


class Countdown:
    """Calls ``end`` at the ``count``-th call.

    An exchanged port ends once the producers of every process ended: its own
    exchange's end, and an END frame from each other process.
    """

    def __init__(self, count: int, end: End) -> None:
        self._left = count
        self._end = end

    def __call__(self) -> None:
        """One process's producers ended."""
        self._left -= 1
        if self._left == 0:
            self._end()


def nothing(_batch: list[Any] | None = None) -> None:
    """Emit or end a stream nobody reads."""


def local(node: Node, port: int) -> tuple[Push, End]:
    """Emit into and end ``node``'s input ``port`` on the same worker."""
    return node.inboxes[port].append, node.upstream_ended


def fan_out(outs: Sequence[tuple[Push, End]]) -> tuple[Push, End]:
    """One stream's emit and end, given each consumer's (one call when there is one)."""
    if not outs:
        return nothing, nothing
    if len(outs) == 1:
        return outs[0]
    emits = [emit for emit, _end in outs]
    ends = [end for _emit, end in outs]

    def emit(batch: list[Any]) -> None:
        for each in emits:
            each(batch)

    def end() -> None:
        for each in ends:
            each()

    return emit, end


class Exchange:
    """An edge into one step on every worker: ``split`` says which worker gets what.

    ``consumers`` has one entry per worker of the run (a :class:`RemoteSlot` for a
    worker of another process); ``ends`` how each consumer's port is ended. Each of
    this process's ``producers`` emits into :meth:`emit` and calls :meth:`end` once;
    when all have, every consumer's port is told.
    """

    def __init__(
        self,
        consumers: Sequence[Node | RemoteSlot],
        port: int,
        split: Split,
        producers: int,
        ends: Sequence[End],
    ) -> None:
        self._inboxes = [node.inboxes[port] for node in consumers]
        self._ends = ends
        self._open = producers
        self._split = split

    def emit(self, batch: list[Any]) -> None:
        """Split ``batch`` and queue each part at its worker."""
        for inbox, part in zip(self._inboxes, self._split(batch), strict=True):
            if part:
                inbox.append(part)

    def end(self) -> None:
        """One worker's producer ended; the last one ends every consumer's upstream."""
        self._open -= 1
        if self._open == 0:
            for ended in self._ends:
                ended()


class RoundRobin:
    """Split for ``redistribute``: a batch in contiguous chunks, one per worker.

    Each batch starts at the worker after the last one the previous batch
    reached, so that a stream of small batches spreads evenly too.
    """

    def __init__(self, worker_count: int) -> None:
        self._count = worker_count
        self._next = 0

    def __call__(self, batch: list[Any]) -> list[list[Any]]:
        count = self._count
        parts: list[list[Any]] = [[] for _ in range(count)]
        size = -(-len(batch) // count) or 1
        chunks = 0
        for chunks, start in enumerate(range(0, len(batch), size), 1):
            parts[(self._next + chunks - 1) % count] = batch[start : start + size]
        self._next = (self._next + chunks) % count
        return parts

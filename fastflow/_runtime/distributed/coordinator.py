"""The coordinator of a group of worker processes: epochs, quiescence, commits, failures.

Why a module of its own: the coordinator is the ``fastflow run`` process's side of ``-p N``
and ``--ray`` alike; it sees the processes only as a :class:`ProcessGroup` (forked ones in
``processes.py``, Ray actors in ``ray_actors.py``). At each epoch's end it asks every
process to *pause*, waits until the run is quiescent (every process idle and, over two
consecutive rounds of reports, the same counts of batches sent and received in total),
then has every process encode its workers' changes and commits them with the store's
committer, the only writer of the store. A process that fails or dies makes it kill the
others and raise :class:`~fastflow.errors.ProcessFailed`.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from fastflow import _hooks as hooks
from fastflow._runtime.recording import RunSettings, Start, open_recording
from fastflow._store.changesets import ChangeSet
from fastflow._store.committer import EpochCommitter
from fastflow.errors import ProcessFailed

_FAILURE_POLL_SECONDS = 0.5  # how often the coordinator asks a group without sentinels


class ProcessGroup(Protocol):
    """Worker processes as the coordinator sees them, however they were started."""

    controls: list[Connection]
    """The coordinator's end of each process's control channel, by process index."""

    def sentinels(self) -> list[Any]:
        """Objects ``multiprocessing.connection.wait`` reports ready when a process ends."""
        ...

    def failure(self) -> ProcessFailed | None:
        """A process that ended before it was told to, as an error; None while all run."""
        ...

    def describe(self, process: int) -> ProcessFailed:
        """Why ``process``'s control channel closed: how it died."""
        ...

    def kill(self) -> None:
        """Stop every process now."""
        ...

    def join(self) -> None:
        """Wait until every process has exited (after they were told to stop)."""
        ...


class Coordinator:
    """Paces the epochs of a group of worker processes, commits them, and watches for failures."""

    def __init__(
        self,
        group: ProcessGroup,
        interval: timedelta,
        epoch: int,
        committer: EpochCommitter | None,
    ) -> None:
        """Coordinate ``group``, whose processes start at ``epoch``."""
        self._group = group
        self._controls = group.controls
        self._processes = len(group.controls)
        self._interval = interval.total_seconds()
        self._epoch = epoch
        self._committer = committer
        self._active = epoch - 1  # the latest epoch in which a process reported activity
        self._in_flight = False  # an epoch handed to the committer, not known durable yet

    def run(self) -> None:
        """Coordinate until every process finished; raise :class:`ProcessFailed` if one fails."""
        try:
            self._coordinate()
        except BaseException:
            self._group.kill()
            raise
        self._group.join()

    def _coordinate(self) -> None:
        done: set[int] = set()
        deadline = time.monotonic() + self._interval
        closing: _Closing | None = None
        while True:
            # End of input first: with a due epoch checked first, a short interval would
            # close one epoch after another and never reach the last one (issue 23).
            if closing is None and len(done) == self._processes:
                if self._committer is None:
                    break
                closing = _Closing(self._epoch, last=True, processes=self._processes)
                self._broadcast(("snapshot", self._epoch, True))
            closable = self._committer is not None and self._active >= self._epoch
            if closing is None and closable and time.monotonic() >= deadline:
                closing = _Closing(self._epoch, last=False, processes=self._processes)
                self._broadcast(("pause", self._epoch))
            timeout = None
            if closing is None and closable:
                timeout = max(0.0, deadline - time.monotonic())
            sentinels = self._group.sentinels()
            if not sentinels:  # nothing to wait on for a death: look every so often
                timeout = _FAILURE_POLL_SECONDS if timeout is None else min(
                    timeout, _FAILURE_POLL_SECONDS)
            ready = wait([*self._controls, *sentinels], timeout)
            for source in ready:
                if not isinstance(source, Connection):
                    continue
                process = self._controls.index(source)
                message = self._receive(process, source)
                kind = message[0]
                if kind == "done":
                    done.add(process)
                elif kind == "active":
                    self._active = max(self._active, message[1])
                elif closing is not None and kind in ("idle", "confirmed", "changes"):
                    closing = self._advance(closing, process, message)
            failed = self._group.failure()
            if failed is not None:
                for p, control in enumerate(self._controls):
                    self._receive_pending(p, control)  # its own error, if it raised
                raise failed
            if closing is not None and closing.finished:
                self._epoch += 1
                hooks.current().epoch_started(self._epoch)
                if closing.last:
                    break
                closing = None
                deadline = time.monotonic() + self._interval
        if self._committer is not None and self._in_flight:
            self._committer.wait()
            self._broadcast(("durable",))  # the last epoch, while the sources are open
        self._broadcast(("stop",))
        for p, control in enumerate(self._controls):
            message = self._receive(p, control)
            while message[0] != "exited":
                message = self._receive(p, control)

    def _advance(self, closing: _Closing, process: int, message: tuple[Any, ...]) -> _Closing:
        kind, epoch = message[0], message[1]
        if epoch != closing.epoch:
            return closing
        if kind == "idle":
            closing.idle[process] = (message[2], message[3])
            if closing.quiet():
                closing.confirming = dict(closing.idle)
                closing.confirmed = {}
                self._broadcast(("confirm", closing.epoch))
        elif kind == "confirmed" and closing.confirming is not None:
            closing.confirmed[process] = (message[2], message[3], message[4])
            if len(closing.confirmed) == self._processes:
                if closing.confirmed_unchanged():
                    self._broadcast(("snapshot", closing.epoch, False))
                    closing.snapshotting = True
                closing.confirming = None
        elif kind == "changes":
            closing.changes[process] = pickle.loads(message[2])
            hooks.current().encoded(closing.epoch, message[3])
            if len(closing.changes) == self._processes:
                assert self._committer is not None
                merged = _merge(closing.changes.values())
                self._committer.commit(closing.epoch, merged, last=closing.last)
                if self._in_flight:  # commit() waited for the epoch before: it is durable
                    self._broadcast(("durable",))
                self._in_flight = True
                closing.finished = True
        return closing

    def _broadcast(self, order: tuple[Any, ...]) -> None:
        for p, control in enumerate(self._controls):
            try:
                control.send(order)
            except OSError:
                raise self._group.describe(p) from None

    def _receive(self, process: int, control: Connection) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = control.recv()
        except (EOFError, OSError):
            raise self._group.describe(process) from None
        if message[0] == "error":
            raise ProcessFailed(
                f"process {process} of {self._processes} failed: {message[1]}", message[2]
            )
        if message[0] == "lost":  # another process's link closed: say why, as it tells
            peer = message[1]
            self._receive_pending(peer, self._controls[peer])  # its own error, if it raised
            raise self._group.describe(peer)
        if message[0] == "output":  # a process without a terminal of its own printed
            sys.stdout.write(message[1])
            sys.stdout.flush()
        elif message[0] == "log":  # a line it logged (``_observe/logs.py``), whole
            sys.stderr.write(message[1])
            sys.stderr.flush()
        elif message[0] == "metrics":
            hooks.current().reported(process, message[1])
        return message

    def _receive_pending(self, process: int, control: Connection) -> None:
        """Read what a process said before it ended: its error, if it raised."""
        try:
            while control.poll():
                self._receive(process, control)
        except ProcessFailed as ex:
            if ex.traceback_text is not None:
                raise
        except (EOFError, OSError):
            return


class _Closing:
    """The coordinator's view of one epoch being closed."""

    def __init__(self, epoch: int, *, last: bool, processes: int) -> None:
        self.epoch = epoch
        self.last = last
        self.processes = processes
        self.idle: dict[int, tuple[int, int]] = {}
        self.confirming: dict[int, tuple[int, int]] | None = None
        self.confirmed: dict[int, tuple[bool, int, int]] = {}
        self.snapshotting = last
        self.changes: dict[int, list[list[ChangeSet]]] = {}
        self.finished = False

    def quiet(self) -> bool:
        """Every process idle, and as many batches received as sent."""
        if self.snapshotting or len(self.idle) < self.processes:
            return False
        sent = sum(s for s, _ in self.idle.values())
        return sent == sum(r for _, r in self.idle.values())

    def confirmed_unchanged(self) -> bool:
        """Still idle, nothing sent or received since the reports: nothing in flight."""
        assert self.confirming is not None
        return all(
            idle and (sent, received) == self.confirming[p]
            for p, (idle, sent, received) in self.confirmed.items()
        )


def _merge(per_process: Any) -> list[list[ChangeSet]]:
    merged: list[list[ChangeSet]] = []
    for changes in per_process:
        if not merged:
            merged = [list(sets) for sets in changes]
        else:
            for into, sets in zip(merged, changes, strict=True):
                into.extend(sets)
    return merged


StartGroup = Callable[[Start], ProcessGroup]
"""Starts the processes where the run starts (first epoch, resume state, partitions)."""


def run_group(start: StartGroup, settings: RunSettings) -> None:
    """Start a group of processes and coordinate it to the end, recording it if asked.

    The group starts before the committer's thread does (``recording.open_recording``).
    """
    with open_recording(settings, start) as run:
        Coordinator(run.started, settings.interval, run.start.epoch, run.committer).run()

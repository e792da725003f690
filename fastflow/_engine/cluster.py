"""Several processes on one machine: ``fastflow run -p N``.

The ``fastflow run`` process is the *coordinator*: it opens the recovery store, loads the
resume state, then forks N worker processes, which inherit the plan and the state (no
transfer). Process ``p`` runs workers ``p*M`` to ``p*M + M - 1`` of ``N*M`` (``-w M``)
exactly as one process runs its workers (``worker.py``); edges that exchange between
workers send the parts for other processes' workers over a full mesh of Unix socket pairs
(``wire.py``), as whole batches, encoded once.

Epochs stay aligned without stopping the flow for more than a moment: at each epoch's
end the coordinator asks every process to *pause* (stop reading sources), and waits until
the run is quiescent: every process idle and, over two consecutive rounds of reports,
the same counts of batches sent and received in total (no batch in flight). Then every
process encodes its workers' changes (the consistent cut), sends them to the coordinator
and goes on with the next epoch; the coordinator commits them with the store's committer
(``committer.py``), the only writer of the store. End of input travels as END frames, per
exchanged port, so a step flushes once every process's producers ended.

Failure: a process that raises sends its traceback and exits; one that dies (SIGKILL, OOM)
closes its control pipe. Either way the coordinator kills the others at once and raises
:class:`ProcessFailed`; workers die with the coordinator too (``PR_SET_PDEATHSIG``), so no
process is ever left behind.
"""

from __future__ import annotations

import ctypes
import io
import multiprocessing
import os
import pickle
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from fastflow._engine.committer import EpochCommitter
from fastflow._engine.exchange import Countdown, RemoteSlot, port_end
from fastflow._engine.io import InputNode
from fastflow._engine.nodes import End, Node, StatefulNode
from fastflow._engine.plan import CoreStep
from fastflow._engine.snapshot import Resume, encode_epoch, load_resume
from fastflow._engine.store import ChangeSet, RecoveryStore
from fastflow._engine.wire import DATA, Link
from fastflow._engine.worker import Workers
from fastflow._tracebacks import one_line, user_error, user_traceback

_WAIT_SECONDS = 0.05  # longest a process waits for something when it has nothing to do
_FAILURE_POLL_SECONDS = 0.5  # how often the coordinator asks a group without sentinels
_PR_SET_PDEATHSIG = 1


class ProcessFailed(RuntimeError):
    """A process of a ``-p N`` run raised or died; the others were stopped."""

    def __init__(
        self, message: str, traceback_text: str | None = None, *, died: bool = False
    ) -> None:
        super().__init__(message)
        self.traceback_text = traceback_text
        """The failed process's traceback, if it raised (printed once by ``fastflow run``)."""
        self.died = died
        """Whether the process died (killed, its node lost), rather than failed on its own."""


class Mesh:
    """Links to the other processes, and where arriving batches go (``worker.Peers``)."""

    def __init__(self, process: int, processes: int, per_process: int, links: dict[int, Link]):
        self.process = process
        self.processes = processes
        self.per_process = per_process
        self.worker_count = processes * per_process
        self.links = links
        self._nodes: dict[int, Sequence[Node]] = {}
        self._ends: dict[tuple[int, int, int], End] = {}

    def slots(self, step: int, local_nodes: Sequence[Node], port_count: int) -> list[Any]:
        """Plan step ``step``'s consumer on every worker: local nodes, remote slots."""
        first = self.process * self.per_process
        out: list[Any] = []
        for worker in range(self.worker_count):
            owner = worker // self.per_process
            if owner == self.process:
                out.append(local_nodes[worker - first])
            else:
                out.append(RemoteSlot(self.links[owner], step, worker, port_count))
        return out

    def port_end(self, step: int, port: int, slot: Any) -> End:
        """A local port ends after its exchange and every other process's END frame."""
        if isinstance(slot, RemoteSlot):
            return port_end(slot, port)
        first = self.process * self.per_process
        worker = first + list(self._nodes[step]).index(slot)
        countdown = Countdown(self.processes, slot.upstream_ended)
        self._ends[(step, port, worker)] = countdown
        return countdown

    def register(self, step: int, local_nodes: Sequence[Node]) -> None:
        """Plan step ``step``'s nodes on this process's workers."""
        self._nodes[step] = local_nodes

    def deliver(self, frames: list[tuple[int, int, int, int, Any]]) -> None:
        """Put arrived batches into their nodes' inboxes; count arrived ENDs."""
        first = self.process * self.per_process
        for kind, step, port, worker, batch in frames:
            if kind == DATA:
                self._nodes[step][worker - first].inboxes[port].append(batch)
            else:
                self._ends[(step, port, worker)]()

    @property
    def counts(self) -> tuple[int, int]:
        """Batches sent and received so far, over all links."""
        return (sum(link.sent for link in self.links.values()),
                sum(link.received for link in self.links.values()))


class ProcessPacer:
    """A worker process: epochs close when the coordinator says; the run ends when it says."""

    def __init__(self, mesh: Mesh, control: Connection, part_count: int) -> None:
        self._mesh = mesh
        self._control = control
        self._part_count = part_count
        self._paused: int | None = None  # the epoch being closed, while paused
        self._reported: tuple[int, int] | None = None
        self._done_sent = False
        self._stop = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(control.fileno(), selectors.EVENT_READ)
        for link in mesh.links.values():
            self._selector.register(link.sock, selectors.EVENT_READ)
        self._arrived = False

    def before_round(self, workers: Workers) -> bool:
        """Take arrived batches and orders; sources are read unless paused or backed up."""
        self._arrived = False
        for link in self._mesh.links.values():
            frames = link.receive()
            if frames:
                self._arrived = True
                self._mesh.deliver(frames)
        while self._control.poll():
            self._obey(workers, self._control.recv())
        blocked = any(link.full for link in self._mesh.links.values())
        return self._paused is None and not blocked

    def _obey(self, workers: Workers, order: tuple[Any, ...]) -> None:
        kind = order[0]
        if kind == "pause":
            self._paused, self._reported = order[1], None
        elif kind == "confirm":
            self._control.send(("confirmed", order[1], self._idle(), *self._mesh.counts))
        elif kind == "snapshot":
            epoch = order[1]
            recorded = workers.close_epoch()
            changes = encode_epoch(recorded, self._part_count) if self._part_count else []
            self._control.send(("changes", epoch, pickle.dumps(changes, protocol=5)))
            self._paused = None
        elif kind == "durable":  # the oldest epoch snapshotted is committed
            workers.confirm_epoch()
        elif kind == "stop":
            self._stop = True

    def _idle(self) -> bool:
        return not self._arrived and not any(link.pending for link in self._mesh.links.values())

    def after_round(
        self, workers: Workers, worked: bool, live: list[InputNode], timed: list[StatefulNode]
    ) -> bool:
        """Send what the round produced; report idle or done; wait when nothing happens."""
        for link in self._mesh.links.values():
            link.flush()
        if self._stop:
            return True
        if workers.ended and not self._done_sent:
            self._control.send(("done",))
            self._done_sent = True
        idle = self._idle() and not worked
        if self._paused is not None and idle and self._mesh.counts != self._reported:
            self._reported = self._mesh.counts
            self._control.send(("idle", self._paused, *self._reported))
        if idle:
            wait_for = _WAIT_SECONDS
            if self._paused is None:
                wake = workers.next_wake(live, timed)
                if wake is not None:
                    wait_for = max(0.0, min(wait_for, wake))
            if any(link.pending for link in self._mesh.links.values()):
                wait_for = 0.001
            self._selector.select(wait_for)
        return False


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def serve(
    process: int,
    processes: int,
    per_process: int,
    plan: list[CoreStep],
    epoch: int,
    resume: Resume,
    recording: bool,
    part_count: int,
    control: Connection,
    sockets: dict[int, socket.socket],
) -> bool:
    """Run worker process ``process``'s workers until told to stop; False if it failed.

    Its links to the other processes are ``sockets`` (by process index), its orders come
    on ``control``; an exception is reported there (one line and the user's traceback).
    """
    try:
        links = {peer: Link(sock, peer) for peer, sock in sockets.items()}
        mesh = Mesh(process, processes, per_process, links)
        workers = Workers(plan, processes * per_process, epoch, resume, recording,
                          first=process * per_process, count=per_process, peers=mesh)
        workers.run(ProcessPacer(mesh, control, part_count if recording else 0))
        sys.stdout.flush()  # before "exited": the coordinator stops listening after it
        control.send(("exited",))
        return True
    except BaseException as ex:  # noqa: BLE001 - reported to the coordinator
        try:
            control.send(("error", one_line(ex), user_traceback(user_error(ex))))
        except Exception:  # noqa: S110 - the coordinator sees the channel close instead
            pass
        return False


def _process_main(*args: Any) -> None:
    """Body of a forked worker process: :func:`serve`, then exit without finalizers."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    # Processes share stdout: write whole lines, so that theirs never mix within a line.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    ok = False
    try:
        ok = serve(*args)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0 if ok else 1)  # no finalizers: the store's connections are not ours


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


class ForkedProcesses:
    """Worker processes forked from this one, connected by a mesh of Unix socket pairs."""

    def __init__(
        self,
        plan: list[CoreStep],
        processes: int,
        per_process: int,
        epoch: int,
        resume: Resume,
        recording: bool,
        part_count: int,
    ) -> None:
        """Fork ``processes`` processes of ``per_process`` workers each."""
        self._processes = processes
        context = multiprocessing.get_context("fork")
        pairs = {(a, b): socket.socketpair() for a in range(processes)
                 for b in range(a + 1, processes)}
        self.controls: list[Connection] = []
        self._procs: list[Any] = []
        for p in range(processes):
            mine = {}
            for (a, b), (sa, sb) in pairs.items():
                if a == p:
                    mine[b] = sa
                elif b == p:
                    mine[a] = sb
            ours, theirs = context.Pipe()
            proc = context.Process(
                target=_process_main, name=f"fastflow-{p}",
                args=(p, processes, per_process, plan, epoch, resume, recording,
                      part_count, theirs, mine),
            )
            proc.start()
            theirs.close()
            self.controls.append(ours)
            self._procs.append(proc)
        for sa, sb in pairs.values():
            sa.close()
            sb.close()

    def sentinels(self) -> list[Any]:
        """The processes' sentinels."""
        return [proc.sentinel for proc in self._procs]

    def failure(self) -> ProcessFailed | None:
        """The first process that exited with an error, if any."""
        for p, proc in enumerate(self._procs):
            if proc.exitcode is not None and proc.exitcode != 0:
                return self.describe(p)
        return None

    def describe(self, process: int) -> ProcessFailed:
        """How ``process`` ended, from its exit code."""
        proc = self._procs[process]
        proc.join(timeout=5)
        exitcode = proc.exitcode
        if exitcode is not None and exitcode < 0:
            how = f"was killed by signal {signal.Signals(-exitcode).name}"
        elif exitcode is None:
            how = "stopped answering"
        else:
            how = f"exited with code {exitcode}"
        return ProcessFailed(f"process {process} of {self._processes} {how}", died=True)

    def kill(self) -> None:
        """SIGKILL every process still running, and reap them."""
        for proc in self._procs:
            if proc.exitcode is None:
                proc.kill()
        for proc in self._procs:
            proc.join(timeout=5)

    def join(self) -> None:
        """Reap every process."""
        for proc in self._procs:
            proc.join()


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
            if closing is None and self._committer is not None and time.monotonic() >= deadline:
                closing = _Closing(self._epoch, last=False, processes=self._processes)
                self._broadcast(("pause", self._epoch))
            if closing is None and len(done) == self._processes:
                if self._committer is None:
                    break
                closing = _Closing(self._epoch, last=True, processes=self._processes)
                self._broadcast(("snapshot", self._epoch, True))
            timeout = None if closing is not None else max(0.0, deadline - time.monotonic())
            if self._committer is None and closing is None:
                timeout = None
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
                elif closing is not None and kind in ("idle", "confirmed", "changes"):
                    closing = self._advance(closing, process, message)
            failed = self._group.failure()
            if failed is not None:
                for p, control in enumerate(self._controls):
                    self._receive_pending(p, control)  # its own error, if it raised
                raise failed
            if closing is not None and closing.finished:
                self._epoch += 1
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
        if message[0] == "output":  # a process without a terminal of its own printed
            sys.stdout.write(message[1])
            sys.stdout.flush()
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


StartGroup = Callable[[int, Resume, bool, int], ProcessGroup]
"""Starts the processes: ``(epoch, resume state, recording, partition count) -> group``."""


def run_group(
    start: StartGroup,
    processes: int,
    per_process: int,
    interval: timedelta,
    store: RecoveryStore | None,
    backup_epochs: int,
) -> None:
    """Start a group of processes and coordinate it to the end, committing to ``store``.

    The group starts before the committer's thread does: forking must not copy a thread.
    """
    if store is None:
        Coordinator(start(1, {}, False, 0), interval, 1, None).run()
        return
    worker_count = processes * per_process
    resumed = store.start_execution(worker_count=worker_count)
    resume = load_resume(store, resumed.epoch)
    committer = EpochCommitter(store, list(range(worker_count)), backup_epochs)
    try:
        group = start(resumed.epoch, resume, True, store.part_count)
        committer.compact()  # what the last run left, while this one starts
        Coordinator(group, interval, resumed.epoch, committer).run()
        committer.wait()
    finally:
        committer.close()


def run_processes(
    plan: list[CoreStep],
    processes: int,
    per_process: int,
    interval: timedelta,
    store: RecoveryStore | None,
    backup_epochs: int,
) -> None:
    """Run ``plan`` on ``processes`` forked processes of ``per_process`` workers each."""

    def fork(epoch: int, resume: Resume, recording: bool, part_count: int) -> ProcessGroup:
        return ForkedProcesses(plan, processes, per_process, epoch, resume, recording,
                               part_count)

    run_group(fork, processes, per_process, interval, store, backup_epochs)

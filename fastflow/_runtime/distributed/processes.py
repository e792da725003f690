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
from multiprocessing.connection import Connection
from typing import Any

from fastflow import _hooks as hooks
from fastflow._runtime.distributed.coordinator import ProcessGroup, run_group
from fastflow._runtime.distributed.wire import DATA, Link, PeerLost, UnsendableBatch
from fastflow._runtime.exchange import Countdown, RemoteSlot, port_end
from fastflow._runtime.io_nodes import InputNode
from fastflow._runtime.nodes import End, Node, StatefulNode
from fastflow._runtime.plan import CoreStep
from fastflow._runtime.recording import RunSettings, Start
from fastflow._runtime.snapshot import encode_epoch
from fastflow._runtime.worker import Workers
from fastflow._tracebacks import one_line, user_error, user_traceback
from fastflow.errors import ProcessFailed

_WAIT_SECONDS = 0.05  # longest a process waits for something when it has nothing to do
_REPORT_SECONDS = 1.0  # how often a process sends its figures (if observed: hooks.report)
_PR_SET_PDEATHSIG = 1


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
        self._active_in: int | None = None  # the epoch whose activity was reported
        self._stop = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(control.fileno(), selectors.EVENT_READ)
        for link in mesh.links.values():
            self._selector.register(link.sock, selectors.EVENT_READ)
        self._arrived = False
        self._next_report = 0.0

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
            started = time.perf_counter()
            recorded = workers.close_epoch()
            changes = encode_epoch(recorded, self._part_count) if self._part_count else []
            self._control.send(("changes", epoch, pickle.dumps(changes, protocol=5),
                                time.perf_counter() - started))
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
        if time.monotonic() >= self._next_report:
            self._next_report = time.monotonic() + _REPORT_SECONDS
            send_report(self._control)
        if workers.ended and not self._done_sent:
            self._control.send(("done",))
            self._done_sent = True
        epoch = workers.epoch
        if self._active_in != epoch and (
            worked or self._arrived or workers.notified or workers.expiry_due()
        ):
            self._control.send(("active", epoch))  # the coordinator closes only such epochs
            self._active_in = epoch
        idle = self._idle() and not worked
        if self._paused is not None and idle and self._mesh.counts != self._reported:
            self._reported = self._mesh.counts
            self._control.send(("idle", self._paused, *self._reported))
        if idle:
            sys.stdout.flush()  # what was printed shows before the process waits
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
    settings: RunSettings,
    start: Start,
    control: Connection,
    sockets: dict[int, socket.socket],
    by_value: Callable[[Any], bytes] | None = None,
) -> bool:
    """Run worker process ``process``'s workers until told to stop; False if it failed.

    Its links to the other processes are ``sockets`` (by process index), its orders come
    on ``control``; an exception is reported there (one line and the user's traceback).
    ``by_value`` pickles the batches plain pickle refuses (``wire.Link``).
    """
    try:
        observer = hooks.current().for_child()
        hooks.install(observer)
        observer.in_child(process, control)
        per_process = settings.per_process
        links = {peer: Link(sock, peer, by_value) for peer, sock in sockets.items()}
        mesh = Mesh(process, settings.processes, per_process, links)
        workers = Workers(settings.plan, settings.worker_count, start.epoch, start.resume,
                          start.recording, first=process * per_process, count=per_process,
                          peers=mesh)
        observer.workers_built(workers, links.values())
        workers.run(ProcessPacer(mesh, control, start.part_count))
        send_report(control)  # the final figures
        hooks.current().leaving()
        sys.stdout.flush()  # before "exited": the coordinator stops listening after it
        control.send(("exited",))
        return True
    except BaseException as ex:  # noqa: BLE001 - reported to the coordinator
        try:
            sys.stdout.flush()  # what it printed before it failed comes first
            hooks.current().leaving()
            if isinstance(ex, PeerLost):  # the coordinator finds out what happened to it
                control.send(("lost", ex.peer))
            elif isinstance(ex, UnsendableBatch):  # the flow's data, not fastflow: no frames
                control.send(("error", _unsendable(ex, settings.plan), ""))
            else:
                control.send(("error", one_line(ex), user_traceback(user_error(ex))))
        except Exception:  # noqa: S110 - the coordinator sees the channel close instead
            pass
        return False


def _unsendable(error: UnsendableBatch, plan: list[CoreStep]) -> str:
    """One line naming the step whose items could not be pickled, and pickle's reason."""
    consumer = plan[error.step]
    producer = consumer.ups[error.port].rsplit(".", 1)[0]  # a stream is "<step id>.<port>"
    cause = error.__cause__
    reason = one_line(cause) if cause is not None else "unknown reason"
    return (f"step {producer!r} sends items to other processes (for step "
            f"{consumer.step_id!r}) that cannot be pickled: {reason}")


def send_report(control: Connection) -> None:
    """Send the coordinator this process's figures, if the run is observed."""
    report = hooks.current().report()
    if report is not None:
        control.send(("metrics", report))


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


class ForkedProcesses:
    """Worker processes forked from this one, connected by a mesh of Unix socket pairs."""

    def __init__(self, settings: RunSettings, start: Start) -> None:
        """Fork ``settings.processes`` processes, their workers starting at ``start``."""
        processes = settings.processes
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
                args=(p, settings, start, theirs, mine),
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


def run_processes(settings: RunSettings) -> None:
    """Run ``settings.plan`` on ``settings.processes`` forked processes."""

    def fork(start: Start) -> ProcessGroup:
        return ForkedProcesses(settings, start)

    run_group(fork, settings)

"""More than one machine: ``fastflow run --ray``, the processes of ``-p N`` as Ray actors.

Ray places, starts and watches the processes; everything else is ``cluster.py``: each
actor runs :func:`cluster.serve`, the ``fastflow run`` process (the Ray *driver*) is the
coordinator, pacing epochs and committing them to the recovery store, which therefore
only has to exist where the driver runs (actors send their change sets on the control
channel). What changes is how the processes are connected: TCP instead of Unix socket
pairs. Each actor listens on its node's address; the driver hands every actor the others'
addresses, and the actors open a full mesh of connections (batches go actor to actor,
never through the driver or Ray's object store), plus one control connection to the
driver. Why not Ray's own calls for the batches: measured by ``bench/ray_exchange.py``
(local Ray, 100 batches of 10k ``(str, int)`` pairs, receiver decoding), a batch as a
list argument costs 1.85 µs per item, pre-encoded bytes through pipelined actor calls
0.33 µs, and the same marshal bytes over a TCP connection 0.19 µs, which is also the
path a local ``-p N`` run takes.

Actors print nowhere the user sees: their ``sys.stdout`` is sent to the driver, which
prints it. When an actor or its node dies, the driver stops the others and, with a
recovery directory, starts new actors from the last committed epoch, up to
``max_restarts`` times; a user exception is not retried (it would happen again).
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

from fastflow._cext.routing import split_dict
from fastflow._engine import hooks, wire
from fastflow._engine.cluster import ProcessFailed, run_group, serve
from fastflow._engine.plan import CoreStep
from fastflow._engine.snapshot import Resume
from fastflow._engine.store import RecoveryStore

_INDEX = struct.Struct("<I")
_IMPORT_HINT = (
    "; the actors import what the flow uses: install it on every node, or ship its "
    "directory with Ray's runtime_env (docs/distributed.md)"
)
_CONNECT_SECONDS = 60.0


class RayUnavailable(RuntimeError):
    """``--ray`` cannot run here: Ray is missing, unreachable, or too small for the run."""


def _ray() -> ModuleType:
    if getattr(sys, "frozen", False):
        raise RayUnavailable(
            "--ray needs the pip-installed fastflow command (pip install 'fastflow[ray]'): "
            "this standalone executable does not include Ray"
        )
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "--ray needs Ray, which is not installed: pip install 'fastflow[ray]'"
        ) from None
    return ray


def _keepalive(sock: socket.socket) -> None:
    """Notice a dead node within seconds, not at the OS default of two hours."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 5)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _node_address() -> str:
    ray = _ray()
    return str(ray.util.get_node_ip_address())


class _Output:
    """An actor's ``sys.stdout``: what the flow prints goes to the driver, line by line."""

    def __init__(self, control: Connection) -> None:
        self._control = control
        self._pending: list[str] = []

    def write(self, text: str) -> int:
        self._pending.append(text)
        if "\n" in text:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._control.send(("output", "".join(self._pending)))
            self._pending.clear()

    def isatty(self) -> bool:
        return False


class RayProcess:
    """One worker process of the run, as a Ray actor (wrapped with ``ray.remote`` at use)."""

    def __init__(self, process: int, processes: int, directory: str) -> None:
        self._process = process
        self._processes = processes
        if os.path.isdir(directory):  # relative paths in the flow mean what they mean there
            os.chdir(directory)
        wire.pickle_classes_by_value(_ray().cloudpickle.dumps)
        self._listener = socket.create_server((_node_address(), 0))
        self._sockets: dict[int, socket.socket] = {}
        self._control: Connection | None = None

    def address(self) -> tuple[str, int]:
        """Where the other actors connect to this one."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def connect(self, addresses: list[tuple[str, int]], driver: tuple[str, int]) -> None:
        """Open the mesh (connect to later actors, accept earlier ones) and the control."""
        me = self._process
        for peer in range(me + 1, self._processes):
            sock = socket.create_connection(addresses[peer], timeout=_CONNECT_SECONDS)
            sock.sendall(_INDEX.pack(me))
            self._sockets[peer] = sock
        self._listener.settimeout(_CONNECT_SECONDS)
        for _ in range(me):
            sock, _address = self._listener.accept()
            (peer,) = _INDEX.unpack(_recv_exactly(sock, _INDEX.size))
            self._sockets[peer] = sock
        self._listener.close()
        for sock in self._sockets.values():
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keepalive(sock)
        control = socket.create_connection(driver, timeout=_CONNECT_SECONDS)
        control.sendall(_INDEX.pack(me))
        control.settimeout(None)
        _keepalive(control)
        self._control = Connection(control.detach())

    def serve(
        self,
        per_process: int,
        plan: list[CoreStep],
        epoch: int,
        resume: Resume,
        recording: bool,
        part_count: int,
        observer: hooks.RunHooks,
    ) -> bool:
        """Run this process's workers until the driver says stop (see ``cluster.serve``)."""
        assert self._control is not None
        hooks.install(observer)
        sys.stdout = _Output(self._control)
        try:
            return serve(self._process, self._processes, per_process, plan, epoch, resume,
                         recording, part_count, self._control, self._sockets)
        finally:
            sys.stdout.flush()
            sys.stdout = sys.__stdout__


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("a peer closed its connection while connecting")
        data += chunk
    return data


class RayActors:
    """The run's processes as Ray actors, one CPU each, placed by a placement group."""

    def __init__(
        self,
        plan: list[CoreStep],
        processes: int,
        per_process: int,
        epoch: int,
        resume: Resume,
        recording: bool,
        part_count: int,
        placement: str,
    ) -> None:
        """Start the actors, connect them, and set them running."""
        ray = _ray()
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self._ray = ray
        self._processes = processes
        self._remove_group = remove_placement_group
        _wait_for_cpus(ray, processes)
        self._group = placement_group([{"CPU": 1}] * processes, strategy=placement.upper())
        ray.get(self._group.ready(), timeout=_CONNECT_SECONDS)
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(RayProcess)
        self._actors = [
            actor_class.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self._group, placement_group_bundle_index=p
                ),
            ).remote(p, processes, os.getcwd())
            for p in range(processes)
        ]
        self._serving: list[Any] = []
        try:
            self.controls = self._connect()
            self._serving = [
                actor.serve.remote(per_process, plan, epoch,
                                   _share(plan, resume, p, processes, per_process),
                                   recording, part_count, hooks.current().for_child())
                for p, actor in enumerate(self._actors)
            ]
        except BaseException:
            self.kill()
            raise

    def _connect(self) -> list[Connection]:
        ray = self._ray
        addresses = ray.get([actor.address.remote() for actor in self._actors],
                            timeout=_CONNECT_SECONDS)
        listener = socket.create_server((_node_address(), 0))
        listener.settimeout(_CONNECT_SECONDS)
        driver = listener.getsockname()[:2]
        connecting = [actor.connect.remote(addresses, driver) for actor in self._actors]
        controls: dict[int, Connection] = {}
        try:
            for _ in self._actors:
                sock, _address = listener.accept()
                (process,) = _INDEX.unpack(_recv_exactly(sock, _INDEX.size))
                sock.settimeout(None)
                _keepalive(sock)
                controls[process] = Connection(sock.detach())
        finally:
            listener.close()
        ray.get(connecting, timeout=_CONNECT_SECONDS)
        return [controls[p] for p in range(self._processes)]

    def sentinels(self) -> list[Any]:
        """None: an actor's death shows as its control connection closing."""
        return []

    def failure(self) -> ProcessFailed | None:
        """An actor whose ``serve`` ended with an error (it died), if any."""
        done, _ = self._ray.wait(self._serving, num_returns=len(self._serving), timeout=0)
        for ref in done:
            try:
                self._ray.get(ref)
            except Exception:
                return self.describe(self._serving.index(ref))
        return None

    def describe(self, process: int) -> ProcessFailed:
        """Why ``process``'s actor stopped, as Ray tells it."""
        try:
            self._ray.get(self._serving[process], timeout=10)
            cause = "stopped"
        except self._ray.exceptions.GetTimeoutError:
            cause = "stopped answering"
        except self._ray.exceptions.RayTaskError as ex:  # it could not even start serving
            hint = _IMPORT_HINT if "No module named" in str(ex) else ""
            return ProcessFailed(f"process {process} of {self._processes} (a Ray actor) "
                                 f"failed: {_first_line(ex.cause or ex)}{hint}",
                                 traceback_text=str(ex).rstrip("\n") + "\n")
        except Exception as ex:  # RayActorError and kin: the actor or its node died
            cause = f"died ({_first_line(ex)})"
        return ProcessFailed(f"process {process} of {self._processes} (a Ray actor) {cause}",
                             died=True)

    def kill(self) -> None:
        """Kill every actor and release their CPUs."""
        for actor in self._actors:
            try:
                self._ray.kill(actor)
            except Exception:  # noqa: S110 - already gone
                pass
        self._remove_group(self._group)

    def join(self) -> None:
        """Wait for every actor's ``serve`` to return, then release them."""
        self._ray.get(self._serving)
        self.kill()


def _wait_for_cpus(ray: ModuleType, processes: int) -> None:
    """Wait until ``processes`` CPUs are free (a previous attempt's are being released)."""
    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + _CONNECT_SECONDS
    free = ray.available_resources().get("CPU", 0)
    while free < processes <= total and time.monotonic() < deadline:
        time.sleep(0.1)
        free = ray.available_resources().get("CPU", 0)
    if free < processes:
        raise RayUnavailable(
            f"--ray -p {processes} needs {processes} CPUs (one per process), but the Ray "
            f"cluster has {free:g} free ({total:g} in all)"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def _share(
    plan: list[CoreStep], resume: Resume, process: int, processes: int, per_process: int
) -> Resume:
    """The part of the resume state an actor needs: its workers' keys, every partition's."""
    stateful = {step.step_id for step in plan if step.kind == "stateful_batch"}
    mine = range(process * per_process, (process + 1) * per_process)
    share: Resume = {}
    for step_id, states in resume.items():
        if step_id in stateful:
            by_worker = split_dict(states, processes * per_process)
            share[step_id] = {k: v for w in mine for k, v in by_worker[w].items()}
        else:
            share[step_id] = states
    return share


def _register_user_modules(ray: ModuleType) -> None:
    """Ship the user's own modules (the flow file, its helpers) to the actors by value.

    Ray pickles functions by reference to their module; a flow file loaded from a path,
    or a module only on ``--python-path``, would not import on another node.
    """
    roots = {os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}}
    package = os.path.realpath(os.path.dirname(os.path.dirname(__file__)))
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or module.__name__ == "__main__":
            continue
        real = os.path.realpath(path)
        if real.startswith(package) or any(real.startswith(root) for root in roots):
            continue
        ray.cloudpickle.register_pickle_by_value(module)


def connect_ray(address: str | None, processes: int) -> ModuleType:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:port``), or start one."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "logging_level": logging.ERROR}
    try:
        if address is None:
            ray.init(num_cpus=max(processes, os.cpu_count() or 1), **options)
        else:
            ray.init(address=address, **options)
    except Exception as ex:
        raise RayUnavailable(
            f"cannot connect to the Ray cluster at {address}: {_first_line(ex)}"
        ) from None
    _register_user_modules(ray)
    return ray


def run_on_ray(
    plan: list[CoreStep],
    processes: int,
    per_process: int,
    interval: timedelta,
    open_store: Callable[[], RecoveryStore] | None,
    backup_epochs: int,
    *,
    address: str | None,
    max_restarts: int,
    placement: str,
    log: Callable[[str], None],
) -> None:
    """Run ``plan`` on ``processes`` Ray actors, restarting from the store when one dies."""
    ray = connect_ray(address, processes)
    try:
        restarts = 0
        while True:
            try:
                _attempt(plan, processes, per_process, interval, open_store, backup_epochs,
                         placement)
                return
            except ProcessFailed as ex:
                if open_store is None or not ex.died or restarts >= max_restarts:
                    raise  # no store to restart from, or it would fail the same way again
                restarts += 1
                hooks.current().restarted(restarts, str(ex))
                log(f"{ex}; restarting from the last committed epoch "
                    f"(restart {restarts} of {max_restarts})")
    finally:
        if address is None:
            ray.shutdown()


def _attempt(
    plan: list[CoreStep],
    processes: int,
    per_process: int,
    interval: timedelta,
    open_store: Callable[[], RecoveryStore] | None,
    backup_epochs: int,
    placement: str,
) -> None:
    def start(epoch: int, resume: Resume, recording: bool, part_count: int) -> RayActors:
        return RayActors(plan, processes, per_process, epoch, resume, recording, part_count,
                         placement)

    if open_store is None:
        run_group(start, processes, per_process, interval, None, backup_epochs)
        return
    with open_store() as store:
        run_group(start, processes, per_process, interval, store, backup_epochs)

"""More than one machine: ``fastflow run --ray``, the processes of ``-p N`` as Ray actors.

Ray places, starts and watches the processes; everything else is ``coordinator.py`` and
``processes.py``: each actor runs :func:`processes.serve`, the ``fastflow run`` process (the
Ray *driver*) is the coordinator, pacing epochs and committing them to the recovery store,
which therefore only has to exist where the driver runs (actors send their change sets on the
control channel). What changes is how the processes are connected: TCP instead of Unix socket
pairs. Each actor listens on its node's address; the driver hands every actor the others'
addresses, and the actors open a full mesh of connections (batches go actor to actor,
never through the driver or Ray's object store), plus one control connection to the
driver; every one of them proves it belongs to the run before anything on it is decoded
(``handshake.py``, with a per-run key the actors get through Ray). Why not Ray's own
calls for the batches: measured by ``bench/ray_exchange.py``
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
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

from fastflow import _hooks as hooks
from fastflow._cext.routing import split_dict
from fastflow._runtime.distributed.coordinator import run_group
from fastflow._runtime.distributed.handshake import Gate, introduce, new_key
from fastflow._runtime.distributed.processes import serve
from fastflow._runtime.distributed.ray_join import NoAnswer, join
from fastflow._runtime.distributed.ray_local import LocalRay
from fastflow._runtime.recording import RunSettings, Start
from fastflow._runtime.snapshot import ResumeState
from fastflow.errors import ProcessFailed, RayUnavailable

_IMPORT_HINT = (
    "; the actors import what the flow uses: install it on every node, or ship its "
    "directory with Ray's runtime_env (docs/distributed.md)"
)
_CONNECT_SECONDS = 60.0
_OUTPUT_BYTES = 64 << 10
_OUTPUT_SECONDS = 0.05


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
    """An actor's ``sys.stdout``: what the flow prints goes to the driver, in whole lines.

    Why batched: a message per line made printing flows slow. Lines are held until
    :data:`_OUTPUT_BYTES` are pending or :data:`_OUTPUT_SECONDS` passed since the last
    message, then sent up to the last complete line; the rest goes when the process is
    idle or ends (``flush``, called by ``processes.py``), always before it reports that
    it exited, and in order (one control connection).
    """

    def __init__(self, control: Connection) -> None:
        self._control = control
        self._pending: list[str] = []
        self._size = 0
        self._sent_at = time.monotonic()

    def write(self, text: str) -> int:
        """Hold ``text``; send the complete lines if enough waited long enough."""
        self._pending.append(text)
        self._size += len(text)
        if "\n" in text and (self._size >= _OUTPUT_BYTES
                             or time.monotonic() - self._sent_at >= _OUTPUT_SECONDS):
            held = "".join(self._pending)
            cut = held.rfind("\n") + 1
            self._send(held[:cut])
            self._pending = [held[cut:]] if cut < len(held) else []
            self._size = len(held) - cut
        return len(text)

    def flush(self) -> None:
        """Send everything held, a last partial line included."""
        if self._pending:
            self._send("".join(self._pending))
            self._pending = []
            self._size = 0

    def _send(self, text: str) -> None:
        self._control.send(("output", text))
        self._sent_at = time.monotonic()

    def isatty(self) -> bool:
        return False


class RayProcess:
    """One worker process of the run, as a Ray actor (wrapped with ``ray.remote`` at use).

    ``key`` is the run's secret, which comes through Ray: every connection this actor
    opens or accepts proves it knows it before anything on it is decoded (``handshake``).
    """

    def __init__(self, process: int, processes: int, directory: str, key: bytes) -> None:
        self._process = process
        self._processes = processes
        self._key = key
        if os.path.isdir(directory):  # relative paths in the flow mean what they mean there
            os.chdir(directory)
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
        deadline = time.monotonic() + _CONNECT_SECONDS
        for peer in range(me + 1, self._processes):
            self._sockets[peer] = self._introduce(addresses[peer], deadline)
        gate = Gate(self._listener, self._key, what=f"mesh listener of process {me}")
        try:
            self._sockets.update(gate.admit(set(range(me)), _CONNECT_SECONDS))
        finally:
            self._listener.close()
        for sock in self._sockets.values():
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _keepalive(sock)
        control = self._introduce(driver, deadline)
        _keepalive(control)
        self._control = Connection(control.detach())

    def _introduce(self, address: tuple[str, int], deadline: float) -> socket.socket:
        sock = socket.create_connection(address, timeout=_CONNECT_SECONDS)
        try:
            introduce(sock, self._key, self._process, deadline)
        except BaseException:
            sock.close()
            raise
        return sock

    def serve(self, settings: RunSettings, start: Start, observer: hooks.RunHooks) -> bool:
        """Run this process's workers until the driver says stop (see ``processes.serve``).

        Batches plain pickle refuses go by value (``wire.ByValue``), with Ray's cloudpickle;
        ``observer`` is the driver's run hooks for a child (metrics, logs, traces).
        """
        assert self._control is not None
        hooks.install(observer)
        sys.stdout = _Output(self._control)
        try:
            return serve(self._process, settings, start, self._control, self._sockets,
                         by_value=_ray().cloudpickle.dumps)
        finally:
            sys.stdout.flush()
            sys.stdout = sys.__stdout__


def _raise_failed(ray: ModuleType, calls: list[Any]) -> None:
    """Raise the error of a call that already failed (e.g. its actor died), if any."""
    done, _ = ray.wait(calls, num_returns=len(calls), timeout=0)
    ray.get(done)


class RayActors:
    """The run's processes as Ray actors, one CPU each, placed by a placement group."""

    def __init__(self, settings: RunSettings, start: Start, placement: str) -> None:
        """Start the actors, connect them, and set them running from ``start``."""
        processes = settings.processes
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
        self._key = new_key()
        self._actors = [
            actor_class.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=self._group, placement_group_bundle_index=p
                ),
            ).remote(p, processes, os.getcwd(), self._key)
            for p in range(processes)
        ]
        self._serving: list[Any] = []
        try:
            self.controls = self._connect()
            self._serving = [
                actor.serve.remote(settings, replace(start, resume=_share(settings, start, p)),
                                   hooks.current().for_child())
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
        driver = listener.getsockname()[:2]
        connecting = [actor.connect.remote(addresses, driver) for actor in self._actors]
        gate = Gate(listener, self._key, what="driver's control listener")
        try:
            sockets = gate.admit(set(range(self._processes)), _CONNECT_SECONDS,
                                 check=lambda: _raise_failed(ray, connecting))
        finally:
            listener.close()
        ray.get(connecting, timeout=_CONNECT_SECONDS)
        controls = []
        for p in range(self._processes):
            _keepalive(sockets[p])
            controls.append(Connection(sockets[p].detach()))
        return controls

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


def _share(settings: RunSettings, start: Start, process: int) -> ResumeState:
    """The part of the resume state an actor needs: its workers' keys, every partition's."""
    stateful = {step.step_id for step in settings.plan if step.kind == "stateful_batch"}
    per_process = settings.per_process
    mine = range(process * per_process, (process + 1) * per_process)
    share: ResumeState = {}
    for step_id, states in start.resume.items():
        if step_id in stateful:
            by_worker = split_dict(states, settings.worker_count)
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
    package = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))  # fastflow/
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or module.__name__ == "__main__":
            continue
        real = os.path.realpath(path)
        if real.startswith(package) or any(real.startswith(root) for root in roots):
            continue
        ray.cloudpickle.register_pickle_by_value(module)


def connect_ray(
    address: str | None, processes: int, timeout: float
) -> tuple[ModuleType, LocalRay | None]:
    """Join the Ray cluster at ``address``, or start a local instance for this run.

    ``address`` is ``auto``, ``host:port`` or ``ray://host:port``; when None, Ray's own
    ``RAY_ADDRESS`` is honoured as ``ray.init`` would. Returns Ray, and the local
    instance if one was started (stop it after the run).
    """
    ray = _ray()
    if ray.is_initialized():
        return ray, None
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "logging_level": logging.ERROR}
    where = address
    if address is None and os.environ.get("RAY_ADDRESS", "") not in ("", "local"):
        address = os.environ["RAY_ADDRESS"]  # as ray.init would ("local": start one)
        where = f"{address} (RAY_ADDRESS)"
    local = None
    try:
        if address is None:
            local = LocalRay(ray, max(processes, os.cpu_count() or 1), options)
        else:
            join(ray, address, timeout, options)
    except Exception as ex:
        what = "cannot start a local Ray instance" if address is None else (
            f"cannot connect to the Ray cluster at {where}")
        detail = str(ex) if isinstance(ex, NoAnswer) else _first_line(ex)
        raise RayUnavailable(f"{what}: {detail}") from None
    _register_user_modules(ray)
    return ray, local


def run_on_ray(
    settings: RunSettings,
    *,
    address: str | None,
    max_restarts: int,
    placement: str,
    timeout: float,
    log: Callable[[str], None],
) -> None:
    """Run ``settings.plan`` on Ray actors, restarting from the store when one dies."""
    ray, local = connect_ray(address, settings.processes, timeout)
    try:
        restarts = 0
        while True:
            try:
                run_group(lambda start: RayActors(settings, start, placement), settings)
                return
            except ProcessFailed as ex:
                if settings.db_dir is None or not ex.died or restarts >= max_restarts:
                    raise  # no store to restart from, or it would fail the same way again
                restarts += 1
                hooks.current().restarted(restarts, str(ex))
                log(f"{ex}; restarting from the last committed epoch "
                    f"(restart {restarts} of {max_restarts})")
    finally:
        if local is not None:
            ray.shutdown()
            local.stop()

"""A `ray start --head` cluster of one test's own, stopped without touching any other Ray.

Why: `ray stop --force` kills every Ray on the machine, so a test using it would kill the
Ray of a test running beside it. Here the cluster gets a temporary directory of its own
(``TMPDIR``, under which Ray keeps its sessions and the file `--ray auto` reads the
address from) and free ports instead of the fixed defaults; stopping it kills exactly
the processes that have a file open under that directory (every process of a Ray
instance keeps its log files there).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

RAY = shutil.which("ray", path=str(Path(sys.executable).parent))

# The `ray start` ports whose defaults are fixed numbers, which two clusters would share
# (the Ray Client server, 10001, is not started: the `ray[client]` extra is not installed).
_PORTS = ("--dashboard-agent-listen-port",
          "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")


def processes_using(directory: str) -> list[int]:
    """The processes with a file open under ``directory`` (a Ray instance's own)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fds = os.listdir(f"/proc/{name}/fd")
                if any(os.readlink(f"/proc/{name}/fd/{fd}").startswith(directory + "/")
                       for fd in fds):
                    found.append(int(name))
            except OSError:
                continue
    return found


def wait_until_gone(directory: str, seconds: float = 120) -> list[int]:
    """Wait (up to ``seconds``) until no process uses ``directory``; what is left."""
    deadline = time.monotonic() + seconds
    left = processes_using(directory)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = processes_using(directory)
    return left


def kill_instance(directory: str) -> None:
    """SIGKILL every process of the Ray instance living under ``directory``; remove it."""
    deadline = time.monotonic() + 120
    left = processes_using(directory)
    while left and time.monotonic() < deadline:  # a dying instance may start one more
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        left = processes_using(directory)
    assert left == [], f"Ray processes {left} outlived their instance"
    shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def started_cluster(num_cpus: int) -> Iterator[dict[str, str]]:
    """`ray start --head` with ``num_cpus``; yields the environment in which `auto` finds it."""
    directory = tempfile.mkdtemp(prefix="ffr")  # short: Ray's socket paths must fit
    env = {**os.environ, "TMPDIR": directory, "RAY_ADDRESS": ""}
    ports = [str(arg) for name in _PORTS for arg in (name, _free_port())]
    try:
        started = subprocess.run([RAY, "start", "--head", "--port", "0", *ports,
                                  "--num-cpus", str(num_cpus), "--include-dashboard", "false",
                                  "--disable-usage-stats"],
                                 capture_output=True, text=True, timeout=180, env=env)
        assert started.returncode == 0, started.stderr
        yield env
    finally:
        kill_instance(directory)

"""The local Ray instance ``fastflow run --ray`` starts without an address: it ends with the run.

Why a watchdog: Ray ties its GCS and raylet to the driver that started them, but not the
agents the raylet starts (the dashboard and runtime-env agents), which notice that their
raylet is gone only a minute or so later; and a driver killed with SIGKILL never runs
``ray.shutdown``. So the instance gets a temporary directory of its own, and a small
watchdog process, in a session of its own, waits on a pipe whose only writer is the
driver: end of file means the run ended, however it ended. It then kills every process
that has a file open under that directory (every process of the instance keeps its log
files there; a cluster the user started does not) and removes the directory.

``python -m fastflow._runtime.distributed.ray_local DIRECTORY DRIVER_PID`` is the watchdog.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

_PREFIX = "fastflow-ray-"
_ROUNDS = 20  # a dying instance may still start a process or two: look again


class LocalRay:
    """A Ray instance started by this process for one run, and its watchdog."""

    def __init__(self, ray: ModuleType, num_cpus: int, options: dict[str, Any]) -> None:
        """Start the watchdog, then Ray (``ray.init`` with ``options``) in a new directory."""
        self.directory = tempfile.mkdtemp(prefix=_PREFIX)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", __name__, self.directory, str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or a kill of the run's group spares it
        )
        try:
            ray.init(num_cpus=num_cpus, _temp_dir=self.directory, **options)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Let the watchdog clear the instance away (after ``ray.shutdown``), and wait."""
        assert self._watchdog.stdin is not None
        self._watchdog.stdin.close()
        try:
            self._watchdog.wait(timeout=30)
        except subprocess.TimeoutExpired:  # it goes on alone; nothing to wait for here
            pass


def instance_processes(directory: str, driver: int) -> Iterator[int]:
    """Processes with a file open under ``directory``, but this one and the driver."""
    prefix = os.path.join(directory, "")
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (os.getpid(), driver):
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
            if any(os.readlink(f"/proc/{name}/fd/{fd}").startswith(prefix) for fd in fds):
                yield int(name)
        except OSError:  # gone, or not ours to look at
            continue


def clear(directory: str, driver: int) -> None:
    """Kill the processes of the instance living in ``directory``, then remove it.

    The ``driver`` that started it is spared: it may still hold Ray's log files open.
    """
    for _ in range(_ROUNDS):
        pids = list(instance_processes(directory, driver))
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    shutil.rmtree(directory, ignore_errors=True)


def _watch(directory: str, driver: int) -> None:
    """Wait until the driver closes its end of stdin (or dies), then clear the instance."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not os.path.basename(directory).startswith(_PREFIX):
        raise SystemExit(f"not a directory fastflow made for Ray: {directory}")
    sys.stdin.buffer.read()
    clear(directory, driver)


if __name__ == "__main__":
    _watch(sys.argv[1], int(sys.argv[2]))

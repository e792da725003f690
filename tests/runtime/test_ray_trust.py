"""`fastflow run --ray` against strangers, dead addresses and a killed driver (issue 17).

Real local Ray instances started by the real `fastflow` command, as in tests/test_ray.py.
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

import ray  # noqa: F401 - the extra must be installed, or these tests fail loudly
from _paths import TESTS
from _processes import SUMS, write_flow
from _ray_cluster import kill_instance, processes_using, wait_until_gone

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))
STRANGER = TESTS / "_stranger.py"


def test_a_stranger_connecting_first_runs_nothing_and_the_run_finishes(tmp_path: Path) -> None:
    """A stranger hammering fastflow's listeners (tests/_stranger.py) cannot stop the run.

    The stranger finds fastflow's listeners precisely (those that send the 32-byte
    challenge, or wait for their gate) and attacks them fully: pickles, garbage, silent
    connections held open, before the real peers where it can. Ray's own gRPC ports are
    out of scope (Ray's trust model is a trusted network): they get one probe, no attack.
    Why not attack them too: this test once failed (1 run in 8) with "processes [0, 1, 2]
    did not connect to the driver's control listener within 60 s"; the same symptom came
    back on the shared test machine whenever another test's `ray stop --force` killed this
    run's GCS and actors (it kills every Ray on the machine), and a stranger that floods
    Ray's own ports made a local Ray time out in startup once in two tries; neither is
    fastflow's listener at fault. Since then the driver reports an actor that died while
    connecting as it is (``Gate.admit``'s check), and the suite's `ray start` clusters
    stop only their own processes (tests/_ray_cluster.py).
    """
    (tmp_path / "flow.py").write_text(SUMS)
    marker = tmp_path / "pwned"
    report = tmp_path / "stranger.txt"
    local = subprocess.run([FASTFLOW, "run", "flow.py"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=180)
    # The listeners are open only while the processes connect: on a loaded machine the
    # stranger may miss that window, so the run is repeated (up to 3 times) until it was
    # there; every run must finish right whatever the stranger did.
    for _ in range(3):
        _run_with_a_stranger(tmp_path, marker, report, local.stdout)
        if report.exists():
            break
    # The stranger did reach live listeners during the connect window, and was turned away.
    assert report.read_text().startswith("refused ")


def _run_with_a_stranger(tmp_path: Path, marker: Path, report: Path, expected: str) -> None:
    run = subprocess.Popen([FASTFLOW, "run", "flow.py", "--ray", "-p", "3"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stranger = subprocess.Popen([sys.executable, str(STRANGER), str(run.pid), str(marker),
                                 str(report)])
    try:
        out, err = run.communicate(timeout=300)
    finally:
        stranger.kill()
        stranger.wait()
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert sorted(out.splitlines()) == sorted(expected.splitlines())
    assert not marker.exists()
    # What the driver refused (if the stranger caught its listener's short window) is logged.
    refused = err.splitlines()
    assert all(line.startswith("fastflow: refused a connection from ") for line in refused), err


def test_an_address_where_nothing_listens_fails_at_once_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS)
    proc = subprocess.run([FASTFLOW, "run", "flow.py", "--ray", "127.0.0.1:1", "-p", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (
        2, "fastflow run: error: cannot connect to the Ray cluster at 127.0.0.1:1: "
        "ConnectionRefusedError: [Errno 111] Connection refused\n"
    )


def test_an_address_that_never_answers_fails_after_the_ray_timeout(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never speaks
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.run([FASTFLOW, "run", "flow.py", "--ray", address, "-p", "2",
                               "--ray-timeout", "3"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (
        2, f"fastflow run: error: cannot connect to the Ray cluster at {address}: "
        "no answer within 3 s (--ray-timeout)\n"
    )
    misplaced = subprocess.run([FASTFLOW, "run", "flow.py", "--ray-timeout", "3"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (misplaced.returncode, misplaced.stderr) == (
        2, "fastflow run: error: --ray-timeout only applies with --ray\n"
    )


def test_ray_address_is_honoured_when_no_address_is_given(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS)
    dead = subprocess.run([FASTFLOW, "run", "flow.py", "--ray", "-p", "2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"})
    assert (dead.returncode, dead.stderr) == (
        2, "fastflow run: error: cannot connect to the Ray cluster at 127.0.0.1:1 "
        "(RAY_ADDRESS): ConnectionRefusedError: [Errno 111] Connection refused\n"
    )
    (tmp_path / "where.py").write_text(WHERE)
    with running_cluster() as address:
        joined = subprocess.run([FASTFLOW, "run", "where.py", "--ray", "-p", "2"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300,
                                env={**os.environ, **NO_TOKENS, "RAY_ADDRESS": address})
    assert joined.returncode == 0, joined.stderr
    assert sorted(joined.stdout.splitlines()) == sorted(f"{i} {address}" for i in range(10))


WHERE = """
import ray

import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

flow = Dataflow("where")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(range(10))), str)
seen = op.stateful_map("where", keyed,
                       lambda s, i: (s, f"{i} {ray.get_runtime_context().gcs_address}"))
op.output("out", op.map("text", seen, lambda kv: kv[1]), StdOutSink())
"""

# Ray's token authentication (2.5x) is not what these tests are about: the token a cluster
# started by `ray.init` makes is not one another driver finds.
NO_TOKENS = {"RAY_AUTH_MODE": "disabled"}

CLUSTER = """
import sys

import ray

ray.init(num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[1])
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def running_cluster() -> Iterator[str]:
    """A Ray instance of this test's own, started by `ray.init` in a process it owns."""
    directory = tempfile.mkdtemp(prefix="ffc")  # short: Ray's socket paths must fit
    owner = subprocess.Popen([sys.executable, "-c", CLUSTER, directory], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**os.environ, **NO_TOKENS, "RAY_ADDRESS": ""})
    try:
        assert owner.stdout is not None
        yield owner.stdout.readline().strip()
    finally:
        owner.kill()
        owner.wait()
        kill_instance(directory)  # its Ray's agents, which would linger


def test_a_local_ray_goes_away_with_a_driver_killed_with_sigkill(tmp_path: Path) -> None:
    write_flow(tmp_path, n=100000, delay=0.01)
    instances = tempfile.mkdtemp(prefix="ffk")  # short: Ray's socket paths must fit
    run = subprocess.Popen([FASTFLOW, "run", "flow.py", "--ray", "-p", "2"], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "TMPDIR": instances, "RAY_ADDRESS": ""})
    try:
        deadline = time.monotonic() + 180
        while not (tmp_path / "sums.out").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # the actors are running once the sink has opened its file
        (instance,) = os.listdir(instances)
        directory = os.path.join(instances, instance)
        started = processes_using(directory)
        assert len(started) > 4  # the driver, Ray's GCS, raylet, agents, the actors
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        # Ray's own agents outlive a killed driver by about a minute: this must be less.
        assert wait_until_gone(directory, seconds=30) == []
        assert not os.path.exists(directory)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        wait_until_gone(instances)
        shutil.rmtree(instances, ignore_errors=True)

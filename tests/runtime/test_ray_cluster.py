"""`fastflow run --ray auto` against one real Ray cluster started for this module.

Every flow in tests/flows and examples prints the same lines on Ray actors as in one
process; a driver killed with SIGKILL leaves a store that resumes locally, and the reverse.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray  # noqa: F401 - the extra must be installed, or these tests fail loudly
from _processes import BATCHING_DEPENDENT, FLOWS, expected_sums, write_flow
from _ray_cluster import started_cluster
from _stores import stored_state

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """A one-node Ray cluster of this module's own (`ray start --head`) that `--ray auto`
    joins in the environment it yields."""
    with started_cluster(num_cpus=4) as env:
        yield env


def fastflow(*args: object, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FASTFLOW, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=180, env=env)


@pytest.mark.parametrize(
    "flow_file",
    [pytest.param(f, id=f.stem) for f in FLOWS if f.stem not in BATCHING_DEPENDENT],
)
def test_every_flow_prints_on_ray_what_it_prints_in_one_process(
    cluster: dict[str, str], flow_file: Path, tmp_path: Path
) -> None:
    text = flow_file.read_text().replace("bytewax", "fastflow")
    (tmp_path / "flow.py").write_text(text)
    if (flow_file.parent / "data").is_dir():
        shutil.copytree(flow_file.parent / "data", tmp_path / "data")
    outputs = {}
    for args in ([], ["--ray", "auto", "-p", "2"]):
        for out in tmp_path.glob("*.out"):
            out.unlink()
        proc = fastflow("run", "flow.py", *args, cwd=tmp_path, env=cluster)
        files = {p.name: sorted(p.read_text().splitlines()) for p in tmp_path.glob("*.out")}
        outputs[bool(args)] = (proc.returncode, sorted(proc.stdout.splitlines()), files)
    assert outputs[True] == outputs[False]


def test_a_driver_killed_on_ray_resumes_locally_and_the_reverse(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    write_flow(tmp_path, n=2000, delay=0.01)
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path, env=cluster).returncode == 0
    for first, then in ((["--ray", "auto", "-p", "2"], ["-p", "1"]),
                        (["-p", "2"], ["--ray", "auto", "-p", "3"])):
        shutil.rmtree(tmp_path / "db")
        assert fastflow("init-recovery", "db", "2", cwd=tmp_path, env=cluster).returncode == 0
        proc = subprocess.Popen([FASTFLOW, "run", "flow.py", *first, "-r", "db", "-s", "0.1"],
                                cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=cluster)
        try:
            deadline = time.monotonic() + 180  # a hang guard: Ray starts slowly
            while not stored_state_or_empty(tmp_path / "db") and time.monotonic() < deadline:
                time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        partial = stored_state_or_empty(tmp_path / "db")
        assert partial and partial != expected_sums(2000)
        resumed = fastflow("run", "flow.py", *then, "-r", "db", "-s", "0.1", cwd=tmp_path,
                           env=cluster)
        assert resumed.returncode == 0, resumed.stderr
        assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(2000)


def stored_state_or_empty(db: Path) -> dict[str, int]:
    try:
        return stored_state(db, "slow.sum.stateful_batch")
    except Exception:  # the store is being written: read it again later
        return {}

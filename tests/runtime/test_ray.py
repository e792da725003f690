"""`fastflow run --ray`: the processes as actors of a real local Ray instance.

Each test drives the real `fastflow` command, which starts (and stops) a local Ray
instance, or joins one a test started with `ray start`. Ray is a test dependency
(`scripts/test` installs the `ray` extra): a missing Ray fails here, it does not skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ray  # noqa: F401 - the extra must be installed, or these tests fail loudly
from _processes import SUMS, expected_sums, last_totals, write_flow
from _ray_cluster import started_cluster
from _stores import stored_state
from _stranger import run_processes

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))



def fastflow(*args: object, cwd: Path, timeout: float = 180,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FASTFLOW, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_flow_on_ray_actors_prints_what_it_prints_locally(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS)
    local = fastflow("run", "flow.py", cwd=tmp_path)
    on_ray = fastflow("run", "flow.py", "--ray", "-p", "2", "-w", "2", cwd=tmp_path)
    assert on_ray.returncode == 0, on_ray.stderr
    assert sorted(on_ray.stdout.splitlines()) == sorted(local.stdout.splitlines())
    assert len(local.stdout.splitlines()) == 7


def test_a_store_written_on_ray_resumes_locally_and_the_reverse(tmp_path: Path) -> None:
    write_flow(tmp_path, n=100)
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path).returncode == 0
    first = fastflow("run", "flow.py", "--ray", "-p", "2", "-r", "db", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(100)
    write_flow(tmp_path, n=200)
    local = fastflow("run", "flow.py", "-r", "db", cwd=tmp_path)
    assert (local.returncode, local.stderr) == (0, "")
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(200)
    write_flow(tmp_path, n=300)
    again = fastflow("run", "flow.py", "--ray", "-p", "3", "-r", "db", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(300)
    assert last_totals(tmp_path / "sums.out") == expected_sums(300)


def _kill_an_actor_at_work(driver: int, out: Path) -> None:
    """SIGKILL one of ``driver``'s actors (never another run's: tests may run side by side)
    once the run is at work: its sink has opened ``out``."""
    deadline = time.monotonic() + 180  # a hang guard: Ray starts slowly on a loaded machine
    pids: list[int] = []
    while not (pids and out.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = sorted(run_processes(driver)[1:])
    assert pids and out.exists(), "the run did not get to work"
    os.kill(pids[-1], signal.SIGKILL)


def test_a_dead_actor_is_replaced_from_the_last_committed_epoch(tmp_path: Path) -> None:
    write_flow(tmp_path, n=2000, delay=0.01)  # ~2 s of input per partition
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path).returncode == 0
    proc = subprocess.Popen(
        [FASTFLOW, "run", "flow.py", "--ray", "-p", "2", "-r", "db", "-s", "0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _kill_an_actor_at_work(proc.pid, tmp_path / "sums.out")
        _out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    restarts = [line for line in err.splitlines() if "restarting" in line]
    assert len(restarts) == 1
    assert restarts[0].startswith("fastflow: process ")
    assert restarts[0].endswith(
        "; restarting from the last committed epoch (restart 1 of 3)"
    )
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(2000)
    assert last_totals(tmp_path / "sums.out") == expected_sums(2000)


def test_without_restarts_or_a_store_a_dead_actor_fails_the_run(tmp_path: Path) -> None:
    write_flow(tmp_path, n=2000, delay=0.01)
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path).returncode == 0
    for extra in (["-r", "db", "--max-restarts", "0"], []):
        (tmp_path / "sums.out").unlink(missing_ok=True)
        proc = subprocess.Popen([FASTFLOW, "run", "flow.py", "--ray", "-p", "2", *extra],
                                cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            _kill_an_actor_at_work(proc.pid, tmp_path / "sums.out")
            _out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 1
        last = err.strip().splitlines()[-1]
        assert last.startswith("fastflow run: error: process ")
        assert "(a Ray actor) died" in last
        assert "restarting" not in err


def test_a_user_exception_on_an_actor_fails_the_run_once_without_restarts(
    tmp_path: Path,
) -> None:
    write_flow(tmp_path, n=100, fail="if self.index == 2 and self.at >= 50: 1 / 0")
    assert fastflow("init-recovery", "db", "1", cwd=tmp_path).returncode == 0
    proc = fastflow("run", "flow.py", "--ray", "-p", "2", "-r", "db", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback (most recent call last)") == 1
    assert "restarting" not in proc.stderr
    # Partition 2 of 4 goes to worker 2 % 2 = 0, on process 0.
    assert proc.stderr.strip().splitlines()[-1] == (
        "fastflow run: error: process 0 of 2 failed: error calling `next_batch` in step "
        "'slow.inp': ZeroDivisionError: division by zero"
    )


def test_clear_errors_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS)
    unreachable = fastflow("run", "flow.py", "--ray", "ray://127.0.0.1:9", "-p", "2",
                           cwd=tmp_path, timeout=300)
    assert unreachable.returncode == 2
    assert unreachable.stderr.startswith(
        "fastflow run: error: cannot connect to the Ray cluster at ray://127.0.0.1:9: "
    )
    assert len(unreachable.stderr.splitlines()) == 1
    misplaced = fastflow("run", "flow.py", "--max-restarts", "2", cwd=tmp_path)
    assert (misplaced.returncode, misplaced.stderr) == (
        2, "fastflow run: error: --max-restarts only applies with --ray\n"
    )
    hidden = tmp_path / "no_ray"
    hidden.mkdir()
    (hidden / "ray.py").write_text("raise ImportError('hidden by the test')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(hidden)!r})
        from fastflow.cli import main
        sys.exit(main(["run", "flow.py", "--ray", "-p", "2"]))
    """)
    missing = subprocess.run([sys.executable, "-c", script], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert (missing.returncode, missing.stderr) == (
        2, "fastflow run: error: --ray needs Ray, which is not installed: "
        "pip install 'fastflow[ray]'\n"
    )


def test_a_cluster_too_small_for_the_processes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS)
    with started_cluster(num_cpus=1) as env:
        proc = fastflow("run", "flow.py", "--ray", "auto", "-p", "2", cwd=tmp_path, env=env)
        assert proc.returncode == 2
        assert proc.stderr == (
            "fastflow run: error: --ray -p 2 needs 2 CPUs (one per process), but the Ray "
            "cluster has 1 free (1 in all)\n"
        )
        ok = fastflow("run", "flow.py", "--ray", "auto", "-p", "1", cwd=tmp_path, env=env)
        assert ok.returncode == 0, ok.stderr
        assert len(ok.stdout.splitlines()) == 7


def test_cli_main_runs_on_ray_from_python(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SUMS + textwrap.dedent("""
        from fastflow.run import RayOptions, cli_main

        if __name__ == "__main__":
            cli_main(flow, processes=2, ray=RayOptions(placement="pack"))
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    totals = dict(line.strip("()").replace("'", "").split(", ") for line in
                  proc.stdout.splitlines())
    assert totals == {str(k): str(sum(i for i in range(5000) if i % 7 == k)) for k in range(7)}


POISON = '''
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource


def _unavailable():
    raise ImportError("No module named 'only_on_the_laptop'")


class Lookup:
    """Stands for an object whose module the actors cannot import."""

    def __reduce__(self):
        return (_unavailable, ())


table = Lookup()
flow = Dataflow("poison")
s = op.map("use", op.input("inp", flow, TestingSource([1, 2])), lambda x: (table, x)[1])
op.output("out", s, StdOutSink())
'''


def test_what_the_actors_cannot_import_is_named_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(POISON)
    assert fastflow("init-recovery", "db", "1", cwd=tmp_path).returncode == 0
    proc = fastflow("run", "flow.py", "--ray", "-p", "2", "-r", "db", cwd=tmp_path)
    assert proc.returncode == 1
    assert "restarting" not in proc.stderr  # it would fail the same way again
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fastflow run: error: process ")
    assert "No module named 'only_on_the_laptop'" in last
    assert last.endswith(
        "; the actors import what the flow uses: install it on every node, or ship its "
        "directory with Ray's runtime_env (docs/distributed.md)"
    )

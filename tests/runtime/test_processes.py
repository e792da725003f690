"""Several processes (`fastflow run -p N`): same results, aligned recovery, loud failures.

Every test drives the real `fastflow` command (or `cli_main`) and real forked processes.
"""

from __future__ import annotations

import ast
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _processes import (
    BATCHING_DEPENDENT,
    FLOWS,
    expected_sums,
    last_totals,
    write_flow,
)
from _stores import stored_state

from fastflow.run import cli_main

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))

def fastflow(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FASTFLOW, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def wait_for_children(pid: int, count: int = 2) -> list[int]:
    """The children of ``pid`` once it has forked ``count`` (a loaded machine forks slowly)."""
    deadline = time.monotonic() + 60  # hang guard only
    while len(found := children_of(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(found)  # forked in order: process 0 first


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


COMPARED_FLOWS = [pytest.param(f, id=f.stem) for f in FLOWS if f.stem not in BATCHING_DEPENDENT]


def copy_flow(flow_file: Path, tmp_path: Path) -> None:
    shutil.copy(flow_file, tmp_path / "flow.py")
    text = (tmp_path / "flow.py").read_text().replace("bytewax", "fastflow")
    (tmp_path / "flow.py").write_text(text)
    if (flow_file.parent / "data").is_dir():
        shutil.copytree(flow_file.parent / "data", tmp_path / "data")


def outcome(tmp_path: Path, *args: object, store: int = 0, timeout: float = 120) -> object:
    """Exit code, sorted stdout and output files of one run (on a new store of ``store``)."""
    for out in tmp_path.glob("*.out"):
        out.unlink()
    if store:
        shutil.rmtree(tmp_path / "db", ignore_errors=True)
        assert fastflow("init-recovery", "db", store, cwd=tmp_path).returncode == 0
        args = (*args, "-r", "db")
    proc = fastflow("run", "flow.py", *args, cwd=tmp_path, timeout=timeout)
    files = {p.name: sorted(p.read_text().splitlines()) for p in tmp_path.glob("*.out")}
    return (proc.returncode, sorted(proc.stdout.splitlines()), files)


@pytest.mark.parametrize("flow_file", COMPARED_FLOWS)
def test_every_flow_gives_the_same_output_on_any_number_of_processes(
    flow_file: Path, tmp_path: Path
) -> None:
    copy_flow(flow_file, tmp_path)
    one = outcome(tmp_path, "-p", "1")
    assert outcome(tmp_path, "-p", "2") == one
    assert outcome(tmp_path, "-p", "3", "-w", "2") == one


# With several processes, epochs close when the coordinator says, not at the end of a round.
EPOCH_DEPENDENT = {"inspect_formats": "prints epoch numbers, which at -s 0 and -p N depend "
                   "on when the coordinator closes the epochs"}


@pytest.mark.parametrize(
    "flow_file", [p for p in COMPARED_FLOWS if p.id not in EPOCH_DEPENDENT]
)
def test_every_flow_ends_with_an_epoch_per_round_and_a_store(
    flow_file: Path, tmp_path: Path
) -> None:
    # Issue 23: at -s 0 the coordinator closed one epoch after another and never the last.
    copy_flow(flow_file, tmp_path)
    one = outcome(tmp_path, "-s", "0", store=2)
    assert one[0] == 0
    # The timeout only guards against the hang: a run takes about a second.
    assert outcome(tmp_path, "-s", "0", "-p", "2", store=2, timeout=60) == one
    assert outcome(tmp_path, "-s", "0", "-p", "3", "-w", "2", store=3, timeout=60) == one


@pytest.mark.parametrize(
    "kill_after, victim, resume_processes", [(0.5, 1, 1), (1.0, 0, 3), (1.5, 1, 3)]
)
def test_sigkill_of_one_process_then_resume_on_another_count(
    tmp_path: Path, kill_after: float, victim: int, resume_processes: int
) -> None:
    n = 2000  # 200 batches of 10 ms per partition: about 2 s
    write_flow(tmp_path, n=n, delay=0.01)
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path).returncode == 0
    run = [FASTFLOW, "run", "flow.py", "-p", "2", "-w", "2", "-r", "db", "-s", "0.05"]
    proc = subprocess.Popen(run, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_children(proc.pid)
        time.sleep(kill_after)
        workers = sorted(children_of(proc.pid))  # forked in order: process 0 first
        assert len(workers) == 2
        os.kill(workers[victim], signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"fastflow run: error: process {victim} of 2 was killed by signal SIGKILL"
    )
    assert not any(alive(pid) for pid in workers)
    state = stored_state(tmp_path / "db", "slow.sum.stateful_batch")
    assert state and state != expected_sums(n)  # some epochs were committed, not all
    resumed = fastflow("run", "flow.py", "-p", resume_processes, "-r", "db", "-s", "0.05",
                       cwd=tmp_path)
    assert (resumed.returncode, resumed.stderr) == (0, "")
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(n)
    # The FileSink cut its file back to the resumed snapshot: the last line per key is exact.
    assert last_totals(tmp_path / "sums.out") == expected_sums(n)


def test_a_store_written_by_processes_resumes_in_one_and_back(tmp_path: Path) -> None:
    write_flow(tmp_path, n=100)
    assert fastflow("init-recovery", "db", "3", cwd=tmp_path).returncode == 0
    first = fastflow("run", "flow.py", "-p", "2", "-w", "2", "-r", "db", cwd=tmp_path)
    assert (first.returncode, first.stderr) == (0, "")
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(100)
    write_flow(tmp_path, n=200)  # more input in every partition: resumes after the first 100
    again = fastflow("run", "flow.py", "-r", "db", cwd=tmp_path)
    assert (again.returncode, again.stderr) == (0, "")
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(200)
    write_flow(tmp_path, n=300)
    third = fastflow("run", "flow.py", "-p", "3", "-r", "db", cwd=tmp_path)
    assert (third.returncode, third.stderr) == (0, "")
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected_sums(300)


def test_a_user_exception_in_one_process_fails_the_run_once(tmp_path: Path) -> None:
    # Only partition 2's reader raises: it runs on one worker of one process.
    write_flow(tmp_path, n=100, fail="if self.index == 2 and self.at >= 50: 1 / 0")
    proc = fastflow("run", "flow.py", "-p", "2", "-w", "2", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback (most recent call last)") == 1
    assert "1 / 0" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "fastflow run: error: process 1 of 2 failed: error calling `next_batch` in step "
        "'slow.inp': ZeroDivisionError: division by zero"
    )


def test_ctrl_c_stops_every_process_with_exit_code_130(tmp_path: Path) -> None:
    write_flow(tmp_path, n=10_000, delay=0.01)
    proc = subprocess.Popen([FASTFLOW, "run", "flow.py", "-p", "2"], cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        workers = wait_for_children(proc.pid)
        assert len(workers) == 2
        time.sleep(1.0)  # the processes are at work
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole group
        proc.wait(timeout=10)
        assert proc.stderr is not None
        assert proc.stderr.read() == "fastflow run: interrupted\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert not any(alive(pid) for pid in workers)


def test_workers_die_with_a_killed_coordinator(tmp_path: Path) -> None:
    write_flow(tmp_path, n=10_000, delay=0.01)
    proc = subprocess.Popen([FASTFLOW, "run", "flow.py", "-p", "2"], cwd=tmp_path,
                            stderr=subprocess.DEVNULL)
    try:
        workers = wait_for_children(proc.pid)
        assert len(workers) == 2
        time.sleep(1.0)  # the processes are at work
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_main_runs_several_processes_from_python(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import fastflow.operators as op
        from fastflow.connectors.stdio import StdOutSink
        from fastflow.dataflow import Dataflow
        from fastflow.run import cli_main
        from fastflow.testing import TestingSource

        flow = Dataflow("py")
        keyed = op.key_on("k", op.input("inp", flow, TestingSource(range(1000))),
                          lambda i: str(i % 4))
        op.output("out", op.fold_final("sum", keyed, lambda: 0, lambda a, i: a + i),
                  StdOutSink())
        if __name__ == "__main__":
            cli_main(flow, processes=2, workers_per_process=2)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    totals = dict(ast.literal_eval(line) for line in proc.stdout.splitlines())
    assert totals == {str(k): sum(i for i in range(1000) if i % 4 == k) for k in range(4)}


def test_cli_main_rejects_a_bad_process_count() -> None:
    import fastflow.operators as op
    from fastflow.dataflow import Dataflow
    from fastflow.testing import TestingSink, TestingSource

    flow = Dataflow("bad")
    op.output("out", op.input("inp", flow, TestingSource([1])), TestingSink([]))
    with pytest.raises(ValueError, match="processes must be a whole number >= 1; got 0"):
        cli_main(flow, processes=0)


def test_python_m_fastflow_testing_runs_processes_as_bytewax_testing_does(tmp_path: Path) -> None:
    write_flow(tmp_path, n=100)
    proc = subprocess.run([sys.executable, "-m", "fastflow.testing", "flow.py", "-p", "2",
                           "-w", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert last_totals(tmp_path / "sums.out") == expected_sums(100)


def with_open_files(limit: int) -> Callable[[], None]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return lower


def test_more_processes_than_the_open_file_limit_allows_are_refused_before_starting(
    tmp_path: Path,
) -> None:
    write_flow(tmp_path, n=20)
    assert fastflow("init-recovery", "db", "1", cwd=tmp_path).returncode == 0
    store = (tmp_path / "db" / "part-0.sqlite3").read_bytes()
    # At 256 open files, 12 processes need 12 * 14 + 64 = 232 descriptors; 13 need 259.
    refused = subprocess.run([FASTFLOW, "run", "flow.py", "-p", "13", "-r", "db"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             preexec_fn=with_open_files(256))
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        "fastflow run: error: -p 13 is more than this machine's open-file limit allows: at "
        "most 12 (each of N processes needs N + 2 file descriptors while they start, and "
        "`ulimit -n` is 256; raise it, or use fewer processes)\n"
    )
    assert (tmp_path / "db" / "part-0.sqlite3").read_bytes() == store
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["part-0.sqlite3"]
    ran = subprocess.run([FASTFLOW, "run", "flow.py", "-p", "12", "-r", "db"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         preexec_fn=with_open_files(256))
    assert (ran.returncode, ran.stderr) == (0, "")
    assert last_totals(tmp_path / "sums.out") == expected_sums(20)


def test_ten_thousand_processes_are_refused_with_exit_code_2(tmp_path: Path) -> None:
    write_flow(tmp_path, n=20)
    proc = fastflow("run", "flow.py", "-p", "10000", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("fastflow run: error: -p 10000 is more than this machine's "
                                  "open-file limit allows: at most ")
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "sums.out").exists()


UNPICKLABLE = """
import threading
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

flow = Dataflow("flow")
keyed = op.key_on("key", op.input("inp", flow, TestingSource(range(100))), lambda i: str(i % 20))
odd = op.map_value("odd", keyed, lambda i: (i, {odd}))
sums = op.stateful_map("sum", odd, lambda acc, v: ((acc or 0) + v[0], (acc or 0) + v[0]))
op.output("out", sums, StdOutSink())
"""


@pytest.mark.parametrize("odd, cause", [
    ("threading.Lock()", "TypeError: cannot pickle '_thread.lock' object"),
    ("lambda: i", "AttributeError: Can't pickle local object '<lambda>.<locals>.<lambda>'"),
])
def test_items_that_cannot_be_pickled_name_the_step_that_sends_them(
    tmp_path: Path, odd: str, cause: str
) -> None:
    (tmp_path / "flow.py").write_text(UNPICKLABLE.format(odd=odd))
    alone = fastflow("run", "flow.py", cwd=tmp_path)
    assert (alone.returncode, alone.stderr, len(alone.stdout.splitlines())) == (0, "", 100)
    proc = fastflow("run", "flow.py", "-p", "2", cwd=tmp_path)
    assert proc.returncode == 1  # one line: no frames of fastflow's code
    assert proc.stderr == (
        "fastflow run: error: process 0 of 2 failed: step 'flow.odd.flat_map_batch' sends "
        "items to other processes (for step 'flow.sum.stateful_batch') that cannot be "
        f"pickled: {cause}\n"
    )

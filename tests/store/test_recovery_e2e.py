"""The recovery tutorial and crash recovery, through the real `fastflow` command."""

import ast
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from _paths import ROOT
from _stores import stored_state

EXAMPLES = ROOT / "examples"
FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))


def fastflow(*args, cwd, check=True):
    proc = subprocess.run(
        [FASTFLOW, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fastflow {args} exited {proc.returncode}: {proc.stderr}")
    return proc


def test_tutorial_exactly_as_written(tmp_path):
    shutil.copy(EXAMPLES / "recovery.py", tmp_path / "recovery.py")

    fastflow("init-recovery", "db_dir", "1", cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "db_dir").iterdir()) == ["part-0.sqlite3"]

    run = ["run", "recovery.py", "-r", "db_dir", "-s", "30", "-b", "180"]
    assert fastflow(*run, cwd=tmp_path).stdout == "('ALL', 0)\n('ALL', 1)\n('ALL', 3)\n"

    flow_file = tmp_path / "recovery.py"
    flow_file.write_text(flow_file.read_text().replace("inp = [0, 1, 2]", "inp = [3, 4]"))
    assert fastflow(*run, cwd=tmp_path).stdout == "('ALL', 6)\n('ALL', 10)\n"

    assert fastflow(*run, cwd=tmp_path).stdout == ""
    assert sorted(p.name for p in (tmp_path / "db_dir").iterdir()) == ["part-0.sqlite3"]


def test_snapshot_blobs_are_plain_json(tmp_path):
    shutil.copy(EXAMPLES / "recovery.py", tmp_path / "recovery.py")
    fastflow("init-recovery", "db_dir", "1", cwd=tmp_path)
    fastflow("run", "recovery.py", "-r", "db_dir", cwd=tmp_path)
    with sqlite3.connect(tmp_path / "db_dir" / "part-0.sqlite3") as conn:
        rows = dict(conn.execute("SELECT step_id, blob FROM changesets").fetchall())
    assert orjson.loads(rows["recovery.running_count.stateful_batch"]) == {
        "set": {"ALL": 3},
        "del": [],
    }
    (source_state,) = orjson.loads(rows["recovery.inp"])["set"].values()
    assert source_state["consumed"] == 3


CRASH_FLOW = """
import time
import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource
from fastflow.connectors.stdio import StdOutSink

N = {n}

def slow(batch):
    time.sleep(0.004)
    return batch

flow = Dataflow("crash")
nums = op.input("inp", flow, TestingSource(range(N), batch_size=7))
nums = op.flat_map_batch("slow", nums, slow)
keyed = op.key_on("key", nums, lambda i: f"k{{i % 5}}")
sums = op.stateful_map("sum", keyed, lambda acc, i: ((acc or 0) + i, (acc or 0) + i))
op.output("out", sums, StdOutSink())
"""


def expected_sums(n):
    sums = {}
    for i in range(n):
        sums[f"k{i % 5}"] = sums.get(f"k{i % 5}", 0) + i
    return sums


def test_sigkill_mid_stream_then_resume_loses_and_doubles_nothing(tmp_path):
    n = 4000
    (tmp_path / "flow.py").write_text(CRASH_FLOW.format(n=n))
    fastflow("init-recovery", "db", "2", cwd=tmp_path)
    run = [FASTFLOW, "run", "flow.py", "-r", "db", "-s", "0.02"]

    proc = subprocess.Popen(run, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    printed = 0
    for _line in proc.stdout:
        printed += 1
        if printed == n // 3:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    status = fastflow("recovery", "status", "db", cwd=tmp_path).stdout
    assert "next run resumes at epoch: 1\n" not in status, "no epoch was committed before the kill"

    resumed = fastflow("run", "flow.py", "-r", "db", "-s", "0.02", cwd=tmp_path).stdout
    # At-least-once output: the resumed run replays at most the uncommitted epoch,
    # and its last line per key is the exact total.
    last = {}
    for line in resumed.splitlines():
        key, total = ast.literal_eval(line)
        last[key] = total
    assert last == expected_sums(n)
    assert len(resumed.splitlines()) < n
    assert stored_state(tmp_path / "db", "crash.sum.stateful_batch") == expected_sums(n)


def test_repeated_kills_converge_to_the_uninterrupted_state(tmp_path):
    n = 3000
    (tmp_path / "flow.py").write_text(CRASH_FLOW.format(n=n))
    fastflow("init-recovery", "db", "1", cwd=tmp_path)
    run = [FASTFLOW, "run", "flow.py", "-r", "db", "-s", "0.01"]
    for delay in (0.3, 0.5, 0.4):
        proc = subprocess.Popen(run, cwd=tmp_path, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    fastflow("run", "flow.py", "-r", "db", "-s", "0.01", cwd=tmp_path)
    assert stored_state(tmp_path / "db", "crash.sum.stateful_batch") == expected_sums(n)


@pytest.mark.parametrize("extra", [[], ["-s", "0.01"]])
def test_finished_flow_resumed_with_same_input_does_nothing(tmp_path, extra):
    (tmp_path / "flow.py").write_text(CRASH_FLOW.format(n=50))
    fastflow("init-recovery", "db", "1", cwd=tmp_path)
    first = fastflow("run", "flow.py", "-r", "db", *extra, cwd=tmp_path).stdout
    assert len(first.splitlines()) == 50
    assert fastflow("run", "flow.py", "-r", "db", *extra, cwd=tmp_path).stdout == ""


def test_recovery_status_shows_the_store(tmp_path):
    shutil.copy(EXAMPLES / "recovery.py", tmp_path / "recovery.py")
    fastflow("init-recovery", "db_dir", "2", cwd=tmp_path)
    fastflow("run", "recovery.py", "-r", "db_dir", "-s", "30", "-b", "180", cwd=tmp_path)
    status = fastflow("recovery", "status", "db_dir", cwd=tmp_path).stdout
    assert "partitions: 2\n" in status
    assert "executions: 1\n" in status
    assert "frontiers of the last execution: worker 0: 2\n" in status
    assert "next run resumes at epoch: 2\n" in status
    step_line = next(
        line for line in status.splitlines() if "recovery.running_count.stateful_batch" in line
    )
    # one live key, one change set: {"set":{"ALL":3},"del":[]} (26 bytes)
    assert step_line.split()[1:] == ["1", "1", "26"]


def test_recovery_status_of_a_missing_directory_is_one_line(tmp_path):
    proc = fastflow("recovery", "status", "nowhere", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "init-recovery" in proc.stderr

"""SIGKILL inside the store's background work: a commit, a compaction, a GC.

Each test runs the real ``fastflow run`` command in a subprocess whose store is made to
stall inside the chosen SQLite transaction (after its writes, before its COMMIT), kills
it there with SIGKILL, then resumes with a plain ``fastflow run`` and checks that the
final state equals an uninterrupted run's, and that the store holds no trace of the
half-done transaction.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _stores import stored_state

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))

FLOW = """
import time
import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource
from fastflow.connectors.stdio import StdOutSink

def slow(batch):
    time.sleep(0.002)
    return batch

def count_to_four(count, _item):
    count = (count or 0) + 1
    return (None if count == 4 else count), count  # discarded at 4: a deletion

flow = Dataflow("crash")
nums = op.input("inp", flow, TestingSource(range(3000), batch_size=10))
nums = op.flat_map_batch("slow", nums, slow)
sums = op.stateful_map("sum", op.key_on("k", nums, lambda i: f"k{i % 300}"),
                       lambda acc, i: ((acc or 0) + i, None))
counts = op.stateful_map("count", op.key_on("c", nums, lambda i: f"c{i % 70}"), count_to_four)
op.output("out", op.merge("m", sums, counts), StdOutSink())
"""

# Runs `fastflow run ARGS...`, stalling inside the chosen transaction of the store
# (after its writes, before its COMMIT) and saying so on stderr.
STALLING_RUN = """
import sys, time
from contextlib import contextmanager
from fastflow._store import store as st
from fastflow.cli import main

where, nth = sys.argv[1], int(sys.argv[2])
seen = {"commit": 0, "compaction": 0, "gc": 0}
original_writing, original_collect = st._writing, st.RecoveryStore._collect

def collect(self, part, gc_before):
    moved = original_collect(self, part, gc_before)
    if moved is not None:
        seen["gc"] += 1
        if where == "gc" and seen["gc"] == nth:
            stall()
    return moved

def stall():
    print("STALLED", file=sys.stderr, flush=True)
    time.sleep(120)

@contextmanager
def writing(db_dir, part, what):
    with original_writing(db_dir, part, what) as conn:
        yield conn
        kind = {"committing": "commit", "compacting": "compaction"}.get(what.split()[0])
        if kind is not None:
            seen[kind] += 1
            if kind == where and seen[kind] == nth:
                stall()

st._writing = writing
st.RecoveryStore._collect = collect
sys.exit(main(["run", *sys.argv[3:]]))
"""


def expected_state() -> dict[str, dict[str, int]]:
    sums: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i in range(3000):
        sums[f"k{i % 300}"] = sums.get(f"k{i % 300}", 0) + i
        key = f"c{i % 70}"
        counts[key] = counts.get(key, 0) + 1
        if counts[key] == 4:
            del counts[key]
    return {"crash.sum.stateful_batch": sums, "crash.count.stateful_batch": counts}


def stored(db: Path) -> dict[str, dict[str, int]]:
    return {step: stored_state(db, step) for step in expected_state()}


@pytest.mark.parametrize(
    "where, nth",
    [("commit", 6), ("compaction", 1), ("compaction", 3), ("gc", 1), ("gc", 4)],
)
def test_sigkill_inside_the_stores_background_work_then_resume(
    tmp_path: Path, where: str, nth: int
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "stalling_run.py").write_text(STALLING_RUN)
    subprocess.run([FASTFLOW, "init-recovery", "db", "2"], cwd=tmp_path, check=True,
                   capture_output=True)
    args = ["flow.py", "-r", "db", "-s", "0.01", "-b", "0"]
    proc = subprocess.Popen(
        [sys.executable, "stalling_run.py", where, str(nth), *args],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line == "STALLED\n", f"never reached {where} #{nth}: {line}{proc.stderr.read()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = stored(tmp_path / "db")  # a consistent earlier cut, readable as it is
    assert killed_at != expected_state()
    deadline = time.monotonic() + 120
    resumed = subprocess.run([FASTFLOW, "run", *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=deadline - time.monotonic())
    assert (resumed.returncode, resumed.stderr) == (0, "")
    assert stored(tmp_path / "db") == expected_state()

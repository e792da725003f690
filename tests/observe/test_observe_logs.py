"""fastflow's log messages: the `fastflow` logger tree, --log-level, and the lines of
worker processes reaching the coordinator's stderr whole (issue 18)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent)) or "fastflow"

KEYED = """
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

flow = Dataflow("keyed")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(range({n}))), lambda i: str(i % 7))
op.output("out", op.stateful_map("sum", keyed, lambda s, i: ((s or 0) + i, i)), StdOutSink())
"""

CHATTY = """
import logging
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition

log = logging.getLogger("chatty")

class Part(StatefulSourcePartition):
    def __init__(self, index):
        self._items = list(range(index, 200, 2))
    def next_batch(self):
        if not self._items:
            raise StopIteration()
        batch, self._items = self._items[:5], self._items[5:]
        return batch
    def snapshot(self):
        return None

class Source(FixedPartitionedSource):
    def list_parts(self):
        return ["0", "1"]
    def build_part(self, step_id, for_part, resume_state):
        return Part(int(for_part))

def chat(x):
    log.warning("item %d begins\\nmiddle of %d\\nend of %d", x, x, x)
    return x

flow = Dataflow("chatty")
op.output("out", op.map("chat", op.input("inp", flow, Source()), chat), StdOutSink())
"""


def run(tmp_path: Path, *args: object, env: Optional[Dict[str, str]] = None
        ) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("FASTFLOW_", "BYTEWAX_"))}
    return subprocess.run([FASTFLOW, *map(str, args)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**environment, **(env or {})})


def test_by_default_a_run_logs_nothing(tmp_path):
    (tmp_path / "flow.py").write_text(KEYED.format(n=50))
    assert run(tmp_path, "init-recovery", "db", "1").returncode == 0
    done = run(tmp_path, "run", "flow.py", "-r", "db", "-s", "0")
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("how", ["option", "variable"])
def test_info_prints_the_start_line_with_the_resume_epoch(tmp_path, how):
    (tmp_path / "flow.py").write_text(KEYED.format(n=50))
    assert run(tmp_path, "init-recovery", "db", "1").returncode == 0
    assert run(tmp_path, "run", "flow.py", "-r", "db").returncode == 0  # epoch 1 committed
    args, env = (["--log-level", "info"], {}) if how == "option" else (
        [], {"FASTFLOW_LOG_LEVEL": "INFO"})
    done = run(tmp_path, "run", "flow.py", "-r", "db", "-p", "2", "-w", "3", *args, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert re.fullmatch(
        r"\S+ \S+ INFO fastflow\.run: running flow 'keyed': 2 process\(es\) x 3 worker\(s\), "
        r"recovery directory db, resuming at epoch 2 with 8 key\(s\) loaded in \d+\.\d{3} s",
        lines[0]), lines  # 7 keys of the sum, and the source's one partition
    assert not [line for line in lines if " DEBUG " in line]


def test_debug_logs_each_commit_with_its_size(tmp_path):
    (tmp_path / "flow.py").write_text(KEYED.format(n=20))
    assert run(tmp_path, "init-recovery", "db", "1").returncode == 0
    done = run(tmp_path, "run", "flow.py", "-r", "db", "--log-level", "DEBUG")
    assert done.returncode == 0, done.stderr
    commits = [line for line in done.stderr.splitlines() if "committed" in line]
    assert len(commits) == 1  # one epoch: the input ended before 10 s
    assert re.fullmatch(r"\S+ \S+ DEBUG fastflow\.recovery: epoch 1 committed: 8 key\(s\), "
                        r"\d+ byte\(s\) in \d+\.\d+ s", commits[0])


def test_a_bytewax_variable_is_read_with_a_warning_naming_fastflows(tmp_path):
    (tmp_path / "flow.py").write_text(KEYED.format(n=5))
    done = run(tmp_path, "run", "flow.py", env={"BYTEWAX_PROCESSES": "3"})
    assert done.returncode == 0
    assert done.stderr == (
        "BYTEWAX_PROCESSES is read as FASTFLOW_PROCESSES, fastflow's name for it\n")


@pytest.mark.parametrize("args", [[], ["--log-level", "INFO"]], ids=["default", "INFO"])
def test_a_childs_log_lines_reach_the_coordinators_stderr_whole_and_tagged(tmp_path, args):
    (tmp_path / "flow.py").write_text(CHATTY)
    done = run(tmp_path, "run", "flow.py", "-p", "2", *args)
    assert done.returncode == 0, done.stderr
    records = re.findall(r"\[process (\d)\] item (\d+) begins\nmiddle of \2\nend of \2\n",
                         done.stderr)
    assert sorted(int(x) for _, x in records) == list(range(200))
    assert {(int(x) % 2, int(p)) for p, x in records} == {(0, 0), (1, 1)}  # who read what
    rest = re.sub(r"\[process \d\] item (\d+) begins\nmiddle of \1\nend of \1\n", "",
                  done.stderr)
    assert "begins" not in rest and "middle" not in rest


def test_info_logs_compaction_and_gc(tmp_path):
    (tmp_path / "flow.py").write_text(KEYED.format(n=200))
    assert run(tmp_path, "init-recovery", "db", "1").returncode == 0
    done = run(tmp_path, "run", "flow.py", "-r", "db", "-s", "0", "--log-level", "INFO")
    assert done.returncode == 0, done.stderr
    messages = [line.split(" ", 2)[2] for line in done.stderr.splitlines()]
    assert "INFO fastflow.recovery: compacted partition 0 of db" in messages
    collected = [m for m in messages if m.startswith("INFO fastflow.recovery: collected")]
    assert collected and all(re.fullmatch(
        r"INFO fastflow\.recovery: collected partition 0 of db: epochs before \d+ are gone", m)
        for m in collected)

"""Epochs with nothing in them cost nothing: a finished run has few, an idle run writes none.

Issue 23: at `-s 0` an idle flow committed an empty epoch per round (hundreds a second, the
store growing by megabytes), and with `-p 2` a finished one never ended. Every test drives
the real `fastflow` command on a real store.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from _stores import stored_state

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, run_main

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))

PAUSING = """
from datetime import timedelta
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

pause = TestingSource.PAUSE(timedelta(seconds=1))
items = [*range(10), pause, *range(10, 20)]
flow = Dataflow("pausing")
keyed = op.key_on("key", op.input("inp", flow, TestingSource(items)), lambda i: str(i % 3))
sums = op.stateful_map("sum", keyed, lambda acc, i: ((acc or 0) + i, (acc or 0) + i))
op.output("out", sums, StdOutSink())
"""

IDLE = """
from datetime import timedelta
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.inputs import SimplePollingSource


class Nothing(SimplePollingSource):
    def next_item(self):
        return None


flow = Dataflow("idle")
keyed = op.key_on("key", op.input("inp", flow, Nothing(timedelta(seconds=0.2))), str)
op.output("out", op.stateful_map("sum", keyed, lambda acc, i: (i, i)), StdOutSink())
"""


def fastflow(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FASTFLOW, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def store_bytes(db: Path) -> int:
    return sum(path.stat().st_size for path in db.iterdir())


def frontier(db: Path) -> int | None:
    with sqlite3.connect(f"file:{db / 'part-0.sqlite3'}?mode=ro", uri=True) as conn:
        (epoch,) = conn.execute("SELECT max(epoch) FROM frontiers").fetchone()
    return epoch


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_finished_run_leaves_an_epoch_per_round_with_items_not_per_idle_round(
    tmp_path: Path, processes: str
) -> None:
    (tmp_path / "flow.py").write_text(PAUSING)
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path).returncode == 0
    run = fastflow("run", "flow.py", "-r", "db", "-s", "0", "-p", processes, cwd=tmp_path)
    assert (run.returncode, run.stderr) == (0, "")
    sums: dict[str, int] = {}
    expected = []
    for i in range(20):
        sums[str(i % 3)] = sums.get(str(i % 3), 0) + i
        expected.append(str((str(i % 3), sums[str(i % 3)])))
    assert sorted(run.stdout.splitlines()) == sorted(expected)
    status = fastflow("recovery", "status", "db", cwd=tmp_path)
    resumes_at = int(re.search(r"next run resumes at epoch: (\d+)", status.stdout)[1])
    # 20 items read one per round: at most an epoch each, and a few for the ends of input.
    # Idle rounds during the one-second pause closed an epoch each before (hundreds).
    assert resumes_at <= 30


@pytest.mark.parametrize("processes", ["1", "2"])
def test_an_idle_run_at_a_zero_interval_does_not_grow_the_store(
    tmp_path: Path, processes: str
) -> None:
    (tmp_path / "flow.py").write_text(IDLE)
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path).returncode == 0
    db = tmp_path / "db"
    proc = subprocess.Popen([FASTFLOW, "run", "flow.py", "-r", "db", "-s", "0", "-p", processes],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60  # hang guard: the run starts within a second
        while frontier(db) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # past the start (the execution's rows, the first polls)
        size, epoch = store_bytes(db), frontier(db)
        time.sleep(3)  # 15 polls of nothing; before the fix, about 2,000 empty commits
        assert proc.poll() is None
        assert (store_bytes(db), frontier(db)) == (size, epoch)
    finally:
        proc.kill()
        proc.wait()


EXPIRING = """
from datetime import timedelta
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

items = [("a", 1), ("b", 1), TestingSource.PAUSE(timedelta(seconds=1)), ("a", 1)]
flow = Dataflow("expiring")
counts = op.stateful_map("count", op.input("inp", flow, TestingSource(items)),
                         lambda n, one: ((n or 0) + one, (n or 0) + one),
                         ttl=timedelta(milliseconds=200))
op.output("out", counts, StdOutSink())
"""


@pytest.mark.parametrize("processes", ["1", "2"])
def test_an_idle_run_still_wakes_to_expire_keys_before_the_next_item(
    tmp_path: Path, processes: str
) -> None:
    # Nothing happens during the pause, so no epoch is due for its items; the keys' TTL is
    # what must close one, before "a" comes back (which then starts over from 1).
    (tmp_path / "flow.py").write_text(EXPIRING)
    assert fastflow("init-recovery", "db", "2", cwd=tmp_path).returncode == 0
    run = fastflow("run", "flow.py", "-r", "db", "-s", "0", "-p", processes, cwd=tmp_path)
    assert (run.returncode, run.stderr) == (0, "")
    assert sorted(run.stdout.splitlines()) == ["('a', 1)", "('a', 1)", "('b', 1)"]


class InPlacePart(StatefulSourcePartition):
    """Reads 0..4, one per round, and snapshots the same dict, changed in place."""

    def __init__(self) -> None:
        self.state = {"at": 0}

    def next_batch(self) -> list[int]:
        if self.state["at"] == 5:
            raise StopIteration()
        self.state["at"] += 1
        return [self.state["at"]]

    def snapshot(self) -> dict[str, int]:
        return self.state


class InPlaceSource(FixedPartitionedSource):
    def list_parts(self) -> list[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: object) -> InPlacePart:
        return InPlacePart()


def test_a_snapshot_changed_in_place_is_still_written(tmp_path: Path) -> None:
    # Unchanged snapshots are not written again: "unchanged" must not be decided by
    # comparing an object with itself.
    flow = Dataflow("in_place")
    op.output("out", op.input("inp", flow, InPlaceSource()), TestingSink([]))
    init_db_dir(tmp_path, 1)
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(tmp_path))
    assert stored_state(tmp_path, "in_place.inp") == {"only": {"at": 5}}


class TrickleThenIdle(StatelessSourcePartition):
    """Emits one keyed item, then nothing (asking for no wait) for 600 ms; counts polls."""

    def __init__(self) -> None:
        self.polls, self.until = 0, None

    def next_batch(self) -> list[tuple[str, int]]:
        self.polls += 1
        if self.until is None:
            self.until = time.monotonic() + 0.6
            return [("a", 1)]
        if time.monotonic() > self.until:
            raise StopIteration()
        return []


class OnePart(DynamicSource):
    def __init__(self, part: StatelessSourcePartition) -> None:
        self.part = part

    def build(self, step_id: str, worker_index: int, worker_count: int) -> object:
        return self.part


def test_a_key_past_its_ttl_before_the_epoch_ends_does_not_make_the_loop_spin(
    tmp_path: Path,
) -> None:
    part = TrickleThenIdle()
    flow = Dataflow("ttl_spin")
    counted = op.stateful_map("count", op.input("inp", flow, OnePart(part)),
                              lambda n, one: ((n or 0) + one, n), ttl=timedelta(milliseconds=1))
    op.output("out", counted, TestingSink([]))
    init_db_dir(tmp_path, 1)
    interval = timedelta(milliseconds=250)
    run_main(flow, epoch_interval=interval, recovery_config=RecoveryConfig(tmp_path))
    # The first epoch's end stamps the key; its TTL passes a millisecond later, and the
    # next epoch's end, 250 ms on, discards it. Meanwhile the loop idles as usual, polling
    # about every millisecond (~600 polls in all; a spinning loop polls ~100,000 times).
    assert part.polls < 1_500  # at most 600 polls when each waits 1 ms

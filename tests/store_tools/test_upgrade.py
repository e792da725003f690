"""Stores of fastflow 0.1 (format 1): refused with advice, upgraded, resumed exactly.

The fixture ``tests/fixtures/store-v1`` was written by fastflow 0.1 with
``tests/fixtures/store_v1_flow.py``, its input aborted after the 11th item; resuming it
must run the rest of the input with the state 0.1 saved, as 0.1 itself did.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from _paths import TESTS

from fastflow._store.partitions import SCHEMA_VERSION, DirLock
from fastflow._store_tools import upgrade
from fastflow.recovery import FormatVersionError, RecoveryConfig, StoreLockedError
from fastflow.testing import run_main

FIXTURES = TESTS / "fixtures"
FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))
# What fastflow 0.1 printed when it resumed the fixture (checked when the fixture was made).
RESUMED_OUTPUT = (
    "('c', (21, 3))\n('a', (12, 1))\n('b', (28, 4))\n('d', (19, 2))\n"
    "('a', (27, 2))\n('e', (23, 2))\n('c', (17, 1))\n"
)


def fastflow(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FASTFLOW, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def files_of(db_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(db_dir.iterdir())}


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    db = tmp_path / "db"
    shutil.copytree(FIXTURES / "store-v1", db)
    shutil.copy(FIXTURES / "store_v1_flow.py", tmp_path / "flow.py")
    return db


def run_flow(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return fastflow("run", "flow.py", "-r", "db", "-s", "0", "-b", "0", cwd=tmp_path)


def test_a_format_1_store_is_refused_with_the_upgrade_command_and_left_untouched(
    tmp_path: Path, v1_store: Path
) -> None:
    before = files_of(v1_store)
    proc = run_flow(tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "fastflow run: error: db holds recovery partitions in format 1 (fastflow 0.1); this "
        "fastflow reads format 2: upgrade them with `fastflow recovery upgrade db`; nothing "
        "was changed\n"
    )
    assert files_of(v1_store) == before


def test_upgrade_then_resume_continues_exactly_where_fastflow_0_1_stopped(
    tmp_path: Path, v1_store: Path
) -> None:
    proc = fastflow("recovery", "upgrade", "db", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == (
        "upgraded 2 partition(s) of db to format 2; the next run resumes at epoch 5\n"
    )
    assert sorted(p.name for p in v1_store.iterdir()) == ["part-0.sqlite3", "part-1.sqlite3"]
    again = fastflow("recovery", "upgrade", "db", cwd=tmp_path)
    assert (again.returncode, again.stdout) == (0, "db is already in format 2; nothing to do\n")
    resumed = run_flow(tmp_path)
    assert (resumed.returncode, resumed.stderr) == (0, "")
    assert resumed.stdout == RESUMED_OUTPUT
    assert run_flow(tmp_path).stdout == ""  # all input consumed: nothing left to do


def test_an_interrupted_upgrade_is_named_and_finished_by_running_it_again(
    tmp_path: Path, v1_store: Path
) -> None:
    # As if killed after converting part-1 only: each file converts in one transaction.
    upgrade._convert(v1_store / "part-1.sqlite3", 5)
    proc = run_flow(tmp_path)
    assert proc.returncode == 2
    assert "an upgrade was interrupted" in proc.stderr
    assert "part-0.sqlite3" in proc.stderr
    done = fastflow("recovery", "upgrade", "db", cwd=tmp_path)
    assert done.stdout == (
        "upgraded 1 partition(s) of db to format 2; the next run resumes at epoch 5\n"
    )
    assert run_flow(tmp_path).stdout == RESUMED_OUTPUT


def test_a_store_of_a_newer_format_is_refused_by_run_and_upgrade(
    tmp_path: Path, v1_store: Path
) -> None:
    for part in v1_store.iterdir():
        with sqlite3.connect(part) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                         (SCHEMA_VERSION + 1,))
    before = files_of(v1_store)
    for proc in (run_flow(tmp_path), fastflow("recovery", "upgrade", "db", cwd=tmp_path)):
        assert proc.returncode == 2
        assert f"format {SCHEMA_VERSION + 1}" in proc.stderr
        assert "newer than this fastflow reads" in proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    assert files_of(v1_store) == before


def test_upgrade_refuses_a_store_in_use(v1_store: Path) -> None:
    upgrade._convert(v1_store / "part-1.sqlite3", 5)
    lock = DirLock(v1_store / "part-0.sqlite3")  # what a running execution holds
    try:
        with pytest.raises(StoreLockedError):
            upgrade.upgrade_store(v1_store)
    finally:
        lock.release()


def test_run_main_on_a_format_1_store_raises_format_version_error(v1_store: Path) -> None:
    sys.path.insert(0, str(FIXTURES))
    try:
        from store_v1_flow import flow
    finally:
        sys.path.remove(str(FIXTURES))
    before = files_of(v1_store)
    with pytest.raises(FormatVersionError, match="fastflow recovery upgrade"):
        run_main(flow, recovery_config=RecoveryConfig(v1_store))
    assert files_of(v1_store) == before

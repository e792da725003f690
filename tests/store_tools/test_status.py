"""``fastflow recovery status`` as a function (``fastflow._store_tools.status``): every
field, fresh and unresumable stores, and that reading a store never unpickles."""

from __future__ import annotations

import json
import os
import pathlib
from pathlib import Path
from typing import Any

import pytest
from _stores import commit, compact_now, meta_of, new_store, run_backed_up, sets

from fastflow._runtime.snapshot import Restore, UntrustedStateError, read_state
from fastflow._store.changesets import ChangeSet
from fastflow._store.store import RecoveryStore
from fastflow._store_tools.status import format_status, read_status

# Status.


def test_status_fields(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 3)
    blobs: dict[str, list[bytes]] = {"a": [], "b": []}

    def track(changes: list[ChangeSet]) -> list[ChangeSet]:
        for change in changes:
            blobs[change.step_id].append(change.blob)
        return changes

    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        commit(store, 1, {0: track(sets("a", {f"k{i}": "12345" for i in range(10)})),
                          1: track(sets("b", {"x": 1}, writer=1))}, workers=(0, 1))
        commit(store, 2, {0: track(sets("a", {"k1": "123"}, ["k0"]))}, workers=(0, 1))
        commit(store, 3, {0: track(sets("a", {"late": 1}))}, workers=(0,))  # past the cut
        status = read_status(db_dir)
        sizes = [sum(os.path.getsize(f"{path}{suffix}") for suffix in ("", "-wal")
                     if os.path.exists(f"{path}{suffix}")) for path in store.paths]
    assert status.db_dir == db_dir and status.init_id == meta_of(db_dir / "part-0.sqlite3")[
        "init_id"]
    assert status.resume_epoch == 3 and status.frontiers == (4, 3) and status.problem is None
    assert [(e.execution, e.worker_count, e.resume_epoch) for e in status.executions] == [(0, 2, 1)]
    p0, p1, p2 = status.partitions
    assert (p0.index, p0.path, p0.gc_horizon, p0.base_epoch, p0.deltas, p0.live_keys) == (
        0, db_dir / "part-0.sqlite3", 0, 1, 1, 9)
    assert p0.change_set_bytes == sum(map(len, blobs["a"]))  # the epoch-3 delta counts too
    assert (p1.base_epoch, p1.deltas, p1.live_keys, p1.change_set_bytes) == (
        1, 0, 1, len(blobs["b"][0]))
    assert (p2.base_epoch, p2.deltas, p2.live_keys, p2.change_set_bytes) == (None, 0, 0, 0)
    assert [p.size_bytes for p in status.partitions] == sizes
    assert sizes[0] > sizes[2] > 0  # the -wal counts
    assert [(s.step_id, s.live_keys, s.change_sets, s.blob_bytes) for s in status.steps] == [
        ("a", 9, 3, sum(map(len, blobs["a"]))),
        ("b", 1, 1, len(blobs["b"][0])),
    ]
    data = json.loads(json.dumps(status.as_dict()))
    assert data["resume_epoch"] == 3 and data["frontiers"] == [4, 3]
    assert data["partitions"][2]["path"] == str(db_dir / "part-2.sqlite3")
    assert data["steps"][1] == {"step_id": "b", "live_keys": 1, "change_sets": 1,
                                "blob_bytes": len(blobs["b"][0])}
    text = format_status(status)
    assert f"recovery directory: {db_dir}" in text
    assert "partitions: 3" in text and "next run resumes at epoch: 3" in text
    assert "frontiers of the last execution: worker 0: 4, worker 1: 3" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "gc horizon" in line)
    assert lines[header + 3].split()[:7] == ["2", "part-2.sqlite3", str(p2.size_bytes), "0",
                                             "-", "0", "0"]
    assert "problem:" not in text


def test_status_of_a_fresh_and_of_an_unresumable_store(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    status = read_status(db_dir)
    assert status.executions == () and status.frontiers == () and status.steps == ()
    assert status.resume_epoch == 1
    text = format_status(status)
    assert "executions: 0" in text and "state per step: 0 step(s)" in text
    assert "frontiers of the last execution" not in text
    restored = run_backed_up(tmp_path / "other", {0: 2, 1: 11})
    status = read_status(restored)
    assert status.problem is not None and status.partitions[1].gc_horizon >= 3
    assert f"problem: {status.problem}" in format_status(status)


class Touch:
    """Unpickling it creates a file: proof that a pickled state was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.path,))


def test_status_never_unpickles(tmp_path: Path) -> None:
    db_dir, marker = new_store(tmp_path, 1), tmp_path / "unpickled"
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        change = sets("s", {"evil": Touch(marker), "plain": 1})
        assert b'"$pickle"' in change[0].blob
        commit(store, 1, {0: change})
        commit(store, 2, {0: sets("s", {"evil2": Touch(marker)})})
        assert compact_now(store, 0)  # compaction merges blobs without decoding them
    assert not marker.exists()
    status = read_status(db_dir)
    assert status.partitions[0].live_keys == 3 and status.steps[0].live_keys == 3
    format_status(status)
    assert not marker.exists()
    with pytest.raises(UntrustedStateError, match="naming 'pathlib.Path.touch'"):
        read_state(db_dir)  # a resume refuses it
    assert not marker.exists()
    trusting = Restore(trust_pickles=True)
    assert sorted(read_state(db_dir, trusting)["s"]) == ["evil", "evil2", "plain"]
    assert marker.exists()

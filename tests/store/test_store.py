"""Tests of the recovery store, format 2 (``fastflow._store.store``): executions and
resume, commits, GC, compaction, reads, backups, close and inspect.

Change sets are built with the real codec (``encode_changes``), so blobs are what the
engine writes. A key's partition is whatever the caller passes to ``commit``: here
``k<n>`` goes to partition ``n % part_count`` unless a test says otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from _stores import (
    backup,
    change_sets,
    commit,
    compact_now,
    files_of,
    frontiers,
    meta_of,
    new_store,
    rows,
    run_backed_up,
    sets,
)

from fastflow import errors
from fastflow._runtime.snapshot import load_resume, read_state
from fastflow._store import store as st
from fastflow._store.changesets import ChangeSet
from fastflow._store.store import RecoveryStore
from fastflow._store_tools.status import read_status

# Executions, plan and resume.


def test_fresh_store_resumes_at_epoch_one(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        assert store.part_count == 2
        assert store.paths == [db_dir / "part-0.sqlite3", db_dir / "part-1.sqlite3"]
        assert store.db_dir == db_dir
        assert store.plan() == st.ResumePlan(execution=0, epoch=1, frontiers=(), problem=None)
        assert store.executions() == []
        assert store.start_execution(2) == st.ExecutionStart(execution=0, epoch=1)
        assert store.plan() == st.ResumePlan(execution=1, epoch=1, frontiers=(1, 1), problem=None)
        assert list(store.load_changes(1)) == [] and load_resume(store, 1) == {}
        [execution] = store.executions()
        assert (execution.execution, execution.worker_count, execution.resume_epoch) == (0, 2, 1)
        assert execution.started_at.endswith("+00:00")


def test_resume_epoch_is_the_min_frontier_of_the_last_execution(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 3)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        commit(store, 1, {0: sets("s", {"k0": "a1"}), 1: sets("s", {"k1": "b1"}, writer=1)},
               workers=(0, 1))
        commit(store, 2, {0: sets("s", {"k0": "a2"}), 1: sets("s", {"k1": "b2"}, writer=1)},
               workers=(0, 1))
        commit(store, 3, {0: sets("s", {"k0": "a3"})}, workers=(0,))
        assert store.plan().frontiers == (4, 3)
        assert rows(db_dir / "part-0.sqlite3")[-1][:2] == (3, "delta")
    with RecoveryStore.open(db_dir) as store:
        assert store.plan() == st.ResumePlan(execution=1, epoch=3, frontiers=(4, 3), problem=None)
        assert store.start_execution(2) == st.ExecutionStart(execution=1, epoch=3)
        # epoch 3 of worker 0 is past the cut: deleted, so it is replayed, not doubled
        assert [r[0] for r in rows(db_dir / "part-0.sqlite3")] == [1, 2]
        assert load_resume(store, 99) == {"s": {"k0": "a2", "k1": "b2"}}
    with RecoveryStore.open(db_dir) as store:  # an execution that commits nothing
        assert store.start_execution(1) == st.ExecutionStart(execution=2, epoch=3)
        commit(store, 3, {2: sets("s", {"k2": "c3"})})
    with RecoveryStore.open(db_dir) as store:  # fewer workers then: only the last one counts
        assert store.start_execution(4) == st.ExecutionStart(execution=3, epoch=4)
        assert load_resume(store, 4) == {"s": {"k0": "a2", "k1": "b2", "k2": "c3"}}
    with RecoveryStore.inspect(db_dir) as store:
        assert [(e.execution, e.worker_count, e.resume_epoch) for e in store.executions()] == [
            (0, 2, 1), (1, 2, 3), (2, 1, 3), (3, 4, 4),
        ]
        assert store.plan().frontiers == (4, 4, 4, 4)
        assert rows(db_dir / "part-2.sqlite3") == [(3, "base", "s", 0, 0, 1)]


def test_misuse_is_reported(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    store = RecoveryStore.open(db_dir)
    with pytest.raises(errors.RecoveryError, match="call start_execution first"):
        commit(store, 1)
    with pytest.raises(errors.RecoveryError, match="call start_execution first"):
        store.compact(0)
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="worker_count must be >= 1"):
            store.start_execution(bad)
    store.start_execution(2)
    with pytest.raises(errors.RecoveryError, match="already"):
        store.start_execution(2)
    with pytest.raises(ValueError, match=r"worker index 2 out of range\(2\)"):
        commit(store, 1, workers=(0, 2))
    with pytest.raises(ValueError, match=r"worker index -1 out of range\(2\)"):
        commit(store, 1, workers=(-1,))
    with pytest.raises(ValueError, match="expected change sets for 2 partitions"):
        store.commit(1, [0], [[]], gc_before=None)
    with pytest.raises(ValueError, match="expected change sets for 2 partitions"):
        store.commit(1, [0], [[], [], []], gc_before=None)
    assert store.plan().frontiers == (1, 1)  # nothing of the refused calls was written
    commit(store, 1, workers=(0, 1))
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: store.start_execution(1),
        lambda: commit(store, 2, workers=(0, 1)),
        lambda: store.compact(0),
        lambda: list(store.load_changes(2)),
    ):
        with pytest.raises(errors.RecoveryError, match="is closed"):
            call()
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        with pytest.raises(ValueError, match="cannot commit epoch 1: this execution resumed at 2"):
            commit(store, 1)
    with RecoveryStore.inspect(db_dir) as looking:
        with pytest.raises(errors.RecoveryError, match="opened read-only"):
            looking.start_execution(1)
        assert looking.plan().epoch == 2


def test_plan_on_a_closed_store_says_it_is_closed(tmp_path: Path) -> None:
    store = RecoveryStore.open(new_store(tmp_path, 1))
    store.close()
    with pytest.raises(errors.RecoveryError, match="is closed"):
        store.plan()


def test_crash_between_partition_commits(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 3)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {i: sets("s", {f"k{i}": "one"}) for i in range(3)})
        # epoch 2 reaches partition 0 only, then the process dies
        store._commit_partition(store._parts[0], 2, [0], sets("s", {"k0": "two"}), None)
        assert [r[:2] for r in rows(db_dir / "part-0.sqlite3")] == [(1, "base"), (2, "delta")]
    with RecoveryStore.inspect(db_dir) as looking:
        assert looking.plan() == st.ResumePlan(execution=1, epoch=2, frontiers=(2,), problem=None)
    one = {"s": {"k0": "one", "k1": "one", "k2": "one"}}
    assert read_state(db_dir) == one  # the half-commit is not read
    with RecoveryStore.open(db_dir) as store:
        assert store.start_execution(1).epoch == 2
        assert [r[0] for r in rows(db_dir / "part-0.sqlite3")] == [1]  # half-commit gone
        assert frontiers(db_dir / "part-0.sqlite3") == [(0, 0, 3), (1, 0, 2)]
        assert load_resume(store, 3) == one
        commit(store, 2, {1: sets("s", {"k1": "two"})})
        assert load_resume(store, 3) == {"s": {"k0": "one", "k1": "two", "k2": "one"}}



def test_crash_while_starting_an_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        commit(store, 1, {0: sets("s", {"k0": 1}), 1: sets("s", {"k1": 1})}, workers=(0, 1))
        commit(store, 2, {1: sets("s", {"k1": 2})}, workers=(1,))  # past the cut (3, 2)
    with RecoveryStore.open(db_dir) as store:
        real_writing = store._writing

        def writing(part: Any, what: str) -> Any:
            if part.index == 1:
                raise errors.StoreWriteError("disk gone")
            return real_writing(part, what)

        monkeypatch.setattr(store, "_writing", writing)
        with pytest.raises(errors.StoreWriteError):
            store.start_execution(3)  # recorded in partition 0 only
    assert [e.execution for e in read_status(db_dir).executions] == [0, 1]
    with RecoveryStore.open(db_dir) as store:
        assert store.plan() == st.ResumePlan(
            execution=2, epoch=2, frontiers=(2, 2, 2), problem=None
        )
        assert store.start_execution(1) == st.ExecutionStart(execution=2, epoch=2)
        assert [r[0] for r in rows(db_dir / "part-1.sqlite3")] == [1]  # epoch 2 dropped
        assert load_resume(store, 2) == {"s": {"k0": 1, "k1": 1}}


# Commit.


def test_first_change_sets_are_a_base_later_ones_deltas(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    p0, p1 = db_dir / "part-0.sqlite3", db_dir / "part-1.sqlite3"
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        commit(store, 1, {0: sets("a", {"k0": 1, "k2": 2}) + sets("b", {"k0": 9}, writer=1)},
               workers=(0, 1))
        assert rows(p0) == [(1, "base", "a", 0, 0, 2), (1, "base", "b", 1, 0, 1)]
        assert rows(p1) == [] and store.plan().frontiers == (2, 2)
        commit(store, 2, {}, workers=(0, 1))  # nothing changed: frontiers still advance
        assert len(rows(p0)) == 2 and rows(p1) == [] and store.plan().frontiers == (3, 3)
        commit(store, 3, {0: sets("a", {}, ["k2"]), 1: sets("a", {"k1": 1, "k3": 3})},
               workers=(0, 1))
        assert rows(p0)[2:] == [(3, "delta", "a", 0, 0, 1)]
        assert rows(p1) == [(3, "base", "a", 0, 0, 2)]  # p1's first change sets
        commit(store, 4, {1: sets("a", {"k5": 5}, chunk_keys=1) + sets("a", {"k1": 0}, writer=1)},
               workers=(0, 1))
        assert rows(p1)[1:] == [(4, "delta", "a", 0, 0, 1), (4, "delta", "a", 1, 0, 1)]
        assert store.plan().frontiers == (5, 5)
        commit(store, 5, {0: sets("a", {"k0": 5})}, workers=(1,))
        assert store.plan().frontiers == (5, 6)
        assert frontiers(p0) == frontiers(p1) == [(0, 0, 5), (0, 1, 6)]
    assert change_sets(p0, "a")[1] == (3, "delta", 1, {"set": {}, "del": ["k2"]})
    assert read_state(db_dir) == {"a": {"k0": 1, "k1": 0, "k3": 3, "k5": 5}, "b": {"k0": 9}}


def test_change_sets_go_to_the_partition_given(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 4)
    keys = [f"user-{i}" for i in range(40)]
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {
            p: sets("s", {k: k.upper() for k in keys if len(k) % 4 == p}) for p in range(4)
        })
    for index in range(4):
        stored = change_sets(db_dir / f"part-{index}.sqlite3")
        expected = [k for k in keys if len(k) % 4 == index]
        if expected:
            assert stored == [(1, "base", len(expected), {
                "set": {k: k.upper() for k in expected}, "del": []})]
        else:
            assert stored == []
    assert read_state(db_dir) == {"s": {k: k.upper() for k in keys}}


def test_failed_commit_names_the_store_and_keeps_nothing(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"k0": 1})})
        conn = store._parts[0].conn
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count={pages + 1}")
        with pytest.raises(errors.StoreWriteError) as info:
            commit(store, 2, {0: sets("s", {f"k{i}": "x" * 1000 for i in range(50)})})
        assert str(info.value).startswith(
            f"cannot write the recovery store {db_dir} (part-0.sqlite3) while committing epoch 2"
        )
        assert "database or disk is full" in str(info.value)
        assert "the store holds its last committed epoch" in str(info.value)
        assert isinstance(info.value, OSError)
        assert [r[0] for r in rows(db_dir / "part-0.sqlite3")] == [1]
        assert store.plan().frontiers == (2,)
    assert read_state(db_dir) == {"s": {"k0": 1}}


# GC.


def random_epochs(count: int, part_count: int, seed: int = 7) -> list[dict[int, list[ChangeSet]]]:
    """Deterministic epochs of sets and deletions over steps ``a`` and ``b``, keys k0..k29."""
    rng = random.Random(seed)
    alive: dict[str, set[str]] = {"a": set(), "b": set()}
    epochs = []
    for epoch in range(1, count + 1):
        by_part: dict[int, list[ChangeSet]] = {}
        for step, live in alive.items():
            touched = rng.sample(range(30), 6)
            new = {f"k{i}": [epoch, i, step] for i in touched[:4]}
            dead = [f"k{i}" for i in touched[4:] if f"k{i}" in live]
            live.update(new)
            live.difference_update(dead)
            for part in range(part_count):
                part_set = {k: v for k, v in new.items() if int(k[1:]) % part_count == part}
                part_dels = [k for k in dead if int(k[1:]) % part_count == part]
                if part_set or part_dels:
                    by_part.setdefault(part, []).extend(sets(step, part_set, part_dels))
        epochs.append(by_part)
    return epochs


def model_states(epochs: list[dict[int, list[ChangeSet]]]) -> list[dict[str, dict[str, Any]]]:
    """``states[e]``: what a resume at ``e + 1`` must restore, decoded independently."""
    state: dict[str, dict[str, Any]] = {}
    states = [{}]
    for by_part in epochs:
        for changes in by_part.values():
            for change in changes:
                data = orjson.loads(change.blob)
                live = state.setdefault(change.step_id, {})
                live.update(data["set"])
                for key in data["del"]:
                    live.pop(key)
        states.append({s: dict(v) for s, v in state.items()})
    return states


def test_gc_keeps_every_epoch_of_the_window_restorable(tmp_path: Path) -> None:
    window, count = 3, 40
    epochs = random_epochs(count, 2)
    model = model_states(epochs)
    with RecoveryStore.open(new_store(tmp_path, 2)) as gcd, RecoveryStore.open(
        new_store(tmp_path, 2, "ref")
    ) as ref:
        gcd.start_execution(1)
        ref.start_execution(1)
        horizons, sizes = [], []
        for epoch, by_part in enumerate(epochs, 1):
            commit(gcd, epoch, by_part, gc_before=epoch - 1 - window)
            for index in (0, 1):
                gcd.compact(index)
            commit(ref, epoch, by_part)
            horizon = max(gcd.partition_stats(i)[1] for i in (0, 1))
            assert horizon < epoch - window or horizon == 0  # the window is kept
            horizons.append(horizon)
            sizes.append(sum(len(rows(p)) for p in gcd.paths))
            for resume in range(horizon + 1, epoch + 2):
                assert load_resume(gcd, resume) == load_resume(ref, resume) == model[resume - 1]
        assert horizons[-1] >= count - 2 * window - 6  # GC keeps up
        assert max(sizes[20:]) <= 3 * max(sizes[:10])  # and the store stays bounded
        assert sum(len(rows(p)) for p in ref.paths) > 2 * sizes[-1]
        for index in (0, 1):
            conn = sqlite3.connect(gcd.paths[index])
            (oldest,) = conn.execute("SELECT min(epoch) FROM changesets").fetchone()
            assert oldest == gcd.partition_stats(index)[1] == meta_of(gcd.paths[index])[
                "gc_horizon"]
            conn.close()
    for name in ("db", "ref"):
        assert read_state(tmp_path / name) == model[count]


def test_gc_without_a_newer_base_collects_nothing(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        for epoch in range(1, 6):
            commit(store, epoch, {0: sets("s", {"k0": epoch})}, gc_before=epoch - 1)
        assert [r[:2] for r in rows(db_dir / "part-0.sqlite3")] == [
            (1, "base"), (2, "delta"), (3, "delta"), (4, "delta"), (5, "delta"),
        ]
        assert store.partition_stats(0)[1] == 1  # the horizon: the only base, kept
        assert store.compact(0)  # a base at 5
        commit(store, 6, {0: sets("s", {"k0": 6})}, gc_before=4)  # newest base <= 4 is 1
        assert store.partition_stats(0)[1] == 1 and len(rows(db_dir / "part-0.sqlite3")) == 6
        commit(store, 7, {}, gc_before=5)
        assert rows(db_dir / "part-0.sqlite3") == [
            (5, "base", "s", 0, 0, 1), (6, "delta", "s", 0, 0, 1),
        ]
        assert store.partition_stats(0)[1] == 5 == meta_of(db_dir / "part-0.sqlite3")["gc_horizon"]
        assert load_resume(store, 6) == {"s": {"k0": 5}}
        assert load_resume(store, 8) == {"s": {"k0": 6}}


def test_gc_never_passes_a_lagging_worker(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        commit(store, 1, {0: sets("s", {"w1": 1}, writer=1) + sets("s", {"a": 1})}, workers=(0, 1))
        for epoch in range(2, 9):
            commit(store, epoch, {0: sets("s", {"a": epoch})}, gc_before=epoch)
            assert not store.compact(0)  # worker 1 is at frontier 2: nothing past epoch 1
            assert compact_now(store, 0) is False
        assert store.partition_stats(0)[1] == 1 and store.plan().frontiers == (9, 2)
        assert len(rows(db_dir / "part-0.sqlite3")) == 9
        commit(store, 2, {0: sets("s", {"w1": 2}, writer=1)}, workers=(1,), gc_before=8)
        assert store.plan().frontiers == (9, 3)
        assert compact_now(store, 0)  # a base at 2 now
        commit(store, 3, {}, workers=(1,), gc_before=8)
        assert store.partition_stats(0)[1] == 2
    with RecoveryStore.open(db_dir) as store:
        assert store.start_execution(1).epoch == 4
        assert load_resume(store, 4) == {"s": {"a": 3, "w1": 2}}


def test_lagging_worker_first_change_sets_are_not_lost(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        commit(store, 1, {}, workers=(0,))
        commit(store, 2, {0: sets("s", {"a": 2})}, workers=(0,))  # base at 2
        commit(store, 1, {0: sets("s", {"b": 1}, writer=1)}, workers=(1,))  # base at 1 too
        commit(store, 2, {}, workers=(1,))
        assert load_resume(store, 3) == {"s": {"a": 2, "b": 1}}


# Compaction.


def test_compact_does_nothing_while_deltas_are_small(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        assert not store.compact(0)  # nothing at all
        commit(store, 1, {0: sets("s", {f"k{i}": "x" * 20 for i in range(20)})})
        assert not store.compact(0) and not compact_now(store, 0)  # only a base
        for epoch in (2, 3, 4):
            commit(store, epoch, {0: sets("s", {"k0": epoch})})
        before = rows(db_dir / "part-0.sqlite3"), (db_dir / "part-0.sqlite3-wal").read_bytes()
        assert not store.compact(0)
        assert (rows(db_dir / "part-0.sqlite3"),
                (db_dir / "part-0.sqlite3-wal").read_bytes()) == before  # nothing written


def test_compact_folds_deltas_that_outweigh_the_base(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    part = db_dir / "part-0.sqlite3"
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"k0": 0, "gone": 0})})
        commit(store, 2, {0: sets("s", {f"k{i}": [2, i] for i in range(5)}, ["gone"])})
        commit(store, 3, {0: sets("s", {"k1": "three"}) + sets("t", {"x": (1, 2)})})
        expected = {"s": {"k0": [2, 0], "k1": "three", **{f"k{i}": [2, i] for i in (2, 3, 4)}},
                    "t": {"x": (1, 2)}}
        windows = {r: load_resume(store, r) for r in (1, 2, 3, 4)}
        assert windows[4] == expected
        assert store.compact(0)
        assert [r[:3] for r in rows(part)] == [
            (1, "base", "s"), (2, "delta", "s"), (3, "base", "s"), (3, "base", "t"),
        ]  # the delta at 3 became the base; the one at 2 stays for the backup window
        assert change_sets(part)[2:] == [
            (3, "base", 5, {"set": {"k0": [2, 0], "k1": "three", "k2": [2, 2], "k3": [2, 3],
                                    "k4": [2, 4]}, "del": []}),
            (3, "base", 1, {"set": {"x": {"$tuple": [1, 2]}}, "del": []}),
        ]
        assert {r: load_resume(store, r) for r in (1, 2, 3, 4)} == windows
        assert list(store.changes_to_apply(0, 4))[0][:4] == (3, "base", "s", 5)
        assert not store.compact(0)  # nothing new to fold
        commit(store, 4, {0: sets("s", {}, ["k1"])}, gc_before=3)  # GC passes the new base
        assert [r[:2] for r in rows(part)] == [(3, "base"), (3, "base"), (4, "delta")]
        assert load_resume(store, 5) == {"s": {k: v for k, v in expected["s"].items()
                                               if k != "k1"}, "t": {"x": (1, 2)}}
        assert compact_now(store, 0)
        assert change_sets(part, "s")[-1][2] == 4  # k1 vanished from the base
        assert "k1" not in change_sets(part, "s")[-1][3]["set"]


def test_compact_of_a_step_whose_keys_all_died(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"a": 1, "b": 2})})
        commit(store, 2, {0: sets("s", {}, ["a", "b"])})
        assert compact_now(store, 0)
        assert change_sets(db_dir / "part-0.sqlite3")[-1] == (2, "base", 0, {"set": {}, "del": []})
        assert load_resume(store, 3) == {"s": {}}


def test_compact_splits_big_bases_into_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(st, "CHUNK_KEYS", 2)
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"a": 1})})
        commit(store, 2, {0: sets("s", {k: 2 for k in "bcde"})})
        assert store.compact(0)
        assert rows(db_dir / "part-0.sqlite3")[1:] == [
            (2, "base", "s", 0, 0, 2), (2, "base", "s", 0, 1, 2), (2, "base", "s", 0, 2, 1),
        ]
        assert load_resume(store, 3) == {"s": {"a": 1, "b": 2, "c": 2, "d": 2, "e": 2}}


def test_compact_after_max_deltas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "MAX_DELTAS", 3)
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {f"k{i}": "y" * 50 for i in range(50)})})
        for epoch in (2, 3, 4):
            commit(store, epoch, {0: sets("s", {"k0": epoch})})
        assert not store.compact(0)  # 3 small deltas: not yet
        commit(store, 5, {0: sets("s", {"k1": 5})})
        assert store.compact(0)
        assert rows(db_dir / "part-0.sqlite3")[-1] == (5, "base", "s", 0, 0, 50)
        assert load_resume(store, 6)["s"]["k0"] == 4 and load_resume(store, 6)["s"]["k1"] == 5


def test_compact_at_the_start_of_an_execution(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {1: sets("s", {"k1": 1})})
        commit(store, 2, {1: sets("s", {"k1": "two", "k3": 3})})
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        assert [store.compact(i) for i in (0, 1)] == [False, True]  # folded at epoch 2
        assert [r[:2] for r in rows(db_dir / "part-1.sqlite3")] == [(1, "base"), (2, "base")]
        assert load_resume(store, 3) == {"s": {"k1": "two", "k3": 3}}


# Reading: load_changes, changes_to_apply, read_state.


def test_changes_to_apply_order_and_cut(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        commit(store, 1, {0: sets("b", {"k0": 1}, writer=1) + sets("a", {"k2": 1})},
               workers=(0, 1))
        commit(store, 2, {0: sets("b", {"k0": 2}, writer=1) + sets("b", {"k4": 2})
                          + sets("a", {"k2": 2, "k6": 2}, chunk_keys=1),
                          1: sets("a", {"k1": 2})}, workers=(0, 1))
        commit(store, 3, {0: sets("a", {}, ["k2"])}, workers=(0, 1))

        def order(index: int, before: int) -> list[tuple[int, str, str, int]]:
            return [row[:4] for row in store.changes_to_apply(index, before)]

        assert order(0, 1) == []
        assert order(0, 2) == [(1, "base", "a", 1), (1, "base", "b", 1)]
        assert order(0, 4) == [
            (1, "base", "a", 1), (1, "base", "b", 1),
            (2, "delta", "a", 1), (2, "delta", "a", 1), (2, "delta", "b", 1), (2, "delta", "b", 1),
            (3, "delta", "a", 1),
        ]
        assert [orjson.loads(r[4])["set"] for r in store.changes_to_apply(0, 3)][2:] == [
            {"k2": 2}, {"k6": 2}, {"k4": 2}, {"k0": 2},  # writer 0 before writer 1
        ]
        assert order(1, 99) == [(2, "base", "a", 1)]
        steps = [step for step, _ in store.load_changes(4)]
        assert steps == ["a", "b", "a", "a", "b", "b", "a", "a"]  # partition 0, then 1
        assert [blob for _, blob in store.load_changes(4)][-1] == (
            b'{"set":{"k1":2},"del":[]}')
        assert load_resume(store, 4) == {"a": {"k1": 2, "k6": 2}, "b": {"k0": 2, "k4": 2}}
        assert load_resume(store, 3) == {"a": {"k1": 2, "k2": 2, "k6": 2}, "b": {"k0": 2, "k4": 2}}
        assert load_resume(store, 2) == {"a": {"k2": 1}, "b": {"k0": 1}}
        compact_now(store, 0)  # a base at 3: resumes after it start there
        assert order(0, 4) == [(3, "base", "a", 1), (3, "base", "b", 2)]
        assert order(0, 3)[0] == (1, "base", "a", 1)  # older resumes use the older base
        assert load_resume(store, 4) == {"a": {"k1": 2, "k6": 2}, "b": {"k0": 2, "k4": 2}}


def test_read_state_decodes_and_reads_while_a_run_holds_the_store(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    value = {"t": (1, 2), "s": {3}, "b": b"\x00"}
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {1: sets("s", {"k": value})})
        assert (db_dir / "part-1.sqlite3-wal").exists()
        assert read_state(db_dir) == {"s": {"k": value}}
        assert read_state(str(db_dir)) == {"s": {"k": value}}


# Backups.


def expected_after(epoch: int) -> dict[str, dict[str, Any]]:
    return {"s": {"k0": epoch, "k1": epoch, **{f"k{2 * e}": e for e in range(1, epoch + 1)}}}


def test_resume_from_backups_taken_within_the_window(tmp_path: Path) -> None:
    restored = run_backed_up(tmp_path, {0: 4, 1: 7})
    with RecoveryStore.inspect(restored) as looking:
        assert looking.plan().problem is None and looking.plan().epoch == 5
        assert looking.partition_stats(1)[1] > 0  # GC did run in the newer backup
    assert read_state(restored) == expected_after(4)
    with RecoveryStore.open(restored) as store:
        assert store.start_execution(1).epoch == 5
        assert load_resume(store, 5) == expected_after(4)
        assert all(r[0] < 5 for r in rows(restored / "part-1.sqlite3"))


def test_backups_outside_the_window_are_refused(tmp_path: Path) -> None:
    restored = run_backed_up(tmp_path, {0: 2, 1: 11})
    before = files_of(restored)
    with RecoveryStore.inspect(restored) as looking:
        plan = looking.plan()
    assert plan.epoch == 3 and plan.problem is not None
    assert "part-0.sqlite3 can only resume from epoch 3" in plan.problem
    assert "part-1.sqlite3 up to epoch" in plan.problem and "same backup" in plan.problem
    with pytest.raises(errors.InconsistentPartitionsError) as info:
        RecoveryStore.open(restored)
    assert str(info.value) == plan.problem
    assert files_of(restored) == before  # refused before writing


def test_unresumable_message_names_many_partitions_briefly(tmp_path: Path) -> None:
    db_dir, old = new_store(tmp_path, 6), tmp_path / "old"
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {i: sets("s", {f"k{i}": 1}) for i in range(6)})
        backup(db_dir / "part-5.sqlite3", old / "part-5.sqlite3")
        for epoch in (2, 3, 4):
            commit(store, epoch, {i: sets("s", {f"k{i}": epoch}) for i in range(6)},
                   gc_before=epoch - 1)
            for index in range(6):
                compact_now(store, index)
    shutil.copyfile(old / "part-5.sqlite3", db_dir / "part-5.sqlite3")
    with pytest.raises(errors.InconsistentPartitionsError) as info:
        RecoveryStore.open(db_dir)
    assert "part-2.sqlite3 up to epoch 3 and 2 more)" in str(info.value)


# close, inspect.


def test_close_leaves_only_part_files_in_rollback_mode(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    store = RecoveryStore.open(db_dir)
    store.start_execution(1)
    commit(store, 1, {0: sets("s", {f"k{i}": "v" for i in range(100)})})
    assert "part-0.sqlite3-wal" in os.listdir(db_dir)
    store.close()
    assert sorted(os.listdir(db_dir)) == ["part-0.sqlite3", "part-1.sqlite3"]
    for path in db_dir.iterdir():
        assert path.read_bytes()[18:20] == b"\x01\x01"  # not WAL: a plain copy is a backup
    copy = tmp_path / "copy"
    shutil.copytree(db_dir, copy)
    assert read_state(copy) == {"s": {f"k{i}": "v" for i in range(100)}}


def test_inspect_never_writes(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"k0": "v"})})
    before = files_of(db_dir)
    with RecoveryStore.inspect(db_dir) as looking:
        assert looking.plan().epoch == 2
        assert load_resume(looking, 2) == {"s": {"k0": "v"}}
        with pytest.raises(errors.RecoveryError, match="read-only"):
            looking.start_execution(1)
    assert read_status(db_dir).resume_epoch == 2
    assert files_of(db_dir) == before


def test_inspect_reads_a_wal_copy_without_its_log(tmp_path: Path) -> None:
    db_dir, copy = new_store(tmp_path, 1), tmp_path / "copy"
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"k0": "v"})})
        store._parts[0].conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        copy.mkdir()
        shutil.copyfile(db_dir / "part-0.sqlite3", copy / "part-0.sqlite3")
    before = files_of(copy)
    assert before["part-0.sqlite3"][18:20] == b"\x02\x02"  # WAL mode, and no -wal beside it
    assert read_state(copy) == {"s": {"k0": "v"}}
    assert read_status(copy).resume_epoch == 2
    assert files_of(copy) == before

"""Tests of the SQLite recovery store (fastflow._engine.store)."""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import pytest

try:
    from fastflow._engine import store as st
except ImportError:  # the package needs its compiled modules; the store itself does not
    _spec = importlib.util.spec_from_file_location(
        "_fastflow_store_under_test",
        Path(__file__).resolve().parents[1] / "fastflow" / "_engine" / "store.py",
    )
    assert _spec is not None and _spec.loader is not None
    st = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = st
    _spec.loader.exec_module(st)

RecoveryStore = st.RecoveryStore


def crc_route(key: str) -> int:
    return zlib.crc32(key.encode())


def open_store(db_dir: Path, **kwargs) -> st.RecoveryStore:
    return RecoveryStore.open(db_dir, route=crc_route, **kwargs)


def files_of(db_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(db_dir.iterdir())}


def rows_of(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT step_id, state_key, epoch, blob FROM snapshots ORDER BY 1, 2, 3"
        ).fetchall()
    finally:
        conn.close()


def meta_of(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta"))
    finally:
        conn.close()


def set_meta(path: Path, key: str, value) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()


def backup(src: Path, dst: Path) -> None:
    """Copy a partition online, as an operator's backup tool would."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def key_in(store: st.RecoveryStore, partition: int, prefix: str = "k") -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000) if store.partition_of(f"{prefix}{i}") == partition
    )


# init_db_dir


def test_init_creates_exactly_the_part_files(tmp_path: Path) -> None:
    db_dir = tmp_path / "a" / "b" / "db"
    paths = st.init_db_dir(db_dir, 3)
    assert paths == [db_dir / f"part-{i}.sqlite3" for i in range(3)]
    assert sorted(os.listdir(db_dir)) == ["part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]
    metas = [meta_of(p) for p in paths]
    assert [m["partition_index"] for m in metas] == [0, 1, 2]
    assert {m["partition_count"] for m in metas} == {3}
    assert {m["schema_version"] for m in metas} == {st.SCHEMA_VERSION}
    assert len({m["init_id"] for m in metas}) == 1 and len(metas[0]["init_id"]) == 32
    assert metas[0]["created_at"].endswith("+00:00")
    assert sorted(os.listdir(db_dir)) == ["part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]


@pytest.mark.parametrize("count", [0, -1, True, 1.5, "2"])
def test_init_rejects_bad_counts(tmp_path: Path, count) -> None:
    with pytest.raises(ValueError):
        st.init_db_dir(tmp_path / "db", count)
    assert not list((tmp_path / "db").glob("part-*")) if (tmp_path / "db").exists() else True


def test_init_refuses_existing_partitions(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    before = files_of(db_dir)
    with pytest.raises(st.PartitionsExistError) as info:
        st.init_db_dir(db_dir, 2)
    assert isinstance(info.value, FileExistsError)
    assert "part-0.sqlite3" in str(info.value) and "part-1.sqlite3" in str(info.value)
    assert files_of(db_dir) == before


def test_init_force_replaces_partitions_and_side_files(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 3)
    old_id = meta_of(db_dir / "part-0.sqlite3")["init_id"]
    (db_dir / "part-2.sqlite3-wal").write_bytes(b"stale")
    (db_dir / "part-2.sqlite3-shm").write_bytes(b"stale")
    (db_dir / "notes.txt").write_text("keep me")
    st.init_db_dir(db_dir, 2, force=True)
    assert sorted(os.listdir(db_dir)) == ["notes.txt", "part-0.sqlite3", "part-1.sqlite3"]
    assert meta_of(db_dir / "part-0.sqlite3")["init_id"] != old_id


def test_init_force_refuses_a_running_store(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    with open_store(db_dir):
        with pytest.raises(st.StoreLockedError):
            st.init_db_dir(db_dir, 1, force=True)
        assert (db_dir / "part-0.sqlite3").exists()


# validation errors: each leaves every file as it was


def assert_open_fails(db_dir: Path, error: type, *needles: str) -> None:
    before = files_of(db_dir) if db_dir.is_dir() else None
    for attempt in (lambda: open_store(db_dir), lambda: RecoveryStore.inspect(db_dir)):
        with pytest.raises(error) as info:
            attempt()
        for needle in needles:
            assert needle in str(info.value)
        assert isinstance(info.value, st.RecoveryError)
        if before is not None:
            assert files_of(db_dir) == before  # nothing modified, nothing created


def test_missing_dir(tmp_path: Path) -> None:
    assert_open_fails(tmp_path / "nope", st.NoPartitionsError, "fastflow init-recovery")
    assert issubclass(st.NoPartitionsError, FileNotFoundError)


def test_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "README").write_text("not a partition")
    assert_open_fails(tmp_path / "db", st.NoPartitionsError, "fastflow init-recovery")


def test_missing_partition(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 3)
    (db_dir / "part-1.sqlite3").unlink()
    assert_open_fails(db_dir, st.MissingPartitionsError, "part-1.sqlite3", "of 3")
    (db_dir / "part-0.sqlite3").unlink()
    assert_open_fails(db_dir, st.MissingPartitionsError, "part-0.sqlite3", "part-1.sqlite3")
    assert issubclass(st.MissingPartitionsError, FileNotFoundError)


def test_mixed_init_ids(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    st.init_db_dir(a, 2)
    st.init_db_dir(b, 2)
    (a / "part-1.sqlite3").write_bytes((b / "part-1.sqlite3").read_bytes())
    assert_open_fails(a, st.InconsistentPartitionsError, "part-0.sqlite3", "part-1.sqlite3")
    assert issubclass(st.InconsistentPartitionsError, ValueError)


def test_different_counts(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    set_meta(db_dir / "part-1.sqlite3", "partition_count", 3)
    assert_open_fails(db_dir, st.InconsistentPartitionsError, "partition count", "part-1")


def test_renamed_partition(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    (db_dir / "part-1.sqlite3").write_bytes((db_dir / "part-0.sqlite3").read_bytes())
    assert_open_fails(db_dir, st.InconsistentPartitionsError, "part-1.sqlite3 holds partition 0")


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all " * 100, b"", b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["garbage", "empty", "bad-header"],
)
def test_corrupt_partition(tmp_path: Path, content: bytes) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    (db_dir / "part-1.sqlite3").write_bytes(content)
    assert_open_fails(db_dir, st.CorruptPartitionError, str(db_dir / "part-1.sqlite3"))
    assert (db_dir / "part-1.sqlite3").read_bytes() == content
    assert issubclass(st.CorruptPartitionError, ValueError)


def test_foreign_sqlite_file(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    conn = sqlite3.connect(db_dir / "part-0.sqlite3")
    conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value)")  # look-alike
    conn.commit()
    conn.close()
    assert_open_fails(db_dir, st.CorruptPartitionError, "part-0.sqlite3", "not a fastflow")


def test_wrong_schema_version(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    set_meta(db_dir / "part-0.sqlite3", "schema_version", 99)
    assert_open_fails(db_dir, st.CorruptPartitionError, "part-0.sqlite3", "schema version 99")


# lock


def test_lock_in_process(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir) as store:
        with pytest.raises(st.StoreLockedError, match="in use"):
            open_store(db_dir)
        store.start_execution(1)  # the failed open did not disturb the holder
        store.commit_epoch(1, 0, [("s", "k", b"1")], None)
        assert RecoveryStore.inspect(db_dir).resume_epoch == 2  # read-only look is allowed
    with open_store(db_dir) as store:  # released at close
        assert store.start_execution(1).epoch == 2
    assert issubclass(st.StoreLockedError, RuntimeError)


CHILD = """
import importlib.util, sys, time, zlib
spec = importlib.util.spec_from_file_location("child_store", {path!r})
st = importlib.util.module_from_spec(spec)
sys.modules["child_store"] = st
spec.loader.exec_module(st)
route = lambda k: zlib.crc32(k.encode())
if sys.argv[1] == "try":
    try:
        st.RecoveryStore.open(sys.argv[2], route=route)
    except st.StoreLockedError as exc:
        print("locked:", exc)
        sys.exit(3)
    sys.exit(0)
store = st.RecoveryStore.open(sys.argv[2], route=route)
resume = store.start_execution(1)
for epoch in range(resume.epoch, resume.epoch + 3):
    store.commit_epoch(epoch, 0, [("s", f"k{{i}}", str(epoch).encode()) for i in range(50)], None)
print("ready", flush=True)
time.sleep(60)
"""


def run_child(tmp_path: Path, *args: str, **kwargs) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(path=st.__file__)))
    return subprocess.Popen([sys.executable, str(script), *args], text=True, **kwargs)


def test_lock_across_processes_and_kill(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir):
        child = run_child(tmp_path, "try", str(db_dir), stdout=subprocess.PIPE)
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 3, out
        assert "part-0.sqlite3" in out
    # The other way round: a child holds the store, then dies without closing.
    child = run_child(tmp_path, "hold", str(db_dir), stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(st.StoreLockedError):
            open_store(db_dir)
        assert RecoveryStore.inspect(db_dir).resume_epoch == 4  # readable while running
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    with open_store(db_dir) as store:  # the kernel dropped the dead process's lock
        assert store.start_execution(1).epoch == 4
        assert dict(((s, k), b) for s, k, b in store.load(4))[("s", "k7")] == b"3"


# resume


def test_fresh_store_resumes_at_epoch_one(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir) as store:
        assert store.part_count == 2
        assert store.paths == [db_dir / "part-0.sqlite3", db_dir / "part-1.sqlite3"]
        assert store.start_execution(2) == st.ResumeFrom(execution=0, epoch=1)
        assert list(store.load(1)) == []


def test_resume_epoch_is_min_frontier_of_last_execution(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 3)
    with open_store(db_dir) as store:
        store.start_execution(2)
        for epoch in (1, 2, 3):
            store.commit_epoch(epoch, 0, [("s", "a", b"a%d" % epoch)], None)
        for epoch in (1, 2):
            store.commit_epoch(epoch, 1, [("s", "b", b"b%d" % epoch)], None)
    with open_store(db_dir) as store:
        assert store.start_execution(2) == st.ResumeFrom(execution=1, epoch=3)
        # epoch 3 of worker 0 is past the cut: deleted, so it is replayed, not doubled
        assert sorted(store.load(99)) == [("s", "a", b"a2"), ("s", "b", b"b2")]
        # an execution that commits nothing leaves the resume point where it was
    with open_store(db_dir) as store:
        assert store.start_execution(1) == st.ResumeFrom(execution=2, epoch=3)
        store.commit_epoch(3, 0, [("s", "a", b"a3")], None)
    with open_store(db_dir) as store:  # fewer workers now: only the last execution counts
        assert store.start_execution(4) == st.ResumeFrom(execution=3, epoch=4)
        assert sorted(store.load(4)) == [("s", "a", b"a3"), ("s", "b", b"b2")]
    status = RecoveryStore.inspect(db_dir)
    assert [(e.execution, e.worker_count, e.resume_epoch) for e in status.executions] == [
        (0, 2, 1),
        (1, 2, 3),
        (2, 1, 3),
        (3, 4, 4),
    ]
    assert status.frontiers == (4, 4, 4, 4)


def test_misuse_is_reported(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    store = open_store(db_dir)
    with pytest.raises(st.RecoveryError, match="start_execution"):
        store.commit_epoch(1, 0, [], None)
    with pytest.raises(ValueError):
        store.start_execution(0)
    store.start_execution(1)
    with pytest.raises(st.RecoveryError, match="already"):
        store.start_execution(1)
    with pytest.raises(ValueError, match="worker_index"):
        store.commit_epoch(1, 1, [], None)
    store.commit_epoch(1, 0, [], None)
    store.close()
    store.close()  # idempotent
    with pytest.raises(st.RecoveryError, match="closed"):
        store.status()
    with open_store(db_dir) as store:
        store.start_execution(1)
        with pytest.raises(ValueError, match="resumed at 2"):
            store.commit_epoch(1, 0, [], None)


def test_crash_between_partition_commits(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 3)
    with open_store(db_dir) as store:
        store.start_execution(1)
        keys = [key_in(store, p) for p in range(3)]
        store.commit_epoch(1, 0, [("s", k, b"one") for k in keys], None)
        # epoch 2 reaches partition 0 only, then the process dies
        store._commit_partition(0, 2, 0, [("s", keys[0], b"two")], None)
    status = RecoveryStore.inspect(db_dir)
    assert status.resume_epoch == 2 and status.frontiers == (2,)
    assert rows_of(db_dir / "part-0.sqlite3")[-1][2:] == (2, b"two")
    with open_store(db_dir) as store:
        assert store.start_execution(1).epoch == 2
        assert sorted(store.load(2)) == sorted(("s", k, b"one") for k in keys)
        assert [r[2] for r in rows_of(db_dir / "part-0.sqlite3")] == [1]  # half-commit gone


def test_rows_go_to_the_routed_partition(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 4)
    keys = [f"user-{i}" for i in range(200)]
    with open_store(db_dir) as store:
        store.start_execution(1)
        store.commit_epoch(1, 0, [("s", k, k.encode()) for k in keys], None)
    for index in range(4):
        stored = {row[1] for row in rows_of(db_dir / f"part-{index}.sqlite3")}
        assert stored == {k for k in keys if crc_route(k) % 4 == index}


def test_single_partition_never_routes(tmp_path: Path) -> None:
    def no_route(key: str) -> int:
        raise AssertionError("route called")

    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    with RecoveryStore.open(db_dir, route=no_route) as store:
        store.start_execution(1)
        store.commit_epoch(1, 0, [("s", "k", b"v")], None)
        assert store.partition_of("k") == 0


def test_default_route_is_the_stable_hash(tmp_path: Path) -> None:
    routing = pytest.importorskip("fastflow._cext.routing")
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 3)
    with RecoveryStore.open(db_dir) as store:
        assert store.partition_of("ALL") == routing.stable_hash("ALL") % 3


def test_workers_commit_from_threads(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 3)
    with open_store(db_dir) as store:
        store.start_execution(4)

        def work(worker: int) -> None:
            for epoch in range(1, 21):
                rows = [("s", f"w{worker}-{i}", b"%d" % epoch) for i in range(30)]
                store.commit_epoch(epoch, worker, rows, epoch - 3)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.status().frontiers == (21, 21, 21, 21)
        assert sorted(set(b for _, _, b in store.load(21))) == [b"20"]
        assert len(list(store.load(21))) == 4 * 30


def test_forgotten_store_releases_its_lock(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    open_store(db_dir).start_execution(1)  # never closed, dropped at once
    gc.collect()
    with open_store(db_dir) as store:
        assert store.start_execution(1).execution == 1


# load


def test_load_returns_newest_live_snapshot_per_key(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir) as store:
        store.start_execution(1)
        store.commit_epoch(1, 0, [("a", "x", b"a1"), ("a", "y", b"y1"), ("b", "x", b"b1")], None)
        store.commit_epoch(2, 0, [("a", "x", b"a2"), ("a", "y", None)], None)
        store.commit_epoch(3, 0, [("b", "x", None), ("b", "z", b"z3")], None)
        store.commit_epoch(4, 0, [("b", "x", b"b4")], None)
        assert sorted(store.load(5)) == [
            ("a", "x", b"a2"),
            ("b", "x", b"b4"),
            ("b", "z", b"z3"),
        ]
        assert sorted(store.load(4)) == [("a", "x", b"a2"), ("b", "z", b"z3")]
        assert sorted(store.load(2)) == [("a", "x", b"a1"), ("a", "y", b"y1"), ("b", "x", b"b1")]
        assert list(store.load(1)) == []
        by_step: dict[str, dict[str, bytes]] = {}
        for step_id, newest in store.load_by_step(5):
            assert step_id not in by_step or not by_step[step_id].keys() & newest.keys()
            by_step.setdefault(step_id, {}).update(newest)
        assert by_step == {"a": {"x": b"a2"}, "b": {"x": b"b4", "z": b"z3"}}


def test_same_key_twice_in_one_epoch_keeps_the_last(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    with open_store(db_dir) as store:
        store.start_execution(1)
        store.commit_epoch(1, 0, [("s", "k", b"first"), ("s", "k", b"last")], None)
        assert list(store.load(2)) == [("s", "k", b"last")]


# GC


def run_epochs(store, epochs, backup_epochs: int, writes) -> None:
    for epoch in epochs:
        store.commit_epoch(epoch, 0, writes(epoch), epoch - 1 - backup_epochs)


def test_gc_keeps_the_backup_window(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    with open_store(db_dir) as store:
        store.start_execution(1)
        run_epochs(store, range(1, 11), 3, lambda e: [("s", "a", b"%d" % e), ("s", "b", b"b")])
        # a: superseded snapshots up to the newest at or below 10-1-3 = 6 are gone
        assert [r[2] for r in rows_of(db_dir / "part-0.sqlite3") if r[1] == "a"] == [6, 7, 8, 9, 10]
        assert [r[2] for r in rows_of(db_dir / "part-0.sqlite3") if r[1] == "b"] == [6, 7, 8, 9, 10]
        assert store.status().gc_horizon == 6
        for resume in range(7, 12):  # any resume above the horizon sees the right state
            assert sorted(store.load(resume)) == [
                ("s", "a", b"%d" % (resume - 1)),
                ("s", "b", b"b"),
            ]


def test_gc_never_passes_a_lagging_worker(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    with open_store(db_dir) as store:
        store.start_execution(2)
        store.commit_epoch(1, 1, [("s", "w1", b"1")], 0)
        run_epochs(store, range(1, 8), 0, lambda e: [("s", "a", b"%d" % e)])
        assert store.status().gc_horizon == 1  # worker 1 is at frontier 2
    with open_store(db_dir) as store:
        assert store.start_execution(1).epoch == 2
        assert sorted(store.load(2)) == [("s", "a", b"1"), ("s", "w1", b"1")]


def test_resume_from_backups_taken_within_the_window(tmp_path: Path) -> None:
    db_dir, restored = tmp_path / "db", tmp_path / "restored"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir) as store:
        store.start_execution(1)
        keys = [key_in(store, 0), key_in(store, 1)]

        def writes(epoch):
            return [("s", k, b"%s@%d" % (k.encode(), epoch)) for k in keys]

        run_epochs(store, range(1, 5), 3, writes)
        backup(db_dir / "part-0.sqlite3", restored / "part-0.sqlite3")  # frontier 5
        run_epochs(store, range(5, 8), 3, writes)
        backup(db_dir / "part-1.sqlite3", restored / "part-1.sqlite3")  # frontier 8, horizon 3
        run_epochs(store, range(8, 13), 3, writes)
    status = RecoveryStore.inspect(restored)
    assert status.resume_epoch == 5 and status.problem is None
    with open_store(restored) as store:
        assert store.start_execution(1).epoch == 5
        assert sorted(store.load(5)) == sorted(writes(4))


def test_backups_outside_the_window_are_refused(tmp_path: Path) -> None:
    db_dir, restored = tmp_path / "db", tmp_path / "restored"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir) as store:
        store.start_execution(1)
        keys = [key_in(store, 0), key_in(store, 1)]

        def writes(epoch):
            return [("s", k, b"%d" % epoch) for k in keys]

        run_epochs(store, range(1, 3), 3, writes)
        backup(db_dir / "part-0.sqlite3", restored / "part-0.sqlite3")  # frontier 3
        run_epochs(store, range(3, 12), 3, writes)
        backup(db_dir / "part-1.sqlite3", restored / "part-1.sqlite3")  # horizon 7
    before = [rows_of(p) for p in sorted(restored.iterdir())]
    status = RecoveryStore.inspect(restored)
    assert status.resume_epoch == 3
    assert status.problem is not None and "same backup" in status.problem
    with open_store(restored) as store:
        with pytest.raises(st.InconsistentPartitionsError, match="same backup") as info:
            store.start_execution(1)
        assert "part-0.sqlite3" in str(info.value) and "part-1.sqlite3" in str(info.value)
    assert [rows_of(p) for p in sorted(restored.iterdir())] == before  # refused before writing


def test_tombstone_churn_keeps_row_count_bounded(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    with open_store(db_dir) as store:
        store.start_execution(1)

        def writes(epoch):
            born = [("s", f"e{epoch}-{i}", b"x") for i in range(20)]
            died = [("s", f"e{epoch - 1}-{i}", None) for i in range(20)]
            flip = [("s", "flip", b"on" if epoch % 2 else None)]
            return born + died + flip

        counts = []
        for epoch in range(1, 101):
            run_epochs(store, [epoch], 2, writes)
            counts.append(len(rows_of(db_dir / "part-0.sqlite3")))
        # kept: the 3 epochs of the window (41 rows each) + the newest row at or below the
        # horizon of keys still alive there (20 born keys, the flip): no growth with time
        assert max(counts[10:]) == max(counts[:10]) == 41 * 3 + 20 + 1
        steps = store.status().steps
        assert [(s.step_id, s.live_keys) for s in steps] == [("s", 20)]
        assert sorted(k for _, k, _ in store.load(101)) == sorted(f"e100-{i}" for i in range(20))


# status and close


def test_status_fields(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir) as store:
        store.start_execution(2)
        store.commit_epoch(1, 0, [("a", f"k{i}", b"12345") for i in range(10)], None)
        store.commit_epoch(1, 1, [("b", "x", b"1")], None)
        store.commit_epoch(2, 0, [("a", "k0", None), ("a", "k1", b"123")], 0)
        status = store.status()
        assert RecoveryStore.inspect(db_dir) == status
    assert status.db_dir == db_dir and status.part_count == 2
    assert [(p.index, p.path) for p in status.partitions] == [
        (0, db_dir / "part-0.sqlite3"),
        (1, db_dir / "part-1.sqlite3"),
    ]
    assert all(p.size_bytes > 0 for p in status.partitions)
    assert [(e.execution, e.worker_count, e.resume_epoch) for e in status.executions] == [(0, 2, 1)]
    assert status.frontiers == (3, 2)
    assert status.resume_epoch == 2
    assert status.gc_horizon == 0
    # live keys are those a resume now (at epoch 2) restores; rows count everything stored
    assert [(s.step_id, s.live_keys, s.snapshot_rows, s.blob_bytes) for s in status.steps] == [
        ("a", 10, 12, 10 * 5 + 3),
        ("b", 1, 1, 1),
    ]
    assert json.loads(json.dumps(status.as_dict()))["resume_epoch"] == 2
    assert status.init_id == meta_of(db_dir / "part-0.sqlite3")["init_id"]


def test_inspect_never_writes(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    with open_store(db_dir) as store:
        store.start_execution(1)
        store.commit_epoch(1, 0, [("s", "k", b"v")], None)
    before = files_of(db_dir)
    status = RecoveryStore.inspect(db_dir)
    assert status.resume_epoch == 2 and status.steps[0].live_keys == 1
    assert files_of(db_dir) == before


def test_inspect_reads_a_wal_copy_without_its_log(tmp_path: Path) -> None:
    db_dir, copy = tmp_path / "db", tmp_path / "copy"
    st.init_db_dir(db_dir, 1)
    with open_store(db_dir) as store:
        store.start_execution(1)
        store.commit_epoch(1, 0, [("s", "k", b"v")], None)
        store._parts[0].conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        copy.mkdir()
        (copy / "part-0.sqlite3").write_bytes((db_dir / "part-0.sqlite3").read_bytes())
    before = files_of(copy)
    assert RecoveryStore.inspect(copy).resume_epoch == 2
    assert files_of(copy) == before


def test_close_leaves_only_part_files(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 2)
    store = open_store(db_dir, synchronous="FULL")
    store.start_execution(1)
    store.commit_epoch(1, 0, [("s", f"k{i}", b"v") for i in range(100)], None)
    assert any(name.endswith("-wal") for name in os.listdir(db_dir))
    store.close()
    assert sorted(os.listdir(db_dir)) == ["part-0.sqlite3", "part-1.sqlite3"]
    with pytest.raises(ValueError):
        open_store(db_dir, synchronous="OFF")


def test_gc_after_a_single_epoch_run_keeps_every_row_then_collects_later_ones(
    tmp_path: Path,
) -> None:
    # Every row up to the GC epoch is from one epoch (a run that fit in one epoch): GC
    # skips its superseded pass there, and must still collect once a key is rewritten.
    db_dir = tmp_path / "db"
    st.init_db_dir(db_dir, 1)
    with open_store(db_dir) as store:
        store.start_execution(1)
        store.commit_epoch(1, 0, [("s", "a", b"1"), ("s", "b", b"1")], gc_before=0)
        store.commit_epoch(2, 0, [("s", "a", b"2"), ("s", "b", None)], gc_before=1)
        assert [(r[1], r[2]) for r in rows_of(db_dir / "part-0.sqlite3")] == [
            ("a", 1), ("a", 2), ("b", 1), ("b", 2),
        ]
        store.commit_epoch(3, 0, [], gc_before=2)
        assert [(r[1], r[2]) for r in rows_of(db_dir / "part-0.sqlite3")] == [("a", 2)]
        assert sorted(store.load(4)) == [("s", "a", b"2")]

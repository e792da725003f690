"""Tests of the recovery store, format 2 (fastflow._engine: store, partitions, snapshot,
committer, status).

Change sets are built with the real codec (``encode_changes``), so blobs are what the
engine writes. A key's partition is whatever the caller passes to ``commit``: here
``k<n>`` goes to partition ``n % part_count`` unless a test says otherwise.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from _stores import change_sets

from fastflow import errors
from fastflow._cext.codec import encode_changes
from fastflow._runtime.snapshot import load_resume, read_state
from fastflow._store import partitions as pt
from fastflow._store import store as st
from fastflow._store.changesets import ChangeSet
from fastflow._store.committer import EpochCommitter
from fastflow._store.store import RecoveryStore
from fastflow._store_tools.status import format_status, read_status


def compact_now(store: RecoveryStore, index: int) -> bool:
    """Compact partition ``index`` if it has any delta, whatever their size."""
    saved = st.MAX_DELTAS
    st.MAX_DELTAS = 0  # more than 0 deltas: compact
    try:
        return store.compact(index)
    finally:
        st.MAX_DELTAS = saved

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "store-v1"


# Helpers.


def sets(
    step: str,
    set_: dict[str, Any] | None = None,
    dels: list[str] | tuple[str, ...] = (),
    *,
    writer: int = 0,
    chunk_keys: int = st.CHUNK_KEYS,
) -> list[ChangeSet]:
    """The change sets of ``step``: ``set_`` keys get their state, ``dels`` are deleted."""
    values = dict(set_ or {})
    changed = {key: True for key in dels}
    changed.update({key: False for key in values})
    return [
        ChangeSet(step, writer, chunk, count, blob)
        for chunk, (count, blob) in enumerate(encode_changes(values, changed, chunk_keys))
    ]


def per_part(
    part_count: int, by_part: dict[int, list[ChangeSet]] | None = None
) -> list[list[ChangeSet]]:
    """``commit``'s change sets argument: ``by_part[i]`` (or none) for partition ``i``."""
    by_part = by_part or {}
    return [list(by_part.get(i, [])) for i in range(part_count)]


def commit(
    store: RecoveryStore,
    epoch: int,
    by_part: dict[int, list[ChangeSet]] | None = None,
    *,
    workers: tuple[int, ...] = (0,),
    gc_before: int | None = None,
) -> None:
    store.commit(epoch, list(workers), per_part(store.part_count, by_part), gc_before=gc_before)


def files_of(db_dir: Path) -> dict[str, bytes]:
    """Every file under ``db_dir`` (side files and hidden dirs too) and its bytes."""
    return {
        str(p.relative_to(db_dir)): p.read_bytes() for p in sorted(db_dir.rglob("*")) if p.is_file()
    }


def meta_of(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta"))
    finally:
        conn.close()


def set_meta(path: Path, key: str, value: Any) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()


def rows(path: Path) -> list[tuple[int, str, str, int, int, int]]:
    """``(epoch, kind, step_id, writer, chunk, key_count)`` of a partition, in apply order."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT epoch, kind, step_id, writer, chunk, key_count FROM changesets"
            " ORDER BY epoch, kind, step_id, writer, chunk"
        ).fetchall()
    finally:
        conn.close()


def frontiers(path: Path) -> list[tuple[int, int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM frontiers ORDER BY 1, 2").fetchall()
    finally:
        conn.close()


def backup(src: Path, dst: Path) -> None:
    """Copy a partition online, as an operator's backup tool would (sqlite3 backup API)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def new_store(tmp_path: Path, count: int = 1, name: str = "db") -> Path:
    db_dir = tmp_path / name
    pt.init_db_dir(db_dir, count)
    return db_dir


# init_db_dir


def test_init_creates_exactly_the_part_files(tmp_path: Path) -> None:
    db_dir = tmp_path / "a" / "b" / "db"
    paths = pt.init_db_dir(db_dir, 3)
    assert paths == [db_dir / f"part-{i}.sqlite3" for i in range(3)]
    assert sorted(os.listdir(db_dir)) == ["part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]
    metas = [meta_of(p) for p in paths]
    assert [m["partition_index"] for m in metas] == [0, 1, 2]
    assert {m["partition_count"] for m in metas} == {3}
    assert {m["schema_version"] for m in metas} == {pt.SCHEMA_VERSION} == {2}
    assert {m["gc_horizon"] for m in metas} == {0}
    assert len({m["init_id"] for m in metas}) == 1 and len(metas[0]["init_id"]) == 32
    assert metas[0]["created_at"].endswith("+00:00")
    for path in paths:
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA application_id").fetchone()[0] == pt.APPLICATION_ID
        assert conn.execute("SELECT count(*) FROM changesets").fetchone()[0] == 0
        conn.close()
    with RecoveryStore.inspect(db_dir) as store:
        assert store.part_count == 3 and store.init_id == metas[0]["init_id"]
        assert store.created_at == metas[0]["created_at"]


@pytest.mark.parametrize("count", [0, -1, pt.MAX_PARTITIONS + 1, True, 1.5, "2", None])
def test_init_rejects_bad_counts_and_creates_nothing(tmp_path: Path, count: Any) -> None:
    db_dir = tmp_path / "x" / "db"
    with pytest.raises(ValueError, match=f"from 1 to {pt.MAX_PARTITIONS}"):
        pt.init_db_dir(db_dir, count)
    assert not (tmp_path / "x").exists()


def test_init_one_partition(tmp_path: Path) -> None:
    assert pt.init_db_dir(tmp_path / "db", 1) == [tmp_path / "db" / "part-0.sqlite3"]
    assert os.listdir(tmp_path / "db") == ["part-0.sqlite3"]


def test_init_refuses_existing_partitions(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    (db_dir / "notes.txt").write_text("mine")
    before = files_of(db_dir)
    with pytest.raises(errors.PartitionsExistError) as info:
        pt.init_db_dir(db_dir, 2)
    assert isinstance(info.value, FileExistsError)
    assert "part-0.sqlite3, part-1.sqlite3" in str(info.value)
    assert "nothing was changed" in str(info.value)
    assert files_of(db_dir) == before


def test_init_force_replaces_partitions_and_side_files(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 3)
    old_id = meta_of(db_dir / "part-0.sqlite3")["init_id"]
    for suffix in ("-wal", "-shm", "-journal"):
        (db_dir / f"part-2.sqlite3{suffix}").write_bytes(b"stale")
    (db_dir / "notes.txt").write_text("keep me")
    assert pt.init_db_dir(db_dir, 2, force=True) == [
        db_dir / "part-0.sqlite3",
        db_dir / "part-1.sqlite3",
    ]
    assert sorted(os.listdir(db_dir)) == ["notes.txt", "part-0.sqlite3", "part-1.sqlite3"]
    assert (db_dir / "notes.txt").read_text() == "keep me"
    new_id = meta_of(db_dir / "part-0.sqlite3")["init_id"]
    assert new_id != old_id and meta_of(db_dir / "part-1.sqlite3")["init_id"] == new_id
    assert meta_of(db_dir / "part-1.sqlite3")["partition_count"] == 2


def test_init_force_refuses_a_running_store(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"k0": 1})})
        before = files_of(db_dir)
        with pytest.raises(errors.StoreLockedError, match="in use"):
            pt.init_db_dir(db_dir, 2, force=True)
        assert files_of(db_dir) == before  # no .init-* left either
        commit(store, 2, {0: sets("s", {"k0": 2})})  # the holder is undisturbed
    assert read_state(db_dir) == {"s": {"k0": 2}}


def test_init_builds_in_a_hidden_dir_and_moves_part0_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moves: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        moves.append((Path(src).parent.name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(pt.os, "replace", replace)
    db_dir = tmp_path / "db"
    pt.init_db_dir(db_dir, 3)
    assert [dst for _, dst in moves] == ["part-2.sqlite3", "part-1.sqlite3", "part-0.sqlite3"]
    assert all(src.startswith(".init-") for src, _ in moves)
    assert sorted(os.listdir(db_dir)) == ["part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]


def test_init_interrupted_by_an_exception_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls = []

    def replace(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # after part-2 moved, before part-1 and part-0
        real_replace(src, dst)

    monkeypatch.setattr(pt.os, "replace", replace)
    db_dir = tmp_path / "db"
    with pytest.raises(KeyboardInterrupt):
        pt.init_db_dir(db_dir, 3)
    monkeypatch.undo()
    with pytest.raises(errors.InconsistentPartitionsError, match="was interrupted"):
        RecoveryStore.open(db_dir)


@pytest.mark.parametrize("moved", [[], [2], [1, 2]], ids=["none", "one", "two"])
def test_leftover_init_dir_is_refused_and_force_cleans_it(tmp_path: Path, moved: list[int]) -> None:
    built = new_store(tmp_path, 3, name="built")
    db_dir = tmp_path / "db"
    hidden = db_dir / ".init-abc123"
    hidden.mkdir(parents=True)
    for index in range(3):
        name = f"part-{index}.sqlite3"
        shutil.copyfile(built / name, (db_dir if index in moved else hidden) / name)
    before = files_of(db_dir)
    for attempt in (RecoveryStore.open, RecoveryStore.inspect, read_state, read_status):
        with pytest.raises(errors.InconsistentPartitionsError) as info:
            attempt(db_dir)
        message = str(info.value)
        assert "was interrupted" in message and ".init-abc123" in message
        assert "init-recovery --force" in message
        assert files_of(db_dir) == before
    pt.init_db_dir(db_dir, 3, force=True)
    assert sorted(os.listdir(db_dir)) == ["part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]
    with RecoveryStore.open(db_dir) as store:
        assert store.start_execution(1).epoch == 1


def test_leftover_init_dir_without_parts_is_cleaned_by_a_plain_init(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    (db_dir / ".init-old").mkdir(parents=True)
    (db_dir / ".init-old" / "part-0.sqlite3").write_bytes(b"half")
    pt.init_db_dir(db_dir, 1)
    assert os.listdir(db_dir) == ["part-0.sqlite3"]


# Validation on open: every refusal leaves every file byte-identical.


def assert_refused(
    db_dir: Path, error: type, *needles: str, attempts: tuple[Any, ...] = (
        RecoveryStore.open, RecoveryStore.inspect, read_state)
) -> str:
    before = files_of(db_dir) if db_dir.is_dir() else None
    message = ""
    for attempt in attempts:
        with pytest.raises(error) as info:
            attempt(db_dir)
        message = str(info.value)
        for needle in needles:
            assert needle in message
        assert isinstance(info.value, errors.RecoveryError)
        if before is None:
            assert not db_dir.exists()
        else:
            assert files_of(db_dir) == before  # nothing modified, nothing created (-wal, -shm)
    return message


def test_missing_dir(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nope", errors.NoPartitionsError, "does not exist", "init-recovery")
    assert issubclass(errors.NoPartitionsError, FileNotFoundError)


def test_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "db").write_text("x")
    with pytest.raises(errors.NoPartitionsError, match="is a file"):
        RecoveryStore.open(tmp_path / "db")


def test_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "README").write_text("not a partition")
    (tmp_path / "db" / "part-01.sqlite3").write_text("not a partition name either")
    assert_refused(
        tmp_path / "db", errors.NoPartitionsError, "no recovery partitions", "init-recovery"
    )


def test_missing_partition(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 3)
    (db_dir / "part-1.sqlite3").unlink()
    assert_refused(db_dir, errors.MissingPartitionsError, "1 of 3", "part-1.sqlite3", "--force")
    (db_dir / "part-0.sqlite3").unlink()
    assert_refused(
        db_dir, errors.MissingPartitionsError, "2 of 3", "part-0.sqlite3, part-1.sqlite3"
    )
    assert issubclass(errors.MissingPartitionsError, FileNotFoundError)


def test_many_missing_partitions_make_a_short_message(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 53)
    for index in range(1, 51):
        (db_dir / f"part-{index}.sqlite3").unlink()
    message = assert_refused(db_dir, errors.MissingPartitionsError)
    assert "50 of 53 recovery partitions missing" in message
    assert "part-1.sqlite3, part-2.sqlite3, part-3.sqlite3 and 47 more;" in message
    assert "part-4.sqlite3" not in message and len(message) < 500


def test_many_existing_partitions_make_a_short_message(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 12)
    with pytest.raises(errors.PartitionsExistError) as info:
        pt.init_db_dir(db_dir, 12)
    assert "part-0.sqlite3, part-1.sqlite3, part-10.sqlite3 and 9 more;" in str(info.value)


def test_mixed_init_ids(tmp_path: Path) -> None:
    a, b = new_store(tmp_path, 2, "a"), new_store(tmp_path, 2, "b")
    (a / "part-1.sqlite3").write_bytes((b / "part-1.sqlite3").read_bytes())
    message = assert_refused(
        a, errors.InconsistentPartitionsError, "different `fastflow init-recovery`"
    )
    assert f"part-0.sqlite3 (init {meta_of(a / 'part-0.sqlite3')['init_id']})" in message
    assert f"part-1.sqlite3 (init {meta_of(b / 'part-1.sqlite3')['init_id']})" in message
    assert issubclass(errors.InconsistentPartitionsError, ValueError)


def test_different_counts(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    set_meta(db_dir / "part-1.sqlite3", "partition_count", 3)
    assert_refused(
        db_dir, errors.InconsistentPartitionsError, "partition count",
        "part-0.sqlite3 say 2", "part-1.sqlite3 say 3",
    )


def test_renamed_partition(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    (db_dir / "part-1.sqlite3").write_bytes((db_dir / "part-0.sqlite3").read_bytes())
    assert_refused(db_dir, errors.InconsistentPartitionsError, "part-1.sqlite3 holds partition 0")


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all " * 100, b"", b"SQLite format 3\x00" + b"\xff" * 200],
    ids=["garbage", "empty", "bad-header"],
)
def test_corrupt_partition(tmp_path: Path, content: bytes) -> None:
    db_dir = new_store(tmp_path, 2)
    (db_dir / "part-1.sqlite3").write_bytes(content)
    assert_refused(
        db_dir, errors.CorruptPartitionError, str(db_dir / "part-1.sqlite3"), "untouched"
    )
    assert (db_dir / "part-1.sqlite3").read_bytes() == content
    assert issubclass(errors.CorruptPartitionError, ValueError)


def test_foreign_sqlite_file(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    conn = sqlite3.connect(db_dir / "part-0.sqlite3")
    conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value)")  # look-alike
    conn.execute("INSERT INTO meta VALUES ('schema_version', 2)")
    conn.commit()
    conn.close()
    assert_refused(db_dir, errors.CorruptPartitionError, "part-0.sqlite3", "not a fastflow")


@pytest.mark.parametrize("version", [0, "2", None])
def test_invalid_schema_version(tmp_path: Path, version: Any) -> None:
    db_dir = new_store(tmp_path, 1)
    set_meta(db_dir / "part-0.sqlite3", "schema_version", version)
    assert_refused(db_dir, errors.CorruptPartitionError, "part-0.sqlite3", "schema version")


def test_missing_table(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    conn = sqlite3.connect(db_dir / "part-0.sqlite3")
    conn.execute("DROP TABLE changesets")
    conn.close()
    assert_refused(db_dir, errors.CorruptPartitionError, "tables changesets are missing")


def test_format_1_store_is_refused_with_the_upgrade_command(tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    shutil.copytree(FIXTURE_V1, db_dir)
    assert_refused(
        db_dir, errors.FormatVersionError, "format 1", "fastflow 0.1",
        f"fastflow recovery upgrade {db_dir}", "nothing was changed",
    )


def test_newer_format_is_refused(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    for index in (0, 1):
        set_meta(db_dir / f"part-{index}.sqlite3", "schema_version", 3)
    assert_refused(
        db_dir, errors.FormatVersionError, "format 3", "part-0.sqlite3, part-1.sqlite3", "newer",
        "nothing was changed",
    )


def test_mixed_formats_say_the_upgrade_was_interrupted(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 3)
    set_meta(db_dir / "part-1.sqlite3", "schema_version", 1)
    message = assert_refused(
        db_dir, errors.FormatVersionError, "format 1 (part-1.sqlite3) beside format 2",
        "interrupted", "fastflow recovery upgrade",
    )
    assert "part-0" not in message
    assert issubclass(errors.FormatVersionError, ValueError)


def test_unresumable_gc_horizons_are_refused_without_touching_the_files(tmp_path: Path) -> None:
    db_dir, old = new_store(tmp_path, 2), tmp_path / "old"
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        commit(store, 1, {0: sets("s", {"k0": 1}), 1: sets("s", {"k1": 1})})
        backup(db_dir / "part-1.sqlite3", old / "part-1.sqlite3")  # frontier 2
        for epoch in range(2, 8):
            commit(store, epoch, {0: sets("s", {"k0": epoch}), 1: sets("s", {"k1": epoch})},
                   gc_before=epoch - 2)
            compact_now(store, 0)
            compact_now(store, 1)
        assert store.partition_stats(0)[1] == 5 == store.partition_stats(1)[1]
    shutil.copyfile(old / "part-1.sqlite3", db_dir / "part-1.sqlite3")  # restore one file
    # inspect opens it (status shows the problem); a run is refused
    message = assert_refused(db_dir, errors.InconsistentPartitionsError, "same backup",
                             attempts=(RecoveryStore.open,))
    assert message.startswith(
        f"cannot resume {db_dir}: part-1.sqlite3 can only resume from epoch 2, but 1 "
        "partition(s) (part-0.sqlite3 up to epoch 5) already garbage-collected"
    )
    with RecoveryStore.inspect(db_dir) as store:
        assert store.plan().problem == message
    assert read_status(db_dir).problem == message


def test_read_state_refuses_an_unresumable_store(tmp_path: Path) -> None:
    restored = run_backed_up(tmp_path, {0: 2, 1: 11})
    with pytest.raises(errors.InconsistentPartitionsError, match="same backup"):
        read_state(restored)


# Read-only store.


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anyway")
def test_read_only_store_is_refused(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    for path in db_dir.iterdir():
        path.chmod(0o444)
    db_dir.chmod(0o555)
    try:
        before = files_of(db_dir)
        with pytest.raises(errors.StoreNotWritableError) as info:
            RecoveryStore.open(db_dir)
        assert str(db_dir) in str(info.value)
        assert "the directory, part-0.sqlite3, part-1.sqlite3 read-only" in str(info.value)
        assert files_of(db_dir) == before
        assert read_state(db_dir) == {}  # reading still works
    finally:
        db_dir.chmod(0o755)


@pytest.mark.parametrize(
    ("blocked", "named"),
    [(["part-1.sqlite3"], "(part-1.sqlite3 read-only)"),
     (["db", "part-0.sqlite3"], "(the directory, part-0.sqlite3 read-only)")],
)
def test_not_writable_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blocked: list[str], named: str
) -> None:
    db_dir = new_store(tmp_path, 2)
    real_access = os.access
    monkeypatch.setattr(
        pt.os, "access",
        lambda path, mode: Path(path).name not in blocked and real_access(path, mode),
    )
    before = files_of(db_dir)
    with pytest.raises(errors.StoreNotWritableError) as info:
        RecoveryStore.open(db_dir)
    assert str(info.value).startswith(f"recovery directory {db_dir} is not writable")
    assert named in str(info.value)
    assert isinstance(info.value, PermissionError)
    assert files_of(db_dir) == before
    monkeypatch.undo()
    with RecoveryStore.open(db_dir):  # the refusal left no lock behind
        pass


# Locking.


def test_lock_in_process(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        with pytest.raises(errors.StoreLockedError, match="in use by another running execution"):
            RecoveryStore.open(db_dir)
        store.start_execution(1)  # the failed open did not disturb the holder
        commit(store, 1, {1: sets("s", {"k1": "v"})})
        assert read_state(db_dir) == {"s": {"k1": "v"}}  # a read-only look is allowed
    with RecoveryStore.open(db_dir) as store:  # released at close
        assert store.start_execution(1).epoch == 2
    assert issubclass(errors.StoreLockedError, RuntimeError)


CHILD = """
import sys, time
from fastflow._cext.codec import encode_changes
from fastflow.errors import StoreLockedError
from fastflow._store.changesets import ChangeSet
from fastflow._store.store import RecoveryStore

if sys.argv[1] == "try":
    try:
        RecoveryStore.open(sys.argv[2])
    except StoreLockedError as exc:
        print("locked:", exc)
        sys.exit(3)
    sys.exit(0)
store = RecoveryStore.open(sys.argv[2])
resume = store.start_execution(1)
for epoch in range(resume.epoch, resume.epoch + 3):
    values = {f"k{i}": epoch for i in range(50)}
    blobs = encode_changes(values, dict.fromkeys(values, False), 65536)
    change_sets = [ChangeSet("s", 0, chunk, n, blob) for chunk, (n, blob) in enumerate(blobs)]
    store.commit(epoch, [0], [change_sets, []], gc_before=None)
print("ready", flush=True)
time.sleep(60)
"""


def run_child(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    return subprocess.Popen(
        [sys.executable, str(script), *args], text=True, stdout=subprocess.PIPE
    )


def test_lock_across_processes_and_sigkill(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir):
        child = run_child(tmp_path, "try", str(db_dir))
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 3, out
        assert out.startswith(f"locked: recovery directory {db_dir} is in use")
    # The other way round: a child holds the store, then dies without closing.
    child = run_child(tmp_path, "hold", str(db_dir))
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(errors.StoreLockedError):
            RecoveryStore.open(db_dir)
        assert read_state(db_dir) == {"s": {f"k{i}": 3 for i in range(50)}}  # while it runs
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert (db_dir / "part-0.sqlite3-wal").exists()  # killed: never checkpointed
    with RecoveryStore.open(db_dir) as store:  # the kernel dropped the dead process's lock
        assert store.start_execution(1) == st.ExecutionStart(execution=1, epoch=4)
        assert load_resume(store, 4) == {"s": {f"k{i}": 3 for i in range(50)}}
        assert load_resume(store, 3) == {"s": {f"k{i}": 2 for i in range(50)}}


def test_forgotten_store_releases_its_lock(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 1)
    RecoveryStore.open(db_dir).start_execution(1)  # never closed, dropped at once
    gc.collect()
    with RecoveryStore.open(db_dir) as store:
        assert store.start_execution(1).execution == 1


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


def run_backed_up(tmp_path: Path, backup_at: dict[int, int], epochs: int = 12) -> Path:
    """Run ``epochs`` epochs as the engine would (GC window 3, compaction every epoch) and
    back partition ``i`` up after epoch ``backup_at[i]``; return the restored directory."""
    db_dir, restored = new_store(tmp_path, 2), tmp_path / "restored"
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        committer = EpochCommitter(store, [0], backup_epochs=3)
        try:
            for epoch in range(1, epochs + 1):
                committer.commit(epoch, per_part(2, {
                    0: sets("s", {"k0": epoch, f"k{2 * epoch}": epoch}),
                    1: sets("s", {"k1": epoch}),
                }), last=False)
                committer.wait()
                for index, at in backup_at.items():
                    if at == epoch:
                        backup(store.paths[index], restored / store.paths[index].name)
        finally:
            committer.close()
    return restored


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


# EpochCommitter.


def test_committer_commits_in_order_on_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        calls: list[tuple[Any, ...]] = []
        real_commit, real_compact = store.commit, store.compact

        def spy_commit(epoch: int, workers: list[int], changes: Any, gc_before: Any) -> None:
            calls.append(("commit", epoch, workers, gc_before, threading.current_thread().name))
            real_commit(epoch, workers, changes, gc_before=gc_before)

        def spy_compact(index: int) -> bool:
            calls.append(("compact", index, threading.current_thread().name))
            return real_compact(index)

        monkeypatch.setattr(store, "commit", spy_commit)
        monkeypatch.setattr(store, "compact", spy_compact)
        committer = EpochCommitter(store, [0, 1], backup_epochs=2)
        try:
            committer.compact()
            for epoch in (1, 2, 3):
                committer.commit(epoch, per_part(2, {epoch % 2: sets("s", {"k": epoch})}),
                                 last=epoch == 3)
            committer.wait()
            committer.wait()  # nothing in flight: returns
        finally:
            committer.close()
        threads = {call[-1] for call in calls}
        assert len(threads) == 1 and threads.pop().startswith("fastflow-commit")
        assert [call[:-1] for call in calls] == [
            ("compact", 0), ("compact", 1),
            ("commit", 1, [0, 1], -2), ("compact", 0), ("compact", 1),
            ("commit", 2, [0, 1], -1), ("compact", 0), ("compact", 1),
            ("commit", 3, [0, 1], 0),  # the last epoch leaves compaction to the next run
        ]
        assert store.plan().frontiers == (4, 4)
        assert load_resume(store, 4) == {"s": {"k": 3}}


def test_committer_raises_a_writer_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        committer = EpochCommitter(store, [0], backup_epochs=0)
        try:
            committer.commit(1, [sets("s", {"k": 1})], last=False)
            committer.wait()

            def failing(*args: Any, **kwargs: Any) -> None:
                raise errors.StoreWriteError(f"cannot write the recovery store {db_dir}: boom")

            monkeypatch.setattr(store, "commit", failing)
            committer.commit(2, [sets("s", {"k": 2})], last=False)
            with pytest.raises(errors.StoreWriteError, match=f"recovery store {db_dir}: boom"):
                committer.wait()
            committer.commit(3, [sets("s", {"k": 3})], last=False)
            # the next boundary raises a failure too
            with pytest.raises(errors.StoreWriteError, match="boom"):
                committer.commit(4, [sets("s", {"k": 4})], last=True)
        finally:
            committer.close()  # drops the error of the write in flight
    assert read_state(db_dir) == {"s": {"k": 1}}


def test_committer_reports_a_full_disk(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        committer = EpochCommitter(store, [0], backup_epochs=1)
        try:
            committer.commit(1, per_part(2, {0: sets("s", {"k0": 1}), 1: sets("s", {"k1": 1})}),
                             last=False)
            committer.wait()
            conn = store._parts[1].conn
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count={pages + 1}")
            big = {f"k{2 * i + 1}": "z" * 2000 for i in range(20)}
            committer.commit(2, per_part(2, {0: sets("s", {"k0": 2}), 1: sets("s", big)}),
                             last=False)
            with pytest.raises(errors.StoreWriteError) as info:
                committer.wait()
        finally:
            committer.close()
        message = str(info.value)
        assert message.startswith(f"cannot write the recovery store {db_dir} (part-1.sqlite3)"
                                  " while committing epoch 2: database or disk is full")
        assert "the store holds its last committed epoch" in message
        assert [r[0] for r in rows(db_dir / "part-1.sqlite3")] == [1]
        assert store.plan().epoch == 2  # partition 0 got epoch 2: a resume drops it
    assert read_state(db_dir) == {"s": {"k0": 1, "k1": 1}}
    with RecoveryStore.open(db_dir) as store:
        assert store.start_execution(1).epoch == 2
        assert [r[0] for r in rows(db_dir / "part-0.sqlite3")] == [1]



def test_resume_is_right_while_the_start_compaction_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    import fastflow.operators as op
    from fastflow._runtime import snapshot
    from fastflow.dataflow import Dataflow
    from fastflow.recovery import RecoveryConfig
    from fastflow.testing import TestingSink, TestingSource, run_main

    def run(out: list[Any]) -> None:
        flow = Dataflow("df")
        items = [("a", 1), ("a", 2), ("a", 3), TestingSource.EOF(), ("a", 4)]
        s = op.input("inp", flow, TestingSource(items))
        s = op.stateful_map("sum", s, lambda acc, v: ((acc or 0) + v, (acc or 0) + v))
        op.output("out", s, TestingSink(out))
        run_main(flow, epoch_interval=timedelta(microseconds=1),
                 recovery_config=RecoveryConfig(db_dir))

    db_dir = new_store(tmp_path, 1)
    monkeypatch.setattr(st, "MAX_DELTAS", 0)  # the last epoch's delta is folded at the start
    first: list[Any] = []
    run(first)
    assert first == [("a", 1), ("a", 3), ("a", 6)]
    # Make the race deterministic: the compaction the run starts in the background lands
    # while load_resume reads (after its first blob). Bounded waits: a fixed engine that
    # loads first, or a store that serializes the two, passes (at most 0.5 s later).
    started, done = threading.Event(), threading.Event()
    real_compact_all, real_decode = EpochCommitter._compact_all, snapshot.decode_changes

    def compact_all(self: EpochCommitter) -> None:
        started.set()
        try:
            real_compact_all(self)
        finally:
            done.set()

    decoded: list[bytes] = []

    def decode(blob: bytes) -> Any:
        decoded.append(blob)
        if len(decoded) == 1 and started.wait(0.5):
            done.wait(2)
        return real_decode(blob)

    monkeypatch.setattr(EpochCommitter, "_compact_all", compact_all)
    monkeypatch.setattr(snapshot, "decode_changes", decode)
    second: list[Any] = []
    run(second)
    assert second == [("a", 10)]


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
    assert sorted(read_state(db_dir)["s"]) == ["evil", "evil2", "plain"]  # decoding does
    assert marker.exists()

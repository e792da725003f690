"""A recovery directory's partition files (``fastflow._store.partitions``): init, validation
on open, read-only stores, locking between processes *(subprocess)*."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _paths import TESTS
from _stores import (
    backup,
    commit,
    compact_now,
    files_of,
    meta_of,
    new_store,
    run_backed_up,
    set_meta,
    sets,
)

from fastflow import errors
from fastflow._runtime.snapshot import load_resume, read_state
from fastflow._store import partitions as pt
from fastflow._store import store as st
from fastflow._store.store import RecoveryStore
from fastflow._store_tools.status import read_status

FIXTURE_V1 = TESTS / "fixtures" / "store-v1"


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
        lambda path, mode: not (Path(path).name in blocked and mode & os.W_OK)
        and real_access(path, mode),
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

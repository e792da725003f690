"""Recovery stores in tests: building change sets and commits, reading states, rows and meta."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from fastflow._cext.codec import encode_changes
from fastflow._runtime.snapshot import read_state
from fastflow._store import partitions as pt
from fastflow._store import store as st
from fastflow._store.changesets import ChangeSet
from fastflow._store.committer import EpochCommitter
from fastflow._store.store import RecoveryStore


def stored_state(db_dir: Path, step_id: str) -> dict[str, Any]:
    """The state a resume would restore for ``step_id``, decoded, by key."""
    return read_state(db_dir).get(step_id, {})


def change_sets(part: Path, step_id: str | None = None) -> list[tuple[int, str, int, Any]]:
    """``(epoch, kind, key_count, changes as JSON)`` of a partition file, in epoch order."""
    conn = sqlite3.connect(part)
    try:
        rows = conn.execute(
            "SELECT epoch, kind, step_id, key_count, blob FROM changesets"
            " ORDER BY epoch, kind, step_id, writer, chunk"
        ).fetchall()
    finally:
        conn.close()
    return [
        (epoch, kind, count, orjson.loads(blob))
        for epoch, kind, step, count, blob in rows
        if step_id is None or step == step_id
    ]


def change_set_count(db_dir: Path) -> int:
    """Change-set rows in every partition of ``db_dir``."""
    total = 0
    for part in db_dir.glob("part-*.sqlite3"):
        conn = sqlite3.connect(part)
        try:
            total += conn.execute("SELECT count(*) FROM changesets").fetchone()[0]
        finally:
            conn.close()
    return total


def compact_now(store: RecoveryStore, index: int) -> bool:
    """Compact partition ``index`` if it has any delta, whatever their size."""
    saved = st.MAX_DELTAS
    st.MAX_DELTAS = 0  # more than 0 deltas: compact
    try:
        return store.compact(index)
    finally:
        st.MAX_DELTAS = saved

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

"""``fastflow recovery upgrade``: convert a format-1 store (fastflow 0.1) to format 2.

Why offline and in place: format 1 kept one row per key and epoch; reading it on every
resume would keep its cost. The upgrade turns what a resume would restore into one base
per partition, at the epoch before the resume epoch, in one transaction per partition
file: killed at any point, every file is either still format 1 or already format 2, and
running the upgrade again converts the rest (a store with both is refused by ``open``
with a message saying so). Older epochs (the backup window) are not carried over: after
the upgrade the store resumes exactly where it would have, and no earlier.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson

from fastflow._progress import by_size
from fastflow._store.partitions import (
    CHANGESETS_TABLE,
    SCHEMA_VERSION,
    DirLock,
    check_set,
    check_versions,
    check_writable,
    find_parts,
    read_meta,
    transaction,
)
from fastflow._store.store import CHUNK_KEYS, RecoveryStore

_NEWEST_SNAPSHOTS_SQL = (
    "SELECT step_id, state_key, blob FROM snapshots WHERE epoch < ?"
    " ORDER BY step_id, state_key, epoch"
)


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade_store`` did."""

    converted: int
    """Partitions converted by this call (0: the store was already in the current format)."""
    resume_epoch: int
    """Epoch the next run resumes at, the same as before the upgrade."""


def upgrade_store(db_dir: Path | str) -> Upgrade:
    """Convert every format-1 partition of ``db_dir`` to the current format, in place.

    Refuses (nothing changed) what ``RecoveryStore.open`` would refuse for other reasons:
    an incomplete or mixed set, a store in use, one that cannot be resumed.
    """
    db_dir = Path(db_dir)
    files = find_parts(db_dir)
    metas = {index: read_meta(path) for index, path in files.items()}
    check_versions(db_dir, files, metas, (1, SCHEMA_VERSION))
    check_set(db_dir, files, metas)
    old = [index for index, meta in metas.items() if meta.version != SCHEMA_VERSION]
    with RecoveryStore.inspect(db_dir, accepted=(1, SCHEMA_VERSION)) as looking:
        plan = looking.checked_plan()
    if not old:
        return Upgrade(0, plan.epoch)
    check_writable(db_dir, files)
    lock = DirLock(files[0])
    try:
        for index in by_size(old, files.__getitem__, "upgrading"):
            _convert(files[index], plan.epoch)
    finally:
        lock.release()
    return Upgrade(len(old), plan.epoch)


def _convert(path: Path, resume_epoch: int) -> None:
    """Rewrite one partition: its resume state becomes a base at ``resume_epoch - 1``."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        with transaction(conn):
            newest: dict[str, dict[str, bytes | None]] = {}
            for step_id, key, blob in conn.execute(_NEWEST_SNAPSHOTS_SQL, (resume_epoch,)):
                newest.setdefault(step_id, {})[key] = blob
            conn.execute(CHANGESETS_TABLE)
            base = resume_epoch - 1
            for step_id, blobs in newest.items():
                live = [(key, blob) for key, blob in blobs.items() if blob is not None]
                for chunk, start in enumerate(range(0, max(len(live), 1), CHUNK_KEYS)):
                    part = live[start : start + CHUNK_KEYS]
                    conn.execute(
                        "INSERT INTO changesets VALUES (?, 'base', ?, 0, ?, ?, ?)",
                        (base, step_id, chunk, len(part), _base_blob(part)),
                    )
            conn.execute("DROP TABLE snapshots")
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,)
            )
            conn.execute(
                "UPDATE meta SET value = max(value, ?) WHERE key = 'gc_horizon'", (max(base, 0),)
            )
        conn.execute("VACUUM")
    finally:
        conn.close()


def _base_blob(states: list[tuple[str, bytes]]) -> bytes:
    """A change set of already encoded states: their bytes are spliced in, not re-encoded."""
    members = b",".join(orjson.dumps(key) + b":" + blob for key, blob in states)
    return b'{"set":{' + members + b'},"del":[]}'

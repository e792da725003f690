"""``fastflow recovery backup``: a copy of a store that a run can resume from, taken any time.

Why SQLite's online backup: it copies a database page by page from inside a read
transaction, so each copied partition is exactly one committed state, even while a flow
commits to it (WAL mode lets the flow go on writing meanwhile). Partitions are separate
files, so the copies may still come from different epochs. The rule that makes them
consistent is the store's: a resume starts at the lowest frontier over partitions, which
works as long as no partition has garbage-collected what that resume needs (its GC horizon
is below the resume epoch). To keep the copies close, a read transaction is opened on every
partition first, back to back, and each partition is then copied inside its own (the copy
of partition 3 is as old as that of partition 0, however long copying 0 to 2 took). The copy
is then checked exactly as a run would check it (``RecoveryStore.inspect(...).plan()``), and
taken again, up to ``ATTEMPTS`` times, if a commit slipped between two of those transactions
and its GC had collected an epoch the copy needs; a longer backup window (``-b``) avoids it.

Why a sibling directory renamed into place: the copy is built in ``.DEST.backup-*`` beside
``DEST`` and renamed to ``DEST`` (absent or empty) only once complete and checked, so a
killed backup never leaves a partial store that looks usable; the next backup to the same
``DEST`` removes what it left.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastflow._progress import by_size
from fastflow._store.errors import InconsistentPartitionsError, PartitionsExistError, RecoveryError
from fastflow._store.partitions import (
    connect_ro,
    create_private_file,
    fsync_dir,
    make_private_dir,
    names,
)
from fastflow._store.store import RecoveryStore

ATTEMPTS = 3
"""Copies taken before giving up on a store whose partitions move too fast to copy together."""


@dataclass(frozen=True)
class BackedUp:
    """What ``backup_store`` copied."""

    partitions: int
    resume_epoch: int
    """Epoch a run on the copy resumes at."""
    attempts: int
    """Copies it took (more than 1: commits collected what an earlier copy needed)."""


def backup_store(db_dir: Path | str, dest: Path | str) -> BackedUp:
    """Copy every partition of ``db_dir`` into ``dest`` (which must be absent or empty).

    Refuses (nothing written) a source a run would refuse and a ``dest`` holding anything
    (``PartitionsExistError`` if it holds partitions). Safe while a flow runs on ``db_dir``:
    the backup takes no lock and only reads.
    """
    db_dir, dest = Path(db_dir), Path(dest)
    with RecoveryStore.inspect(db_dir) as store:
        store.checked_plan()
        paths = list(store.paths)
    _check_dest(db_dir, dest)
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    for leftover in parent.glob(f".{dest.name}.backup-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    building = parent / f".{dest.name}.backup-{uuid.uuid4().hex[:12]}"
    try:
        resume_epoch, attempts = _copy_checked(paths, building, db_dir, dest)
        fsync_dir(building)
        os.rename(building, dest)  # replaces an empty directory, atomically
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    fsync_dir(parent)
    return BackedUp(len(paths), resume_epoch, attempts)


def _copy_checked(paths: list[Path], building: Path, db_dir: Path, dest: Path) -> tuple[int, int]:
    """Copy into ``building`` until a run could resume from it; ``(resume epoch, attempts)``."""
    for attempt in range(1, ATTEMPTS + 1):
        make_private_dir(building)
        _copy(paths, building)
        with RecoveryStore.inspect(building) as copy:
            plan = copy.plan()
        if plan.problem is None:
            return plan.epoch, attempt
        shutil.rmtree(building)
    raise InconsistentPartitionsError(
        f"could not back up {db_dir} consistently in {ATTEMPTS} attempts: its partitions "
        "garbage-collected epochs faster than they could be copied; run the flow with a "
        f"longer backup window (`-b`). Nothing was written to {dest}"
    )


def _check_dest(db_dir: Path, dest: Path) -> None:
    store, target = db_dir.resolve(), dest.resolve()
    if target != store and target.is_relative_to(store):
        raise RecoveryError(
            f"cannot back up {db_dir} into {dest}: it is inside the store, which must hold "
            "nothing but its partitions; pick a directory outside it. Nothing was written"
        )
    if not dest.exists():
        return
    if not dest.is_dir():
        raise RecoveryError(f"cannot back up into {dest}: it is a file; nothing was written")
    held = sorted(p.name for p in dest.iterdir())
    parts = [name for name in held if name.startswith("part-") and ".sqlite3" in name]
    if parts:
        raise PartitionsExistError(
            f"{dest} already holds recovery partitions ({names(parts)}); a backup never "
            "overwrites a store: pick a new or empty directory. Nothing was written"
        )
    if held:
        raise RecoveryError(
            f"cannot back up into {dest}: it is not empty ({names(held)}); pick a new or "
            "empty directory. Nothing was written"
        )


def _copy(paths: list[Path], building: Path) -> None:
    """Copy every partition file into ``building``, each as one committed state.

    The read transactions are all opened before any copying starts, so the copies are as
    close in time as the store allows. Each copy is switched to rollback journaling: a
    stopped store's files are complete databases on their own.
    """
    sources = [connect_ro(path) for path in paths]
    try:
        for source in sources:
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM frontiers").fetchone()  # pins the snapshot
        pairs = zip(paths, sources, strict=True)
        for path, source in by_size(pairs, lambda pair: pair[0], "backing up"):
            create_private_file(building / path.name)
            copy = sqlite3.connect(building / path.name, isolation_level=None)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE").fetchone()
            finally:
                copy.close()
    finally:
        for source in sources:
            source.close()

"""``fastflow recovery repartition``: rewrite a store into another number of partitions.

Why a new directory swapped in: a key's partition is ``stable_hash(key) % count``, so a new
count moves almost every key; rewriting partitions in place could not be made atomic. The
new store is built complete in a hidden sibling directory (``.NAME.repartition-*``: never
taken for a store), checked, and then exchanged with the old directory in one system call
(``renameat2(RENAME_EXCHANGE)`` on Linux, ``renamex_np(RENAME_SWAP)`` on macOS): at every
instant the directory's path names either the complete old store or the complete new one.
The old one, then in the sibling, is deleted afterwards; a kill before that leaves the
sibling behind, which the next repartition removes.

What the new store holds: what a resume now would restore, as one base per step and
partition at the epoch before the resume epoch ``R``, the execution history, and frontiers
at ``R`` for every worker of the last execution; so the next run resumes at ``R``, as it
would have. Older epochs (the backup window) are not carried over. States are copied as
their typed JSON, never decoded. The store's lock is held from before reading to after the
swap, so no run can start on the old store and commit into the directory being replaced.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import sqlite3
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from fastflow._cext.routing import split_dict
from fastflow._progress import by_size
from fastflow._store.errors import RecoveryError
from fastflow._store.partitions import (
    PART_RE,
    SIDE_FILES,
    DirLock,
    check_writable,
    find_parts,
    fsync_dir,
    init_db_dir,
    names,
)
from fastflow._store.reader import live_states
from fastflow._store.store import Execution, RecoveryStore
from fastflow._store_tools.importer import change_sets

_STORE_FILE = re.compile(f"{PART_RE.pattern}({'|'.join(SIDE_FILES)})?")
"""A partition file or one of SQLite's files beside it: what a store directory may hold."""


@dataclass(frozen=True)
class Repartitioned:
    """What ``repartition_store`` did."""

    old_count: int
    new_count: int
    keys: int
    """Live keys copied, over all steps."""
    resume_epoch: int
    """Epoch the next run resumes at, the same as before."""


def repartition_store(db_dir: Path | str, count: int) -> Repartitioned:
    """Rewrite the store in ``db_dir`` into ``count`` partitions, atomically.

    Refuses (nothing changed): a store ``RecoveryStore.open`` would refuse (in use:
    ``StoreLockedError``; incomplete, inconsistent, unresumable), a directory holding other
    files than the store's, a bad ``count`` (``ValueError``), a system that cannot exchange
    two directories in one step.
    """
    db_dir = Path(db_dir).resolve()  # a symlink keeps pointing at the swapped directory
    exchange = _exchanger()
    files = find_parts(db_dir)
    others = sorted(p.name for p in db_dir.iterdir() if not _STORE_FILE.fullmatch(p.name))
    if others:
        raise RecoveryError(
            f"cannot repartition {db_dir}: the whole directory is replaced, and it also holds "
            f"{names(others)}; move them elsewhere first. Nothing was changed"
        )
    check_writable(db_dir, files)
    if not os.access(db_dir.parent, os.W_OK | os.X_OK):
        raise RecoveryError(
            f"cannot repartition {db_dir}: the new store is built beside it, in "
            f"{db_dir.parent}, which this user cannot write; nothing was changed"
        )
    lock = DirLock(files[0])
    try:
        for leftover in _siblings(db_dir):
            shutil.rmtree(leftover)
        building = db_dir.parent / f".{db_dir.name}.repartition-{uuid.uuid4().hex[:12]}"
        try:
            init_db_dir(building, count)
            os.chmod(building, db_dir.stat().st_mode & 0o7777)
            done = _build(db_dir, building, count)
            exchange(building, db_dir)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        fsync_dir(db_dir.parent)
    finally:
        lock.release()
    shutil.rmtree(building)  # the old store, now
    return done


def _build(db_dir: Path, building: Path, count: int) -> Repartitioned:
    """Fill the empty partitions in ``building`` with the state of ``db_dir``, and check them."""
    with RecoveryStore.inspect(db_dir) as store:
        resume = store.checked_plan().epoch
        history = store.executions()
        conns = [sqlite3.connect(building / f"part-{j}.sqlite3", isolation_level=None)
                 for j in range(count)]
        try:
            for conn in conns:
                conn.execute("BEGIN IMMEDIATE")
                _write_history(conn, history, resume)
            chunks: dict[tuple[int, str], int] = {}  # (new partition, step) -> blobs so far
            keys = 0
            for index in by_size(range(store.part_count), store.paths.__getitem__,
                                 "repartitioning"):
                live = live_states(store, index, resume)
                for step_id in sorted(live):
                    states = live.pop(step_id)
                    keys += len(states)
                    shares = [states] if count == 1 else split_dict(states, count)
                    for j, share in enumerate(shares):
                        if not share:
                            continue
                        entries = [(k, orjson.dumps(v)) for k, v in share.items()]
                        first = chunks.get((j, step_id), 0)
                        rows = [(resume - 1, step_id, c.chunk + first, c.key_count, c.blob)
                                for c in change_sets(step_id, entries)]
                        chunks[j, step_id] = first + len(rows)
                        conns[j].executemany(
                            "INSERT INTO changesets VALUES (?, 'base', ?, 0, ?, ?, ?)", rows
                        )
            for conn in conns:
                conn.execute("COMMIT")
        finally:
            for conn in conns:
                conn.close()
    with RecoveryStore.inspect(building) as new:
        check = new.plan()
    if check.problem is not None or check.epoch != resume:
        raise RecoveryError(  # a bug, not a user error: say so, and change nothing
            f"repartitioning {db_dir} built a store resuming at {check.epoch} instead of "
            f"{resume} ({check.problem}); nothing was changed"
        )
    return Repartitioned(store.part_count, count, keys, resume)


def _write_history(conn: sqlite3.Connection, history: list[Execution], resume: int) -> None:
    """Executions, the last one's frontiers at ``resume``, and the GC horizon before it."""
    conn.executemany(
        "INSERT INTO executions VALUES (?, ?, ?, ?)",
        [(e.execution, e.worker_count, e.resume_epoch, e.started_at) for e in history],
    )
    if history:
        last = history[-1]
        conn.executemany(
            "INSERT INTO frontiers VALUES (?, ?, ?)",
            [(last.execution, w, resume) for w in range(last.worker_count)],
        )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'gc_horizon'", (max(resume - 1, 0),))


def _siblings(db_dir: Path) -> list[Path]:
    """What killed repartitions of ``db_dir`` left beside it."""
    return sorted(db_dir.parent.glob(f".{db_dir.name}.repartition-*"))


def _exchanger() -> Callable[[Path, Path], None]:
    """The system's atomic exchange of two paths, or a ``RecoveryError`` saying there is none."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
        at_fdcwd, rename_exchange = -100, 2

        def call(a: bytes, b: bytes) -> int:
            return int(libc.renameat2(at_fdcwd, a, at_fdcwd, b, rename_exchange))
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
        rename_swap = 2

        def call(a: bytes, b: bytes) -> int:
            return int(libc.renamex_np(a, b, rename_swap))
    else:
        raise RecoveryError(
            "repartition needs to exchange two directories in one step (Linux renameat2 or "
            "macOS renamex_np), which this system lacks; nothing was changed"
        )

    def exchange(a: Path, b: Path) -> None:
        if call(os.fsencode(a), os.fsencode(b)) != 0:
            err = ctypes.get_errno()
            raise RecoveryError(
                f"cannot exchange {a} and {b} atomically ({os.strerror(err)}); "
                "nothing was changed"
            )

    return exchange


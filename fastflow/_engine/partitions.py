"""A recovery directory's partition files: create, find, validate, lock and connect.

Why a module of its own: whether a directory holds a usable, complete and consistent set
of partitions is a question about files, answered before any state is read; the store
(``store.py``) builds on it. Standard library only.

On-disk format (``SCHEMA_VERSION`` 1). A recovery directory holds ``part-0.sqlite3`` ..
``part-{N-1}.sqlite3``; each one is a SQLite database (``PRAGMA application_id`` =
``APPLICATION_ID``) with these tables:

- ``meta(key, value)``: ``schema_version``, ``partition_index``, ``partition_count``,
  ``init_id`` (uuid4 hex shared by the set), ``created_at`` (ISO 8601, UTC) and
  ``gc_horizon`` (see ``store.py``).
- ``executions(execution, worker_count, resume_epoch, started_at)``: one row per run.
- ``frontiers(execution, worker_index, epoch)``: every epoch below ``epoch`` of that worker
  is committed in this partition.
- ``snapshots(step_id, state_key, epoch, blob)``, ``WITHOUT ROWID``, primary key
  ``(step_id, state_key, epoch)``, indexed on ``epoch``. A NULL blob is a tombstone: the key
  was discarded in that epoch. Blobs are in the snapshot format of docs/snapshot-format.md,
  whose version the schema version covers.

Durability: partitions run in WAL mode with ``synchronous=NORMAL`` by default. A committed
epoch survives a crash or kill of the process; after a power loss or OS crash the latest
epochs may be rolled back (never corrupted), and resume then simply starts earlier, which
the min-frontier rule and the GC backup window absorb. ``synchronous="FULL"`` fsyncs every
commit for those who need more.

Locking: a running execution holds ``flock(LOCK_EX)`` on ``part-0.sqlite3`` itself (no lock
file), so a second execution fails fast with ``StoreLockedError``. flock is advisory and is
inherited by forked children; on NFS it maps to byte-range locks and may clash with SQLite.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "CorruptPartitionError",
    "InconsistentPartitionsError",
    "MissingPartitionsError",
    "NoPartitionsError",
    "PartitionsExistError",
    "RecoveryError",
    "StoreLockedError",
    "init_db_dir",
]

SCHEMA_VERSION = 1
"""Version of the partition layout; bumped on any incompatible change."""

APPLICATION_ID = 0x66666C77
"""SQLite ``application_id`` of a partition ("fflw"), so tools like ``file`` can tell."""

_PART_RE = re.compile(r"part-(0|[1-9][0-9]*)\.sqlite3")
_SIDE_FILES = ("-wal", "-shm", "-journal")
_TABLES = ("meta", "executions", "frontiers", "snapshots")

_SCHEMA = (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value)",
    "CREATE TABLE executions(execution INTEGER PRIMARY KEY, worker_count INTEGER NOT NULL,"
    " resume_epoch INTEGER NOT NULL, started_at TEXT NOT NULL)",
    "CREATE TABLE frontiers(execution INTEGER, worker_index INTEGER, epoch INTEGER NOT NULL,"
    " PRIMARY KEY (execution, worker_index))",
    "CREATE TABLE snapshots(step_id TEXT NOT NULL, state_key TEXT NOT NULL,"
    " epoch INTEGER NOT NULL, blob BLOB, PRIMARY KEY (step_id, state_key, epoch)) WITHOUT ROWID",
    "CREATE INDEX snapshots_by_epoch ON snapshots(epoch)",
)


class RecoveryError(Exception):
    """Base: the recovery store cannot be used as asked."""


class NoPartitionsError(RecoveryError, FileNotFoundError):
    """The recovery directory is missing or holds no ``part-*.sqlite3``: never a fresh start."""


class MissingPartitionsError(RecoveryError, FileNotFoundError):
    """Some partitions of the set are absent, so some keys' state would be lost."""


class InconsistentPartitionsError(RecoveryError, ValueError):
    """Partitions come from different inits or points in time; no consistent resume exists."""


class CorruptPartitionError(RecoveryError, ValueError):
    """A partition file is not a readable fastflow partition; the file is left untouched."""


class StoreLockedError(RecoveryError, RuntimeError):
    """Another execution holds the recovery directory; two writers would corrupt the resume."""


class PartitionsExistError(RecoveryError, FileExistsError):
    """``init_db_dir`` would overwrite existing partitions (their state) without ``force``."""


@dataclass(frozen=True)
class PartitionMeta:
    index: int
    count: int
    init_id: str
    created_at: str


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _part_path(db_dir: Path, index: int) -> Path:
    return db_dir / f"part-{index}.sqlite3"


def _init_hint(db_dir: Path) -> str:
    return f"create partitions with `fastflow init-recovery {db_dir} N` (N of them)"


def find_parts(db_dir: Path) -> dict[int, Path]:
    if db_dir.exists() and not db_dir.is_dir():
        raise NoPartitionsError(f"recovery directory {db_dir} is a file, not a directory")
    if not db_dir.is_dir():
        raise NoPartitionsError(f"recovery directory {db_dir} does not exist; {_init_hint(db_dir)}")
    found = {}
    for path in db_dir.iterdir():
        match = _PART_RE.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    if not found:
        raise NoPartitionsError(
            f"no recovery partitions (part-*.sqlite3) in {db_dir}; {_init_hint(db_dir)}"
        )
    return dict(sorted(found.items()))


def _remove_with_side_files(path: Path) -> None:
    for suffix in ("", *_SIDE_FILES):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


_held_guard = threading.Lock()
_held: set[tuple[int, int]] = set()


class DirLock:
    """``flock(LOCK_EX)`` on part-0, plus an in-process registry.

    Why the registry: a second flock from this process would fail correctly, but closing
    that second descriptor would drop the POSIX locks SQLite holds on the same file here.
    """

    def __init__(self, part0: Path) -> None:
        stat = os.stat(part0)
        self._key = (stat.st_dev, stat.st_ino)
        message = (
            f"recovery directory {part0.parent} is in use by another running execution "
            f"(it holds the lock on {part0.name}); stop that execution first, "
            "or use another directory"
        )
        with _held_guard:
            if self._key in _held:
                raise StoreLockedError(message)
            fd = os.open(part0, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise StoreLockedError(message) from None
                raise
            _held.add(self._key)
        self._fd: int | None = fd

    def release(self) -> None:
        with _held_guard:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                _held.discard(self._key)


def connect_ro(path: Path) -> sqlite3.Connection:
    """Open read-only without ever writing; a WAL-mode copy with no -wal is read as immutable."""
    with open(path, "rb") as file:  # also surfaces PermissionError plainly
        header = file.read(100)
    immutable = len(header) == 100 and header[18] == 2 and not Path(f"{path}-wal").exists()
    uri = path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def _corrupt(path: Path, reason: str) -> CorruptPartitionError:
    return CorruptPartitionError(
        f"{path} is not a usable fastflow recovery partition: {reason}. The file was left "
        "untouched; restore it from a backup or re-create the store with "
        "`fastflow init-recovery --force`"
    )


def read_meta(path: Path) -> PartitionMeta:
    try:
        conn = connect_ro(path)
    except sqlite3.Error as exc:
        raise _corrupt(path, f"SQLite cannot open it ({exc})") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, f"not a SQLite database ({exc})") from None
    finally:
        conn.close()
    if app_id != APPLICATION_ID or "meta" not in tables:
        raise _corrupt(path, "it is not a fastflow recovery partition")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise _corrupt(
            path, f"it has schema version {version!r}; this fastflow reads {SCHEMA_VERSION}"
        )
    missing = [t for t in _TABLES if t not in tables]
    if missing:
        raise _corrupt(path, f"tables {', '.join(missing)} are missing")
    index, count, init_id = (
        meta.get("partition_index"),
        meta.get("partition_count"),
        meta.get("init_id"),
    )
    if not (
        isinstance(index, int)
        and isinstance(count, int)
        and isinstance(init_id, str)
        and 0 <= index < count
    ):
        raise _corrupt(path, "its partition index, count or init id is invalid")
    return PartitionMeta(index, count, init_id, str(meta.get("created_at", "")))


def check_set(db_dir: Path, parts: dict[int, Path], metas: dict[int, PartitionMeta]) -> int:
    """Return the partition count after checking the files form one complete set."""
    for index, meta in metas.items():
        if meta.index != index:
            raise InconsistentPartitionsError(
                f"{parts[index]} holds partition {meta.index}, not {index}; partition files "
                "must keep the names `fastflow init-recovery` gave them"
            )
    by_init: dict[str, list[str]] = {}
    by_count: dict[int, list[str]] = {}
    for index, meta in metas.items():
        by_init.setdefault(meta.init_id, []).append(parts[index].name)
        by_count.setdefault(meta.count, []).append(parts[index].name)
    restore = "restore all partitions from the same backup"
    if len(by_init) > 1:
        groups = "; ".join(f"{', '.join(n)} (init {i})" for i, n in by_init.items())
        raise InconsistentPartitionsError(
            f"partitions in {db_dir} come from different `fastflow init-recovery` runs: "
            f"{groups}; {restore}"
        )
    if len(by_count) > 1:
        groups = "; ".join(f"{', '.join(n)} say {c}" for c, n in by_count.items())
        raise InconsistentPartitionsError(
            f"partitions in {db_dir} disagree on the partition count: {groups}; {restore}"
        )
    (count,) = by_count
    missing = [i for i in range(count) if i not in parts]
    if missing:
        names = ", ".join(_part_path(db_dir, i).name for i in missing)
        raise MissingPartitionsError(
            f"recovery partitions missing in {db_dir}: {names} (indices "
            f"{', '.join(map(str, missing))} of {count}); their keys' state would be lost. "
            f"Put them back ({restore}), or start over with "
            f"`fastflow init-recovery --force {db_dir} {count}`"
        )
    return count


def connect_rw(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA cache_size=-16384")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _create_partition(path: Path, index: int, count: int, init_id: str, created: str) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # never overwrite
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        with transaction(conn):
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("partition_index", index),
                    ("partition_count", count),
                    ("init_id", init_id),
                    ("created_at", created),
                    ("gc_horizon", 0),
                ],
            )
    finally:
        conn.close()


def init_db_dir(db_dir: Path | str, count: int, *, force: bool = False) -> list[Path]:
    """Create ``db_dir`` (parents too) and its ``count`` empty partitions; return their paths.

    Why a separate step: the partition count fixes where keys live, so it is chosen once,
    on purpose. Existing ``part-*.sqlite3`` files are refused (``PartitionsExistError``,
    nothing touched) unless ``force``, which first deletes them and their -wal/-shm files,
    but never under a running execution (``StoreLockedError``). Afterwards the directory
    holds only the partition files (no journals or WAL files).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"partition count must be an integer >= 1, got {count!r}")
    db_dir = Path(db_dir)
    db_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(db_dir.glob("part-*.sqlite3"))
    if existing:
        if not force:
            raise PartitionsExistError(
                f"{db_dir} already holds recovery partitions: "
                f"{', '.join(p.name for p in existing)}; nothing was changed. Resume from them, "
                "or pass --force to delete them and their state"
            )
        part0 = _part_path(db_dir, 0)
        lock = DirLock(part0) if part0.exists() else None
        try:
            for path in existing:
                _remove_with_side_files(path)
        finally:
            if lock is not None:
                lock.release()
    init_id, created = uuid.uuid4().hex, now_iso()
    paths: list[Path] = []
    try:
        for index in range(count):
            path = _part_path(db_dir, index)
            _create_partition(path, index, count, init_id, created)
            paths.append(path)
    except BaseException:
        for path in [*paths, _part_path(db_dir, len(paths))]:
            if path not in existing:
                _remove_with_side_files(path)
        raise
    return paths



def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

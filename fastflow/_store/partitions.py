"""A recovery directory's partition files: create, find, validate, lock and connect.

Why a module of its own: whether a directory holds a usable, complete and consistent set
of partitions is a question about files, answered before any state is read; the store
(``store.py``) builds on it. Standard library only.

On-disk format (``SCHEMA_VERSION`` 2; docs/snapshot-format.md is the full description). A
recovery directory holds ``part-0.sqlite3`` .. ``part-{N-1}.sqlite3``; each one is a SQLite
database (``PRAGMA application_id`` = ``APPLICATION_ID``) with these tables:

- ``meta(key, value)``: ``schema_version``, ``partition_index``, ``partition_count``,
  ``init_id`` (uuid4 hex shared by the set), ``created_at`` (ISO 8601, UTC) and
  ``gc_horizon`` (see ``store.py``).
- ``executions(execution, worker_count, resume_epoch, started_at)``: one row per run.
- ``frontiers(execution, worker_index, epoch)``: every epoch below ``epoch`` of that worker
  is committed in this partition.
- ``changesets(epoch, kind, step_id, writer, chunk, key_count, blob)``: what a step's keys
  of this partition became in an epoch, as a few large blobs: a ``delta`` holds the keys
  one writer (worker) changed in ``epoch``, a ``base`` every live key as of the end of
  ``epoch``. Blobs are change sets in the format of docs/snapshot-format.md.

Format 1 (fastflow 0.1: one ``snapshots`` row per key and epoch) is converted by
``upgrade.py`` (``fastflow recovery upgrade``); opening it otherwise is refused.

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
import shutil
import sqlite3
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fastflow._store.errors import (
    CorruptPartitionError,
    FormatVersionError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    PartitionsExistError,
    StoreAccessError,
    StoreLockedError,
    StoreNotWritableError,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "init_db_dir"]  # the errors: _store/errors.py

SCHEMA_VERSION = 2
"""Version of the partition layout; bumped on any incompatible change."""

UPGRADABLE_VERSIONS = (1,)
"""Older layouts that ``fastflow recovery upgrade`` converts to ``SCHEMA_VERSION``."""

MAX_PARTITIONS = 4096
"""Most partitions a store may have: each is a file, opened by every run."""

APPLICATION_ID = 0x66666C77
"""SQLite ``application_id`` of a partition ("fflw"), so tools like ``file`` can tell."""

PART_RE = re.compile(r"part-(0|[1-9][0-9]*)\.sqlite3")
"""The name of a partition file; the group is its index."""
SIDE_FILES = ("-wal", "-shm", "-journal")
"""Suffixes of the files SQLite keeps beside a partition."""
_INIT_DIR_PREFIX = ".init-"
_TABLES = ("meta", "executions", "frontiers", "changesets")

CHANGESETS_TABLE = (
    "CREATE TABLE changesets(epoch INTEGER NOT NULL,"
    " kind TEXT NOT NULL CHECK (kind IN ('base', 'delta')), step_id TEXT NOT NULL,"
    " writer INTEGER NOT NULL, chunk INTEGER NOT NULL, key_count INTEGER NOT NULL,"
    " blob BLOB NOT NULL, PRIMARY KEY (epoch, kind, step_id, writer, chunk))"
)
_SCHEMA = (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value)",
    "CREATE TABLE executions(execution INTEGER PRIMARY KEY, worker_count INTEGER NOT NULL,"
    " resume_epoch INTEGER NOT NULL, started_at TEXT NOT NULL)",
    "CREATE TABLE frontiers(execution INTEGER, worker_index INTEGER, epoch INTEGER NOT NULL,"
    " PRIMARY KEY (execution, worker_index))",
    CHANGESETS_TABLE,
)


@dataclass(frozen=True)
class PartitionMeta:
    index: int
    count: int
    init_id: str
    created_at: str
    version: int


def names(items: list[str], limit: int = 3) -> str:
    """``a, b, c and 7 more``: names for a one-line message, however many there are."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _part_path(db_dir: Path, index: int) -> Path:
    return db_dir / f"part-{index}.sqlite3"


def _init_hint(db_dir: Path) -> str:
    return f"create partitions with `fastflow init-recovery {db_dir} N` (N of them)"


def find_parts(db_dir: Path) -> dict[int, Path]:
    """The partition files of ``db_dir`` by index, once each is known safe to open.

    Refuses (``StoreAccessError``) a directory or partition that other users can write, a
    partition (or SQLite side file) that is a symlink, and a partition this user cannot read.
    """
    if db_dir.exists() and not db_dir.is_dir():
        raise NoPartitionsError(f"recovery directory {db_dir} is a file, not a directory")
    if not db_dir.is_dir():
        raise NoPartitionsError(f"recovery directory {db_dir} does not exist; {_init_hint(db_dir)}")
    _check_not_shared(db_dir, "recovery directory", os.stat(db_dir))
    found = {}
    try:
        entries = list(db_dir.iterdir())
    except OSError as ex:
        raise _unreadable(db_dir, ex) from None
    for path in entries:
        match = PART_RE.fullmatch(path.name)
        if match:
            _check_part_file(path)
            found[int(match.group(1))] = path
        elif path.name.startswith(_INIT_DIR_PREFIX):
            raise InconsistentPartitionsError(
                f"`fastflow init-recovery` of {db_dir} was interrupted (it left {path.name}); "
                f"nothing in it was ever committed: run `fastflow init-recovery --force "
                f"{db_dir} N` again"
            )
    if not found:
        raise NoPartitionsError(
            f"no recovery partitions (part-*.sqlite3) in {db_dir}; {_init_hint(db_dir)}"
        )
    return dict(sorted(found.items()))


PRIVATE_DIR_MODE = 0o700
"""Mode of a store directory fastflow creates (and of a backup's)."""
PRIVATE_FILE_MODE = 0o600
"""Mode of a partition fastflow creates; SQLite gives its -wal, -shm and -journal the same."""


def _unreadable(path: Path, ex: OSError) -> StoreAccessError:
    return StoreAccessError(
        f"cannot read {path}: {ex.strerror or ex}; fix its permissions or run as the store's "
        "owner. Nothing was changed"
    )


def _check_not_shared(path: Path, what: str, info: os.stat_result) -> None:
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StoreAccessError(
            f"{what} {path} is writable by other users (mode {stat.filemode(info.st_mode)}), "
            "who could swap or edit its state: make it private (`chmod go-w`) first. "
            "Nothing was changed"
        )


def _check_part_file(path: Path) -> None:
    """Refuse a partition that is a symlink, writable by others or unreadable."""
    for side in (path, *(Path(f"{path}{suffix}") for suffix in SIDE_FILES)):
        try:
            info = os.lstat(side)
        except FileNotFoundError:
            continue
        except OSError as ex:
            raise _unreadable(side, ex) from None
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(side)
            dangling = "" if side.exists() else ", which does not exist"
            raise StoreAccessError(
                f"{side} is a symbolic link (to {target}{dangling}); fastflow never opens a "
                "partition through a link, which could write to another store: put the file "
                "itself there. Nothing was changed"
            )
        if not stat.S_ISREG(info.st_mode):
            raise StoreAccessError(f"{side} is not a regular file; nothing was changed")
        _check_not_shared(side, "partition", info)
    if not os.access(path, os.R_OK):
        raise _unreadable(path, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))


def make_private_dir(path: Path) -> None:
    """Create directory ``path`` (parents too) private to this user, whatever the umask."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True)
    os.chmod(path, PRIVATE_DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create the empty file ``path`` readable and writable by this user only; never overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask may have taken bits away
    finally:
        os.close(fd)


def _remove_with_side_files(path: Path) -> None:
    for suffix in ("", *SIDE_FILES):
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
    except OSError as exc:
        raise _unreadable(path, exc) from None
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
    if not isinstance(version, int) or version < 1:
        raise _corrupt(path, f"its schema version {version!r} is invalid")
    missing = [t for t in _TABLES if t not in tables]
    if version == SCHEMA_VERSION and missing:
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
    return PartitionMeta(index, count, init_id, str(meta.get("created_at", "")), version)


def check_versions(
    db_dir: Path, parts: dict[int, Path], metas: dict[int, PartitionMeta], accepted: tuple[int, ...]
) -> None:
    """Refuse partitions whose format is not in ``accepted``, saying what to do about it."""
    wrong = {i: m.version for i, m in metas.items() if m.version not in accepted}
    if not wrong:
        return
    newer = sorted(i for i, v in wrong.items() if v > SCHEMA_VERSION)
    if newer:
        raise FormatVersionError(
            f"{db_dir} holds partitions in format {wrong[newer[0]]} "
            f"({names([parts[i].name for i in newer])}), newer than this fastflow reads "
            f"({SCHEMA_VERSION}): run them with a newer fastflow; nothing was changed"
        )
    old = sorted(wrong)
    hint = f"upgrade them with `fastflow recovery upgrade {db_dir}`; nothing was changed"
    if len(old) < len(metas):
        raise FormatVersionError(
            f"{db_dir} holds partitions in format {wrong[old[0]]} "
            f"({names([parts[i].name for i in old])}) beside format {SCHEMA_VERSION}: an upgrade "
            f"was interrupted; {hint}"
        )
    raise FormatVersionError(
        f"{db_dir} holds recovery partitions in format {wrong[old[0]]} (fastflow 0.1); this "
        f"fastflow reads format {SCHEMA_VERSION}: {hint}"
    )


def check_writable(db_dir: Path, parts: dict[int, Path]) -> None:
    """Refuse a store this user cannot write, before anything is opened for writing."""
    blocked = [p.name for p in parts.values() if not os.access(p, os.W_OK)]
    if not os.access(db_dir, os.W_OK | os.X_OK):
        blocked.insert(0, "the directory")
    if blocked:
        raise StoreNotWritableError(
            f"recovery directory {db_dir} is not writable by this user ({names(blocked)} "
            "read-only); a run must write its commits there: fix the permissions or run "
            "as the store's owner"
        )


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
        groups = "; ".join(f"{names(n)} (init {i})" for i, n in by_init.items())
        raise InconsistentPartitionsError(
            f"partitions in {db_dir} come from different `fastflow init-recovery` runs: "
            f"{groups}; {restore}"
        )
    if len(by_count) > 1:
        groups = "; ".join(f"{names(n)} say {c}" for c, n in by_count.items())
        raise InconsistentPartitionsError(
            f"partitions in {db_dir} disagree on the partition count: {groups}; {restore}"
        )
    (count,) = by_count
    missing = [i for i in range(count) if i not in parts]
    if missing:
        raise MissingPartitionsError(
            f"{len(missing)} of {count} recovery partitions missing in {db_dir}: "
            f"{names([_part_path(db_dir, i).name for i in missing])}; their keys' state would "
            "be lost. "
            f"Put them back ({restore}), or start over with "
            f"`fastflow init-recovery --force {db_dir} {count}`"
        )
    return count


def connect_rw(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open for writing; WAL mode is switched on by the first write (``use_wal``).

    Why not here: switching journal modes rewrites the file's header, and a run refused
    after opening (a state it may not decode) must leave the store's bytes as they were.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA cache_size=-16384")
    except BaseException:
        conn.close()
        raise
    return conn


def use_wal(conn: sqlite3.Connection) -> None:
    """Switch a partition to WAL mode, so readers (status, backup) never block its commits."""
    conn.execute("PRAGMA journal_mode=WAL").fetchone()


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
    create_private_file(path)
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
    nothing touched) unless ``force``, which deletes them and their -wal/-shm files, but
    never under a running execution (``StoreLockedError``). The partitions are built in a
    hidden ``.init-*`` directory inside ``db_dir`` and moved into place, ``part-0`` last;
    an init killed half-way leaves that directory behind, which every later open names.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(
            f"partition count must be a whole number from 1 to {MAX_PARTITIONS}, got {count!r}"
        )
    db_dir = Path(db_dir)
    existing = sorted(db_dir.glob("part-*.sqlite3")) if db_dir.is_dir() else []
    if existing and not force:
        raise PartitionsExistError(
            f"{db_dir} already holds recovery partitions: {names([p.name for p in existing])}; "
            "nothing was changed. Resume from them, "
            "or pass --force to delete them and their state"
        )
    if db_dir.is_dir():
        _check_not_shared(db_dir, "recovery directory", os.stat(db_dir))
    else:
        make_private_dir(db_dir)
    building = Path(tempfile.mkdtemp(prefix=_INIT_DIR_PREFIX, dir=db_dir))
    moving = False  # once partitions move in, only a finished move may remove `building`
    try:
        init_id, created = uuid.uuid4().hex, now_iso()
        for index in range(count):
            _create_partition(_part_path(building, index), index, count, init_id, created)
        fsync_dir(building)
        part0 = _part_path(db_dir, 0)
        lock = DirLock(part0) if part0.exists() else None
        try:
            for path in existing:
                _remove_with_side_files(path)
            for leftover in db_dir.glob(f"{_INIT_DIR_PREFIX}*"):
                if leftover != building:
                    shutil.rmtree(leftover, ignore_errors=True)
            moving = True
            for index in reversed(range(count)):
                os.replace(_part_path(building, index), _part_path(db_dir, index))
            fsync_dir(db_dir)
            moving = False
        finally:
            if lock is not None:
                lock.release()
    finally:
        if not moving:  # else it stays, and every open says the init was interrupted
            shutil.rmtree(building, ignore_errors=True)
    return [_part_path(db_dir, index) for index in range(count)]


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (files created, renamed) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

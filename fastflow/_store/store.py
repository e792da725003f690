"""SQLite recovery store: each epoch's changed state as a few change-set blobs.

Why a module of its own: the engine only asks "where do I resume?", "what was the state
then?" and "commit this epoch". Executions, frontiers, change sets, compaction and garbage
collection live here; the partition files themselves (format, validation, locking) in
``partitions.py``. Blobs are opaque here except to compaction, which merges them with plain
orjson (never decoding a state). Standard library and orjson only.

The store is a compacted changelog, per partition:

- **Commit** (epoch ``e``): per step, the keys of this partition that changed in ``e``
  (their new state, or their deletion) are a ``delta`` change set of a few large blobs,
  written with the committing workers' new frontiers ``e + 1`` in one transaction. A
  partition that holds nothing older writes its first change sets as a ``base`` instead:
  with no history they are the complete state.
- **Resume** at epoch ``R``: the newest ``base`` before ``R``, then every ``delta`` after it
  and before ``R`` in epoch order; applying them in that order gives the state as of the
  end of epoch ``R - 1``.
- **Compaction** (after a commit, off the processing thread): once the deltas after the
  newest base outweigh it (bytes), or number more than ``MAX_DELTAS``, they are folded into
  a new base at the last epoch every worker has committed. Resume work and store size thus
  stay within about twice the live state, plus the backup window; deleted keys vanish.
- **GC** (in a commit's transaction, ``gc_before=G``): everything older than the newest base
  at or before ``G`` is deleted; that base's epoch becomes the partition's GC horizon. A
  resume at any epoch above the horizon still finds a base and every delta after it, and a
  set of partitions whose resume epoch is at or below some horizon (partitions restored
  from different backups) is refused instead of being silently resumed wrong.
"""

from __future__ import annotations

import itertools
import logging
import operator
import sqlite3
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson

from fastflow._store.changesets import ChangeSet, merge_change_set
from fastflow._store.errors import InconsistentPartitionsError, RecoveryError, StoreWriteError
from fastflow._store.partitions import (
    SCHEMA_VERSION,
    DirLock,
    PartitionMeta,
    check_set,
    check_versions,
    check_writable,
    connect_ro,
    connect_rw,
    find_parts,
    names,
    now_iso,
    read_meta,
    transaction,
    use_wal,
)

MAX_DELTAS = 1000
"""Delta change sets after a base that trigger compaction whatever their size."""

CHUNK_KEYS = 65536
"""Most keys in one change-set blob: bounds a blob's size and the memory to read it."""

log = logging.getLogger("fastflow.recovery")


@dataclass(frozen=True)
class ExecutionStart:
    """Where a new execution starts: the engine replays input from ``epoch``."""

    execution: int
    """Number of the execution now starting (0 for the first one)."""
    epoch: int
    """Epoch the new execution starts at (1 on a fresh store)."""


@dataclass(frozen=True)
class ResumePlan:
    """What a resume now would do, computed from the executions and frontiers alone."""

    execution: int
    """Number the next execution gets."""
    epoch: int
    """Epoch it resumes at: the lowest frontier of the last execution."""
    frontiers: tuple[int, ...]
    """Frontier of each worker (by index) of the last execution, lowest over partitions."""
    problem: str | None
    """Why a resume would be refused, if it would."""


@dataclass(frozen=True)
class Execution:
    """One past or running execution, so an operator can see the resume history."""

    execution: int
    worker_count: int
    resume_epoch: int
    started_at: str


# Rows to apply for a resume at :r, in order: the newest base before it, then later deltas.
_APPLY_SQL = """
SELECT epoch, kind, step_id, key_count, blob FROM changesets
WHERE epoch < :r AND epoch >= :b AND (kind = 'delta' OR epoch = :b)
ORDER BY epoch, kind, step_id, writer, chunk
"""
_NEWEST_BASE_SQL = "SELECT max(epoch) FROM changesets WHERE kind = 'base' AND epoch <= ?"


class _Partition:
    """An open partition file and the GC horizon it has reached."""

    def __init__(self, index: int, path: Path, conn: sqlite3.Connection) -> None:
        self.index = index
        self.path = path
        self.conn = conn
        self.gc_horizon = horizon_of(conn)
        self.written = False
        """Whether this open wrote to it (and switched it to WAL mode)."""


class RecoveryStore:
    """An open set of recovery partitions; one writer at a time per directory.

    Why: the engine resumes and commits epochs through this object only. ``open``
    validates everything read-only first (a refused store is never written to), then
    locks the directory; ``inspect`` opens read-only, for status and export. ``commit``
    and ``compact`` may run on another thread than the one that opened the store, one
    call at a time.
    """

    db_dir: Path
    """The recovery directory."""
    part_count: int
    """Number of partitions; fixed at ``init_db_dir``."""
    paths: list[Path]
    """Partition files, by index."""
    init_id: str
    """Id shared by the partitions of one ``init_db_dir``."""
    created_at: str
    """When ``init_db_dir`` made the partitions (ISO 8601, UTC)."""

    def __init__(
        self, db_dir: Path, meta: PartitionMeta, parts: list[_Partition], lock: DirLock | None
    ) -> None:
        """Use ``open`` or ``inspect``: they validate the files first."""
        self.db_dir = db_dir
        self.part_count = len(parts)
        self.paths = [p.path for p in parts]
        self.init_id = meta.init_id
        self.created_at = meta.created_at
        self._parts = parts
        self._lock = lock
        self._closed = False
        self._execution: int | None = None
        self._worker_count = 0
        self._resume_epoch = 0

    @classmethod
    def open(cls, db_dir: Path | str) -> RecoveryStore:
        """Validate the partitions in ``db_dir`` and lock it for one execution.

        Why so strict: a resume from a partial, mixed or too old set would silently lose or
        corrupt state. Raises ``NoPartitionsError``, ``MissingPartitionsError``,
        ``CorruptPartitionError``, ``InconsistentPartitionsError``, ``FormatVersionError``,
        ``StoreNotWritableError`` or ``StoreLockedError``; a refused open writes nothing.
        """
        db_dir = Path(db_dir)
        with cls.inspect(db_dir) as looking:
            looking.checked_plan()
        files = find_parts(db_dir)
        check_writable(db_dir, files)
        lock = DirLock(files[0])
        try:
            return cls._connect(db_dir, files, connect=lambda path: connect_rw(path, "NORMAL"),
                                lock=lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def inspect(cls, db_dir: Path | str, accepted: tuple[int, ...] = (SCHEMA_VERSION,)) -> (
        RecoveryStore
    ):
        """Open ``db_dir`` read-only, without locking it: never writes, even while a run does.

        ``accepted`` are the formats to open (the upgrade also opens older ones).
        """
        db_dir = Path(db_dir)
        return cls._connect(db_dir, find_parts(db_dir), connect=connect_ro, lock=None,
                            accepted=accepted)

    @classmethod
    def _connect(
        cls,
        db_dir: Path,
        files: dict[int, Path],
        *,
        connect: Callable[[Path], sqlite3.Connection],
        lock: DirLock | None,
        accepted: tuple[int, ...] = (SCHEMA_VERSION,),
    ) -> RecoveryStore:
        metas = {index: read_meta(path) for index, path in files.items()}
        check_versions(db_dir, files, metas, accepted)
        count = check_set(db_dir, files, metas)
        parts: list[_Partition] = []
        try:
            for index in range(count):
                path = files[index]
                parts.append(_Partition(index, path, connect(path)))
        except BaseException:
            for part in parts:
                part.conn.close()
            raise
        return cls(db_dir, metas[0], parts, lock)

    def __enter__(self) -> RecoveryStore:
        """Close on leaving the block, so the lock never outlives its user."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store (see ``close``)."""
        self.close()

    def __del__(self) -> None:
        """Release the lock if the owner forgot to close."""
        try:
            self.close()
        except Exception:  # noqa: S110 - best effort at garbage collection
            pass

    def close(self) -> None:
        """Checkpoint, close every partition and release the lock; idempotent.

        Why the checkpoint and the switch back to rollback journaling: a stopped store is
        then just its ``part-*.sqlite3`` files, safe to copy as a backup.
        """
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            for part in self._parts:
                try:
                    if part.written:
                        part.conn.execute("PRAGMA busy_timeout=1000")
                        part.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                        part.conn.execute("PRAGMA journal_mode=DELETE").fetchall()
                except sqlite3.Error:
                    pass  # a reader holds the file, or the disk is full: the -wal stays
                finally:
                    part.conn.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    # Reading.

    def plan(self) -> ResumePlan:
        """Compute what a resume now would do, reading only."""
        self._check_open()
        seen = []  # per partition: (it, last execution, lowest frontier, frontiers)
        for part in self._parts:
            conn = part.conn
            (last,) = conn.execute("SELECT max(execution) FROM executions").fetchone()
            fronts = dict(
                conn.execute(
                    "SELECT worker_index, epoch FROM frontiers WHERE execution = ?", (last,)
                )
            )
            low = min(fronts.values(), default=1)
            if last is not None and not fronts:
                (low,) = conn.execute(
                    "SELECT resume_epoch FROM executions WHERE execution = ?", (last,)
                ).fetchone()
            seen.append((part, last, low, fronts))
        epoch = min(low for _, _, low, _ in seen)
        last_execution = max((last for _, last, *_ in seen if last is not None), default=None)
        frontiers: dict[int, int] = {}
        for _, last, _, fronts in seen:
            if last == last_execution:
                for worker, front in fronts.items():
                    frontiers[worker] = min(front, frontiers.get(worker, front))
        problem = None
        collected = [p for p in self._parts if p.gc_horizon >= epoch]
        if collected:
            limiting = next(p for p, _, low, _ in seen if low == epoch)
            problem = (
                f"cannot resume {self.db_dir}: {limiting.path.name} can only resume from "
                f"epoch {epoch}, but {len(collected)} partition(s) ("
                + names([f"{p.path.name} up to epoch {p.gc_horizon}" for p in collected])
                + ") already garbage-collected state that resume needs: the partitions come "
                "from different points in time. Restore all partitions from the same backup"
            )
        return ResumePlan(
            execution=0 if last_execution is None else last_execution + 1,
            epoch=epoch,
            frontiers=tuple(frontiers[w] for w in sorted(frontiers)),
            problem=problem,
        )

    def checked_plan(self) -> ResumePlan:
        """:meth:`plan`, refusing with ``InconsistentPartitionsError`` a set that cannot resume.

        The one check before anything reads or writes a store's state (runs and tools).
        """
        plan = self.plan()
        if plan.problem is not None:
            raise InconsistentPartitionsError(plan.problem)
        return plan

    def executions(self) -> list[Execution]:
        """Every execution recorded in any partition, oldest first."""
        found: dict[int, Execution] = {}
        for part in self._parts:
            for row in part.conn.execute(
                "SELECT execution, worker_count, resume_epoch, started_at FROM executions"
            ):
                found.setdefault(row[0], Execution(*row))
        return [found[n] for n in sorted(found)]

    def changes_to_apply(
        self, index: int, before_epoch: int
    ) -> Generator[tuple[int, str, str, int, bytes], None, None]:
        """``(epoch, kind, step_id, key_count, blob)`` of partition ``index`` in apply order.

        Why: applying them in order (each blob's set, then its deletions) gives the state of
        this partition's keys as of the end of epoch ``before_epoch - 1``.
        """
        self._check_open()
        conn = self._parts[index].conn
        (base,) = conn.execute(_NEWEST_BASE_SQL, (before_epoch - 1,)).fetchone()
        params = {"r": before_epoch, "b": 0 if base is None else base}
        yield from conn.execute(_APPLY_SQL, params)

    def load_changes(self, before_epoch: int) -> Iterator[tuple[str, bytes]]:
        """Yield ``(step_id, blob)`` of every partition in apply order: the whole restore.

        A step spread over several partitions comes from each, with disjoint keys.
        """
        for index in range(self.part_count):
            for _, _, step_id, _, blob in self.changes_to_apply(index, before_epoch):
                yield step_id, blob

    def stored_change_sets(self, index: int) -> list[tuple[str, int, int]]:
        """``(step_id, change sets, bytes)`` kept in partition ``index``, backup window included."""
        return self._parts[index].conn.execute(
            "SELECT step_id, count(*), sum(length(blob)) FROM changesets GROUP BY step_id"
        ).fetchall()

    def partition_stats(self, index: int) -> tuple[int, int]:
        """``(bytes on disk, GC horizon)`` of partition ``index``."""
        part = self._parts[index]
        size = sum(_file_size(Path(f"{part.path}{suffix}")) for suffix in ("", "-wal"))
        return size, part.gc_horizon

    # Writing.

    def start_execution(self, worker_count: int) -> ExecutionStart:
        """Record a new execution of ``worker_count`` workers and return where it resumes.

        Why here: the resume epoch, the cleanup of a crashed half-commit (change sets at or
        after the resume epoch are deleted) and the new frontiers must agree in every
        partition.
        """
        self._check_open()
        if self._execution is not None:
            raise RecoveryError("start_execution was already called on this store")
        if isinstance(worker_count, bool) or operator.index(worker_count) < 1:
            raise ValueError(f"worker_count must be >= 1, got {worker_count!r}")
        plan = self.checked_plan()
        started = now_iso()
        for part in self._parts:
            with self._writing(part, f"starting execution {plan.execution}") as conn:
                conn.execute("DELETE FROM changesets WHERE epoch >= ?", (plan.epoch,))
                conn.execute(
                    "INSERT OR REPLACE INTO executions VALUES (?, ?, ?, ?)",
                    (plan.execution, worker_count, plan.epoch, started),
                )
                conn.executemany(
                    "INSERT OR REPLACE INTO frontiers VALUES (?, ?, ?)",
                    [(plan.execution, w, plan.epoch) for w in range(worker_count)],
                )
        self._execution = plan.execution
        self._worker_count = worker_count
        self._resume_epoch = plan.epoch
        return ExecutionStart(execution=plan.execution, epoch=plan.epoch)

    def commit(
        self,
        epoch: int,
        workers: Iterable[int],
        changes: Sequence[Iterable[ChangeSet]],
        gc_before: int | None,
    ) -> None:
        """Durably record ``epoch``'s change sets and advance the frontiers of ``workers``.

        ``changes[i]`` are partition ``i``'s change sets (an iterator is consumed inside the
        partition's transaction, so an import streams them). Why one transaction per partition:
        a partition then holds an epoch's change sets and the frontiers that cover them, or
        neither. ``gc_before`` (None = no GC) collects what only resumes at or below it
        need (see the module docstring), capped below the lowest frontier so that a resume
        always stays possible.
        """
        self._check_started()
        epoch = operator.index(epoch)
        if epoch < self._resume_epoch:
            raise ValueError(
                f"cannot commit epoch {epoch}: this execution resumed at {self._resume_epoch}"
            )
        workers = list(workers)
        for worker in workers:
            if not 0 <= worker < self._worker_count:
                raise ValueError(f"worker index {worker} out of range({self._worker_count})")
        if len(changes) != self.part_count:
            raise ValueError(f"expected change sets for {self.part_count} partitions")
        for part, sets in zip(self._parts, changes, strict=True):
            self._commit_partition(part, epoch, workers, sets, gc_before)

    def _commit_partition(
        self,
        part: _Partition,
        epoch: int,
        workers: list[int],
        sets: Iterable[ChangeSet],
        gc_before: int | None,
    ) -> None:
        """Commit to one partition; tests call it alone to simulate a crash between them."""
        horizon = None
        with self._writing(part, f"committing epoch {epoch}") as conn:
            conn.executemany(
                "UPDATE frontiers SET epoch = max(epoch, ?)"
                " WHERE execution = ? AND worker_index = ?",
                [(epoch + 1, self._execution, worker) for worker in workers],
            )
            rows = iter(sets)
            first = next(rows, None)
            if first is not None:
                kind = "base" if self._complete_from(conn, epoch) else "delta"
                conn.executemany(
                    f"INSERT OR REPLACE INTO changesets"
                    f" VALUES ({epoch:d}, '{kind}', ?, ?, ?, ?, ?)",
                    itertools.chain([first], rows),
                )
            if gc_before is not None:
                horizon = self._collect(part, gc_before)
        if horizon is not None:
            part.gc_horizon = horizon
            log.info("collected partition %d of %s: epochs before %d are gone", part.index,
                     self.db_dir, horizon)

    def _complete_from(self, conn: sqlite3.Connection, epoch: int) -> bool:
        """Whether change sets of ``epoch`` are complete state: a base, not a delta.

        True when the partition holds nothing older and every worker has committed every
        epoch before this one (a lagging worker may still write older keys).
        """
        if conn.execute("SELECT 1 FROM changesets WHERE epoch < ? LIMIT 1", (epoch,)).fetchone():
            return False
        (low,) = conn.execute(
            "SELECT min(epoch) FROM frontiers WHERE execution = ?", (self._execution,)
        ).fetchone()
        return bool(low >= epoch)

    def _collect(self, part: _Partition, gc_before: int) -> int | None:
        """GC inside the commit's transaction; return the new horizon if it moved."""
        conn = part.conn
        (low,) = conn.execute(
            "SELECT min(epoch) FROM frontiers WHERE execution = ?", (self._execution,)
        ).fetchone()
        g = min(operator.index(gc_before), low - 1)
        (base,) = conn.execute(_NEWEST_BASE_SQL, (g,)).fetchone()
        if base is None or base <= part.gc_horizon:
            return None
        conn.execute("DELETE FROM changesets WHERE epoch < ?", (base,))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'gc_horizon'", (base,))
        return int(base)

    def compact(self, index: int) -> bool:
        """Fold partition ``index``'s deltas into a new base if they outgrew the last one.

        Returns whether it did. The new base is at the last epoch every worker of this
        execution has committed here; the deltas folded stay until GC passes the base, so
        the backup window keeps working.
        """
        self._check_started()
        part = self._parts[index]
        conn = part.conn
        (low,) = conn.execute(
            "SELECT min(epoch) FROM frontiers WHERE execution = ?", (self._execution,)
        ).fetchone()
        at = low - 1
        (base,) = conn.execute(_NEWEST_BASE_SQL, (at,)).fetchone()
        base = 0 if base is None else base
        base_bytes, delta_bytes, deltas = conn.execute(
            "SELECT coalesce(sum(length(blob)) FILTER (WHERE kind = 'base' AND epoch = :b), 0),"
            " coalesce(sum(length(blob)) FILTER (WHERE kind = 'delta'), 0),"
            " count(*) FILTER (WHERE kind = 'delta')"
            " FROM changesets WHERE epoch >= :b AND epoch <= :at",
            {"b": base, "at": at},
        ).fetchone()
        if not deltas or not (delta_bytes > base_bytes or deltas > MAX_DELTAS):
            return False
        merged: dict[str, dict[str, object]] = {}
        for _, _, step_id, _, blob in self.changes_to_apply(index, at + 1):
            changes = orjson.loads(blob)
            merge_change_set(merged, step_id, changes["set"], changes["del"])
        rows = [
            (step_id, chunk, len(keys), _dump_base({k: live[k] for k in keys}))
            for step_id, live in merged.items()
            for chunk, keys in enumerate(_chunks(list(live)) or [[]])
        ]
        with self._writing(part, f"compacting up to epoch {at}") as conn:
            conn.execute("DELETE FROM changesets WHERE epoch = ?", (at,))
            conn.executemany(
                f"INSERT INTO changesets VALUES ({at:d}, 'base', ?, 0, ?, ?, ?)", rows
            )
        return True

    def _writing(self, part: _Partition, what: str) -> AbstractContextManager[sqlite3.Connection]:
        self._check_open()
        if self._lock is None:
            raise RecoveryError(f"the recovery store {self.db_dir} was opened read-only")
        if not part.written:
            use_wal(part.conn)
            part.written = True
        return _writing(self.db_dir, part, what)

    def _check_open(self) -> None:
        if self._closed:
            raise RecoveryError(f"the recovery store {self.db_dir} is closed")

    def _check_started(self) -> None:
        self._check_open()
        if self._execution is None:
            raise RecoveryError("call start_execution first")


@contextmanager
def _writing(db_dir: Path, part: _Partition, what: str) -> Iterator[sqlite3.Connection]:
    """One write transaction on a partition; a failed write names the store and what it did.

    Why: a disk-full or I/O error deep in SQLite must reach the user as one line saying
    which store could not be written, and that the last committed epoch stands.
    """
    try:
        with transaction(part.conn) as conn:
            yield conn
    except sqlite3.Error as ex:
        raise StoreWriteError(
            f"cannot write the recovery store {db_dir} ({part.path.name}) while {what}: {ex}; "
            "nothing of it was kept, the store holds its last committed epoch"
        ) from ex


def _dump_base(states: dict[str, object]) -> bytes:
    return orjson.dumps({"set": states, "del": []})


def _chunks(keys: list[str]) -> list[list[str]]:
    return [keys[i : i + CHUNK_KEYS] for i in range(0, len(keys), CHUNK_KEYS)]


def horizon_of(conn: sqlite3.Connection) -> int:
    """The GC horizon a partition records: resumes at or before it are impossible."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'gc_horizon'").fetchone()
    return int(row[0]) if row else 0


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

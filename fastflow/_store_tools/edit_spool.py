"""The checked lines of a ``fastflow recovery import``, kept on disk until they are applied.

Why a spool: an import of millions of lines must neither hold them all in memory nor touch
the store before every line is checked. ``EditSpool`` is a private temporary SQLite file
(in ``TMPDIR``) keyed by ``(partition, step, key)``: it finds duplicate keys without a set
in memory, and hands each partition's edits back sorted by step, a blob's worth at a time,
so memory stays bounded by one change set (``CHUNK_KEYS`` states) whatever the file's size.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import orjson

from fastflow._store.changesets import ChangeSet
from fastflow._store.store import CHUNK_KEYS

_CACHE_KIB = 32768
"""SQLite page cache of the spool: bounds its memory, keeps inserts fast."""


class DuplicateKeyError(Exception):
    """The spool already holds this step and key; ``line`` is where it was first given."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class EditSpool:
    """Checked edits ``(step, key, typed JSON or None to delete)`` by partition, on disk."""

    set_keys: int
    """States set so far."""
    deleted_keys: int
    """Deletions so far."""

    def __init__(self) -> None:
        """Create the spool in a new private temporary directory; use it in a ``with``."""
        self._dir = tempfile.TemporaryDirectory(prefix="fastflow-import-")
        self._conn = sqlite3.connect(Path(self._dir.name) / "spool.sqlite3",
                                     isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=OFF")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._conn.execute(
            "CREATE TABLE edits(part INTEGER, step TEXT, key TEXT, line INTEGER, state BLOB,"
            " PRIMARY KEY (part, step, key)) WITHOUT ROWID"
        )
        self._conn.execute("BEGIN")
        self.set_keys = self.deleted_keys = 0

    def __enter__(self) -> EditSpool:
        """Remove the spool on leaving the block."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close and delete the spool."""
        self._conn.close()
        self._dir.cleanup()

    def add(self, part: int, step: str, key: str, line: int, state: bytes | None) -> None:
        """Keep one checked edit; ``DuplicateKeyError`` if its key was given before."""
        try:
            self._conn.execute("INSERT INTO edits VALUES (?, ?, ?, ?, ?)",
                               (part, step, key, line, state))
        except sqlite3.IntegrityError:
            (first,) = self._conn.execute(
                "SELECT line FROM edits WHERE part = ? AND step = ? AND key = ?",
                (part, step, key),
            ).fetchone()
            raise DuplicateKeyError(first) from None
        if state is None:
            self.deleted_keys += 1
        else:
            self.set_keys += 1

    def change_sets(self, part: int, keep_deletions: bool) -> Iterator[ChangeSet]:
        """Partition ``part``'s edits as one writer's change sets, step by step.

        ``keep_deletions=False`` drops deletions (a partition holding no state has nothing
        to delete, and its first change sets are a base).
        """
        rows = self._conn.execute(
            "SELECT step, key, state FROM edits WHERE part = ?"
            + ("" if keep_deletions else " AND state IS NOT NULL")
            + " ORDER BY step, key",
            (part,),
        )
        for step, entries in itertools.groupby(rows, key=lambda row: str(row[0])):
            chunk = 0
            while batch := list(itertools.islice(entries, CHUNK_KEYS)):
                yield change_set(step, chunk, [(key, state) for _, key, state in batch])
                chunk += 1


def change_set(step_id: str, chunk: int, entries: list[tuple[str, bytes | None]]) -> ChangeSet:
    """One blob of writer 0: ``(key, typed JSON or None to delete)``, spliced, not re-parsed."""
    members = b",".join(orjson.dumps(k) + b":" + v for k, v in entries if v is not None)
    dels = orjson.dumps([k for k, v in entries if v is None])
    blob = b'{"set":{' + members + b'},"del":' + dels + b"}"
    return ChangeSet(step_id, 0, chunk, len(entries), blob)

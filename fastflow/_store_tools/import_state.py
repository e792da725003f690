"""``fastflow recovery import``: edited states become one new committed epoch.

Why an execution of its own: the store already knows how to make a set of changes durable in
every partition or in none. The import is an offline execution of one worker: it starts like
a run (``start_execution``: a new ``executions`` row, its frontiers at the resume epoch ``R``,
leftovers of a crashed run at or after ``R`` removed), then commits the edit as epoch ``R``
(deltas, written with that worker's frontier ``R + 1`` in one transaction per partition). The
next run resumes at ``R + 1`` with the edited state. Killed between two partitions' commits,
the lowest frontier is still ``R``: the next run resumes there and deletes the half-written
edit first, so the store holds the old state or the new one, never a mix.

Why validate everything first: a file with a typo on line 90,000 must not leave 89,999 edits
behind. Every line is parsed and its state decoded (``codec.decode``, as a resume would)
before anything is written; a bad line raises ``BadImportError`` naming its number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fastflow._cext.codec import decode
from fastflow._store.changesets import ChangeSet
from fastflow._store.errors import BadImportError
from fastflow._store.partitions import names
from fastflow._store.reader import partition_of, step_ids
from fastflow._store.store import CHUNK_KEYS, RecoveryStore

Edits = dict[str, dict[str, bytes | None]]
"""Step id -> key -> new state as typed JSON bytes (``None``: delete the key)."""

_MEMBERS = ("step", "key", "state")


@dataclass(frozen=True)
class Imported:
    """What ``import_state`` committed."""

    set_keys: int
    deleted_keys: int
    epoch: int | None
    """Epoch the edit was committed as (None: the file held no lines, nothing was written)."""
    resume_epoch: int
    """Epoch the next run resumes at."""


def import_state(
    db_dir: Path | str, lines: Iterable[bytes], *, allow_pickle: bool = False
) -> Imported:
    """Validate every line of ``lines``, then commit them to ``db_dir`` as one epoch.

    Refuses (nothing written) what ``RecoveryStore.open`` refuses (a running flow holds the
    store: ``StoreLockedError``), and any bad line (``BadImportError``).
    """
    with RecoveryStore.open(db_dir) as store:
        edits = read_edits(lines, set(step_ids(store)), store.part_count, allow_pickle)
        if not any(edits):
            return Imported(0, 0, None, store.plan().epoch)
        start = store.start_execution(worker_count=1)
        changes = []
        for index, part_edits in enumerate(edits):
            empty = not _holds_state(store, index, start.epoch)
            changes.append([
                change_set
                for step_id, entries in sorted(part_edits.items())
                for change_set in change_sets(
                    step_id,
                    # A partition with no state has nothing to delete (and writes a base).
                    [(k, v) for k, v in entries.items() if not (empty and v is None)],
                )
            ])
        store.commit(start.epoch, [0], changes, gc_before=None)
        deleted = sum(v is None for part in edits for e in part.values() for v in e.values())
        total = sum(len(e) for part in edits for e in part.values())
        return Imported(total - deleted, deleted, start.epoch, start.epoch + 1)


def _holds_state(store: RecoveryStore, index: int, epoch: int) -> bool:
    rows = store.changes_to_apply(index, epoch)
    try:
        return next(rows, None) is not None
    finally:
        rows.close()


def read_edits(
    lines: Iterable[bytes], known: set[str], part_count: int, allow_pickle: bool
) -> list[Edits]:
    """Parse and check every line; return the edits by partition (``BadImportError`` if bad)."""
    edits: list[Edits] = [{} for _ in range(part_count)]
    first_seen: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        step_id, key, state = _parse(number, line, known)
        if (step_id, key) in first_seen:
            raise BadImportError(
                f"line {number}: key {key!r} of step {step_id!r} is already on line "
                f"{first_seen[step_id, key]}; give each key once"
            )
        first_seen[step_id, key] = number
        blob = None if state is None else _checked_blob(number, state, allow_pickle)
        edits[partition_of(key, part_count)].setdefault(step_id, {})[key] = blob
    return edits


def _parse(number: int, line: bytes, known: set[str]) -> tuple[str, str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as ex:
        raise BadImportError(f"line {number}: not valid JSON ({ex})") from None
    if type(obj) is not dict or sorted(obj) != sorted(_MEMBERS):
        raise BadImportError(
            f"line {number}: expected an object with exactly the members step, key and state "
            "(as `fastflow recovery export` writes them)"
        )
    step_id, key = obj["step"], obj["key"]
    if type(step_id) is not str or type(key) is not str:
        raise BadImportError(f"line {number}: step and key must be strings")
    if step_id not in known:
        raise BadImportError(
            f"line {number}: unknown step {step_id!r}; the store holds state of "
            f"{names(sorted(known), limit=10) or 'no step'}"
        )
    return step_id, key, obj["state"]


def _checked_blob(number: int, state: Any, allow_pickle: bool) -> bytes:
    """The state's typed JSON, once the codec has decoded it as a resume will."""
    blob = orjson.dumps(state)
    if not allow_pickle and b'"$pickle"' in blob and _has_pickle(state):
        raise BadImportError(
            f"line {number}: the state holds a pickled object ({{\"$pickle\": ...}}); checking "
            "it would unpickle it, which can run any code: pass --allow-pickle if you trust "
            "this file"
        )
    try:
        decode(blob)
    except Exception as ex:
        raise BadImportError(
            f"line {number}: the state cannot be decoded: {type(ex).__name__}: {ex}"
        ) from None
    return blob


def _has_pickle(value: Any) -> bool:
    """Whether ``codec.decode`` would unpickle something in this typed JSON.

    Mirrors the decoder: an object with one ``$`` member is a tag, and the members of a
    ``$dict`` tag's object are keys, not tags.
    """
    if type(value) is list:
        return any(_has_pickle(item) for item in value)
    if type(value) is not dict:
        return False
    if len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "$pickle":
            return True
        if tag == "$dict" and type(payload) is dict:
            return any(_has_pickle(item) for item in payload.values())
        if tag.startswith("$"):
            return _has_pickle(payload)
    return any(_has_pickle(item) for item in value.values())


def change_sets(
    step_id: str, entries: Sequence[tuple[str, bytes | None]]
) -> list[ChangeSet]:
    """One writer's change sets of ``step_id``: ``(key, typed JSON or None to delete)``.

    The encoded states are spliced in, not parsed again; blobs hold ``CHUNK_KEYS`` keys at most.
    """
    sets = []
    for chunk, start in enumerate(range(0, len(entries), CHUNK_KEYS)):
        part = entries[start : start + CHUNK_KEYS]
        members = b",".join(orjson.dumps(k) + b":" + v for k, v in part if v is not None)
        dels = orjson.dumps([k for k, v in part if v is None])
        blob = b'{"set":{' + members + b'},"del":' + dels + b"}"
        sets.append(ChangeSet(step_id, 0, chunk, len(part), blob))
    return sets

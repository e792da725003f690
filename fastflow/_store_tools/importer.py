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

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from fastflow._cext.codec import UnimportedModuleError, decode
from fastflow._store.changesets import ChangeSet
from fastflow._store.errors import BadImportError, InconsistentPartitionsError, RecoveryError
from fastflow._store.partitions import names
from fastflow._store.pickles import FASTFLOW_STATE_MODULES, safe_loads
from fastflow._store.reader import partition_of, step_ids
from fastflow._store.store import CHUNK_KEYS, RecoveryStore
from fastflow._store_tools.edit_spool import DuplicateKeyError, EditSpool, change_set

_MEMBERS = ("step", "key", "state")

MAX_LINE_BYTES = 256 * 1024 * 1024
"""Longest line an import reads (one key's state): bounds the memory of reading a line."""


class Lines(Protocol):
    """What an import reads from: lines, each at most ``size`` bytes (a binary file)."""

    def readline(self, size: int = -1, /) -> bytes:
        """The next line (with its newline), at most ``size`` bytes; ``b""`` at the end."""
        ...


@dataclass(frozen=True)
class Imported:
    """What ``import_state`` committed."""

    set_keys: int
    deleted_keys: int
    epoch: int | None
    """Epoch the edit was committed as (None: the file held no lines, nothing was written)."""
    resume_epoch: int
    """Epoch the next run resumes at."""


@dataclass(frozen=True)
class Trust:
    """What checking a line may run: unpickling, importing the modules it names."""

    pickles: bool = False
    """Unpickle ``$pickle`` states with plain pickle (``--allow-pickle``)."""
    imports: bool = False
    """Import the module a ``$dataclass`` names (``--allow-import``)."""


def import_state(db_dir: Path | str, source: Lines, trust: Trust | None = None) -> Imported:
    """Check every line of ``source``, then commit them to ``db_dir`` as one epoch.

    The store is only read until every line has passed (a refused import leaves its bytes
    untouched); the lines wait in an ``EditSpool``, so memory does not grow with the file.
    Refuses what ``RecoveryStore.open`` refuses (a running flow holds the store:
    ``StoreLockedError``) and any bad line (``BadImportError``).
    """
    trust = Trust() if trust is None else trust
    with RecoveryStore.inspect(db_dir) as looking:
        plan = looking.plan()
        known, part_count = set(step_ids(looking)), looking.part_count
    if plan.problem is not None:
        raise InconsistentPartitionsError(plan.problem)
    with EditSpool() as spool:
        read_edits(source, known, part_count, trust, spool)
        if not spool.set_keys + spool.deleted_keys:
            return Imported(0, 0, None, plan.epoch)
        with RecoveryStore.open(db_dir) as store:
            if store.part_count != part_count:
                raise RecoveryError(
                    f"{db_dir} was repartitioned while the import was being checked; "
                    "nothing was changed: import again"
                )
            start = store.start_execution(worker_count=1)
            # A partition with no state has nothing to delete (and writes a base).
            changes = [spool.change_sets(index, _holds_state(store, index, start.epoch))
                       for index in range(part_count)]
            store.commit(start.epoch, [0], changes, gc_before=None)
        return Imported(spool.set_keys, spool.deleted_keys, start.epoch, start.epoch + 1)


def _holds_state(store: RecoveryStore, index: int, epoch: int) -> bool:
    rows = store.changes_to_apply(index, epoch)
    try:
        return next(rows, None) is not None
    finally:
        rows.close()


def read_edits(
    source: Lines, known: set[str], part_count: int, trust: Trust, spool: EditSpool
) -> None:
    """Parse and check every line into ``spool`` (``BadImportError`` at the first bad one)."""
    if not trust.imports:  # fastflow's own state classes are checkable without the flag
        for module in FASTFLOW_STATE_MODULES:
            importlib.import_module(module)
    number = 0
    while line := source.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise BadImportError(
                f"line {number}: longer than {MAX_LINE_BYTES // 2**20} MiB; one key's state "
                "must be smaller"
            )
        if not line.strip():
            continue
        step_id, key, state = _parse(number, line, known)
        blob = None if state is None else _checked_blob(number, state, trust)
        try:
            spool.add(partition_of(key, part_count), step_id, key, number, blob)
        except DuplicateKeyError as ex:
            raise BadImportError(
                f"line {number}: key {_shown(key)} of step {_shown(step_id)} is already on line "
                f"{ex.line}; give each key once"
            ) from None


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
            f"line {number}: unknown step {_shown(step_id)}; the store holds state of "
            f"{names(sorted(known), limit=10) or 'no step'}"
        )
    return step_id, key, obj["state"]


def _shown(name: str, limit: int = 100) -> str:
    """``repr`` of a step or key from the file, cut short: an error stays one readable line."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name)} characters)"


def _checked_blob(number: int, state: Any, trust: Trust) -> bytes:
    """The state's typed JSON, once the codec has decoded it as a resume will."""
    blob = orjson.dumps(state)
    if not trust.pickles and b'"$pickle"' in blob and _has_pickle(state):
        raise BadImportError(
            f"line {number}: the state holds a pickled object ({{\"$pickle\": ...}}); checking "
            "it would unpickle it, which can run any code: pass --allow-pickle if you trust "
            "this file"
        )
    try:
        decode(blob, None if trust.pickles else safe_loads, trust.imports)
    except UnimportedModuleError as ex:
        raise BadImportError(
            f"line {number}: the state names class {ex.path!r}; checking it would import "
            f"module {ex.module_name!r}, which runs its code: pass --allow-import if you "
            "trust this file"
        ) from None
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
    return [
        change_set(step_id, chunk, list(entries[start : start + CHUNK_KEYS]))
        for chunk, start in enumerate(range(0, len(entries), CHUNK_KEYS))
    ]

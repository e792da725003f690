"""Between nodes and the store: an epoch's changes to change sets, and change sets to state.

Why a module of its own: what the engine keeps in memory (per-key states, dirty keys) and
what the store keeps on disk (change-set blobs per step, partition and worker) meet here,
in two functions: ``encode_epoch`` runs on the processing thread at the epoch boundary and
is the consistent cut (once encoded, later changes cannot leak in); ``load_resume`` turns
the store's change sets back into each step's state.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastflow import _hooks as hooks
from fastflow._cext.codec import (
    StateDecodeError,
    UnencodableError,
    UnimportedModuleError,
    decode_changes,
    encode_changes,
)
from fastflow._cext.routing import split_dict
from fastflow._store.changesets import ChangeSet, merge_change_set
from fastflow._store.errors import RecoveryError
from fastflow._store.pickles import RefusedClassError, safe_loads
from fastflow._store.store import CHUNK_KEYS, RecoveryStore
from fastflow.errors import FastflowRuntimeError

ResumeState = dict[str, dict[str, Any]]
"""Step id -> state key -> state (for sources and sinks, partition key -> snapshot)."""


class Recorded(Protocol):
    """A node whose state is snapshotted: a stateful step, a source or a sink."""

    step_id: str

    def changes(self) -> tuple[dict[str, Any], dict[str, bool]]:
        """``(values, changed)`` since the last call; see ``codec.encode_changes``."""
        ...


def encode_epoch(
    recorded: Iterable[tuple[int, Recorded]], part_count: int
) -> list[list[ChangeSet]]:
    """Encode what every ``(worker index, node)`` changed, split by recovery partition.

    A key goes to partition ``stable_hash(key) % part_count`` (docs/ARCHITECTURE.md).
    """
    changes: list[list[ChangeSet]] = [[] for _ in range(part_count)]
    for worker, node in recorded:
        values, changed = node.changes()
        if not changed:
            continue
        by_part = [changed] if part_count == 1 else split_dict(changed, part_count)
        for sets, part_changed in zip(changes, by_part, strict=True):
            if not part_changed:
                continue
            try:
                blobs = encode_changes(values, part_changed, CHUNK_KEYS)
            except UnencodableError as ex:
                raise FastflowRuntimeError(
                    f"cannot snapshot the state of step {node.step_id!r} for key {ex.key!r}: {ex}"
                ) from ex
            sets.extend(
                ChangeSet(node.step_id, worker, chunk, count, blob)
                for chunk, (count, blob) in enumerate(blobs)
            )
    return changes


@dataclass(frozen=True)
class Restore:
    """Which stored states a resume decodes, and how far it trusts the store.

    Why: a store is a file someone else may have written; by default only the flow's own
    steps are decoded, pickles only rebuild the classes ``store_pickles`` allows, and a
    ``$dataclass`` never imports a module the flow has not imported.
    """

    steps: frozenset[str] | None = None
    """Step ids of the flow; states of other steps are skipped undecoded (None: decode all)."""
    trust_pickles: bool = False
    """Decode with plain ``pickle.loads`` and import modules (``--trust-store-pickles``)."""


class UntrustedStateError(RecoveryError, ValueError):
    """A stored state cannot be rebuilt safely (or at all); nothing was changed."""


def load_resume(store: RecoveryStore, epoch: int, restore: Restore | None = None) -> ResumeState:
    """Every step's state as of the end of epoch ``epoch - 1``, decoded.

    Raises ``UntrustedStateError`` (one line naming the step, key and class) for a state
    ``restore`` does not allow to be rebuilt; it only reads, so call it before writing.
    """
    restore = Restore() if restore is None else restore
    unpickle = None if restore.trust_pickles else safe_loads
    resume: ResumeState = {}
    for step_id, blob in store.load_changes(epoch):
        if restore.steps is not None and step_id not in restore.steps:
            continue
        try:
            sets, deleted = decode_changes(blob, unpickle, restore.trust_pickles)
        except StateDecodeError as ex:
            raise _untrusted(store.db_dir, step_id, ex) from None
        merge_change_set(resume, step_id, sets, deleted)
    return resume


def resume_state(
    store: RecoveryStore, epoch: int, restore: Restore | None = None
) -> ResumeState:
    """:func:`load_resume` for a run starting at ``epoch``, told to the run's hooks."""
    started = time.perf_counter()
    resume = load_resume(store, epoch, restore)
    keys = sum(len(states) for states in resume.values())
    hooks.current().resumed(epoch, keys, time.perf_counter() - started)
    return resume


def _untrusted(db_dir: Path, step_id: str, ex: StateDecodeError) -> UntrustedStateError:
    where = f"cannot resume from {db_dir}: the state of step {step_id!r} for key {ex.key!r}"
    unchanged = "nothing was changed"
    trust = "if you trust this store, run with --trust-store-pickles"
    if isinstance(ex.error, RefusedClassError):
        return UntrustedStateError(
            f"{where} is a pickle naming {ex.error.name!r}, which is neither a class of the "
            f"flow's own modules nor a standard value type; {unchanged} ({trust}: "
            "docs/recovery.md, Trust model)"
        )
    if isinstance(ex.error, UnimportedModuleError):
        return UntrustedStateError(
            f"{where} names class {ex.error.path!r}, whose module the flow has not imported; "
            f"{unchanged} (import it in the flow file, or {trust})"
        )
    return UntrustedStateError(
        f"{where} cannot be decoded: {type(ex.error).__name__}: {ex.error}; {unchanged}"
    )


def read_state(db_dir: Path | str, restore: Restore | None = None) -> ResumeState:
    """The state a run on ``db_dir`` would resume with, read without locking or writing."""
    with RecoveryStore.inspect(db_dir) as store:
        return load_resume(store, store.checked_plan().epoch, restore)

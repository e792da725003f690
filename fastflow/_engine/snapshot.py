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
from pathlib import Path
from typing import Any, Protocol

from fastflow._cext.codec import UnencodableError, decode_changes, encode_changes
from fastflow._cext.routing import split_dict
from fastflow._engine import hooks
from fastflow._engine.partitions import InconsistentPartitionsError
from fastflow._engine.store import CHUNK_KEYS, ChangeSet, RecoveryStore
from fastflow.errors import FastflowRuntimeError

Resume = dict[str, dict[str, Any]]
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


def load_resume(store: RecoveryStore, epoch: int) -> Resume:
    """Every step's state as of the end of epoch ``epoch - 1``, decoded."""
    resume: Resume = {}
    for step_id, blob in store.load_changes(epoch):
        sets, deleted = decode_changes(blob)
        states = resume.get(step_id)
        if states is None:
            resume[step_id] = states = sets
        else:
            states.update(sets)
        for key in deleted:
            states.pop(key, None)
    return resume


def resume_state(store: RecoveryStore, epoch: int) -> Resume:
    """:func:`load_resume` for a run starting at ``epoch``, told to the run's hooks."""
    started = time.perf_counter()
    resume = load_resume(store, epoch)
    keys = sum(len(states) for states in resume.values())
    hooks.current().resumed(epoch, keys, time.perf_counter() - started)
    return resume


def read_state(db_dir: Path | str) -> Resume:
    """The state a run on ``db_dir`` would resume with, read without locking or writing."""
    with RecoveryStore.inspect(db_dir) as store:
        plan = store.plan()
        if plan.problem is not None:
            raise InconsistentPartitionsError(plan.problem)
        return load_resume(store, plan.epoch)

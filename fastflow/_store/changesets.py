"""Change sets: what a step's keys became in an epoch, and the one way to apply them.

A change set holds ``{"set": {key: state}, "del": [keys]}`` (docs/snapshot-format.md).
Every reader of a store (resume, compaction, status, export, get, repartition) merges a
partition's change sets in the store's apply order with :func:`merge_change_set`, so they
all agree on what "the state as of an epoch" is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, TypeVar

V = TypeVar("V")


class ChangeSet(NamedTuple):
    """One blob of a step's changes in a partition, as the engine hands it to ``commit``."""

    step_id: str
    writer: int
    """Index of the worker whose keys these are (workers own disjoint keys)."""
    chunk: int
    """Number of this blob among the writer's blobs of the step in this epoch."""
    key_count: int
    blob: bytes


def merge_change_set(
    live: dict[str, dict[str, V]], step_id: str, sets: dict[str, V], deleted: Iterable[str]
) -> None:
    """Apply a change set of ``step_id`` to ``live``: its ``set`` overwrites, its ``del`` removes.

    The first change set of a step is taken as it is (no copy): ``sets`` must be fresh.
    """
    states = live.get(step_id)
    if states is None:
        live[step_id] = states = sets
    else:
        states.update(sets)
    for key in deleted:
        states.pop(key, None)

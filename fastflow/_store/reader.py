"""What a store holds as of a resume epoch, read as the change sets hold it (no decoding).

The shared reader of the ``fastflow recovery`` tools (export, get, import, repartition,
status): which epoch can be read, which steps the store knows, and each partition's live
states, merged with plain orjson from the raw typed JSON (``{"$tuple": [...]}``, ...). So
reading never unpickles and needs none of the flow's modules.

Why per partition: keys live in disjoint partitions, so the live state of one partition's
steps is merged (its base, then its deltas in apply order), used and dropped before the
next partition is read. Memory holds one partition's live keys at a time, not the store.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from fastflow._cext.routing import stable_hash
from fastflow._store.changesets import merge_change_set
from fastflow._store.errors import StateQueryError
from fastflow._store.partitions import names
from fastflow._store.store import RecoveryStore

Live = dict[str, dict[str, Any]]
"""Step id -> key -> state as parsed typed JSON (never decoded)."""


def resume_epoch(store: RecoveryStore, epoch: int | None = None) -> int:
    """The resume epoch whose state to read: the next run's, or ``epoch`` if still restorable.

    An older ``epoch`` must lie inside the backup window: above every partition's GC horizon
    (older state is collected) and not after the next run's resume epoch (later epochs are
    not committed by every worker in every partition, so their state is not a consistent cut).
    """
    plan = store.checked_plan()
    if epoch is None:
        return plan.epoch
    horizon = max(store.partition_stats(i)[1] for i in range(store.part_count))
    if not horizon < epoch <= plan.epoch:
        raise StateQueryError(
            f"cannot read {store.db_dir} as of resume epoch {epoch}: it keeps resume epochs "
            f"{horizon + 1} to {plan.epoch} (older ones are garbage-collected; the backup "
            "window `-b` of the run sets how many are kept)"
        )
    return epoch


def step_ids(store: RecoveryStore) -> list[str]:
    """Every step id with change sets in the store (backup window included), sorted."""
    found = {step for i in range(store.part_count) for step, _, _ in store.stored_change_sets(i)}
    return sorted(found)


def check_step(store: RecoveryStore, step_id: str) -> None:
    """Refuse a step id the store holds nothing for, listing those it does."""
    known = step_ids(store)
    if step_id not in known:
        raise StateQueryError(
            f"{store.db_dir} holds no state of step {step_id!r}; its steps are: "
            f"{names(known, limit=10) or 'none'}"
        )


def live_states(
    store: RecoveryStore,
    index: int,
    before_epoch: int,
    step_id: str | None = None,
    key: str | None = None,
) -> Live:
    """Partition ``index``'s live states as of a resume at ``before_epoch``.

    Behind export, get and repartition: each blob merged in the store's apply order.
    With ``step_id`` or ``key``, only blobs that can hold them are parsed (a key's JSON
    string must appear in the blob's bytes), and the result may hold other keys of those blobs.
    """
    live: Live = {}
    needle = None if key is None else orjson.dumps(key)
    with no_gc():
        for _, _, step, _, blob in store.changes_to_apply(index, before_epoch):
            if (step_id is not None and step != step_id) or (
                needle is not None and needle not in blob
            ):
                continue
            changes = orjson.loads(blob)
            merge_change_set(live, step, changes["set"], changes["del"])
    return live


def partition_of(key: str, part_count: int) -> int:
    """The partition a key's state lives in (the store's on-disk rule, docs/ARCHITECTURE.md)."""
    return int(stable_hash(key) % part_count)


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic GC while building millions of JSON containers.

    Why: each allocation burst triggers collections that walk every container built so far,
    which more than doubled the time to parse a large partition. Parsed JSON holds no cycles.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

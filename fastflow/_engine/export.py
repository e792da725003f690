"""``fastflow recovery export`` and ``get``: the state a resume would restore, as JSON lines.

Why the raw typed JSON: a state is shown exactly as the change sets hold it, in the codec's
typed JSON (``{"$tuple": [...]}``, ``{"$datetime": ...}``), merged with plain orjson and never
decoded. So export and get never unpickle (a ``{"$pickle": ...}`` state from a store made
elsewhere is shown in its tagged form, it cannot run code), need none of the flow's modules,
and ``import`` gets back exactly the same values, types included.

Why per partition: keys live in disjoint partitions, so the live state of one partition's
steps is merged (its base, then its deltas in apply order), written out and dropped before
the next partition is read. Memory holds one partition's live keys at a time, not the store.

One line per key: ``{"step": STEP_ID, "key": KEY, "state": TYPED_JSON}``; grouped by
partition, then sorted by step and key (so two exports of the same state are identical).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

from fastflow._cext.routing import stable_hash
from fastflow._engine.partitions import InconsistentPartitionsError, RecoveryError, names
from fastflow._engine.store import CHUNK_KEYS, RecoveryStore
from fastflow._progress import by_size

Live = dict[str, dict[str, Any]]
"""Step id -> key -> state as parsed typed JSON (never decoded)."""


class StateQueryError(RecoveryError, ValueError):
    """The request names a step or epoch the store cannot answer for (bad input)."""


def resume_epoch(store: RecoveryStore, epoch: int | None = None) -> int:
    """The resume epoch whose state to read: the next run's, or ``epoch`` if still restorable.

    An older ``epoch`` must lie inside the backup window: above every partition's GC horizon
    (older state is collected) and not after the next run's resume epoch (later epochs are
    not committed by every worker in every partition, so their state is not a consistent cut).
    """
    plan = store.plan()
    if plan.problem is not None:
        raise InconsistentPartitionsError(plan.problem)
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

    The one merge of change sets behind export, get and repartition: each blob's ``set``
    overwrites, then its ``del`` removes, in the store's apply order. With ``step_id`` or
    ``key``, only blobs that can hold them are parsed (a key's JSON string must appear in
    the blob's bytes), and the result may hold other keys of those blobs.
    """
    live: Live = {}
    needle = None if key is None else orjson.dumps(key)
    with _no_gc():
        for _, _, step, _, blob in store.changes_to_apply(index, before_epoch):
            if (step_id is not None and step != step_id) or (
                needle is not None and needle not in blob
            ):
                continue
            changes = orjson.loads(blob)
            states = live.get(step)
            if states is None:
                live[step] = states = changes["set"]
            else:
                states.update(changes["set"])
            for key in changes["del"]:
                states.pop(key, None)
    return live


def export_lines(
    store: RecoveryStore,
    epoch: int,
    *,
    step_id: str | None = None,
    key: str | None = None,
) -> Iterator[bytes]:
    """Yield the export's lines as a few large ``bytes``, one partition's steps at a time."""
    if step_id is not None:
        check_step(store, step_id)
    indexes = range(store.part_count)
    if key is not None:
        home = partition_of(key, store.part_count)
        indexes = range(home, home + 1)
    dumps = orjson.dumps
    for index in by_size(indexes, store.paths.__getitem__, "exporting"):
        live = live_states(store, index, epoch, step_id, key)
        for step in sorted(live):
            states = live.pop(step)
            head = b'{"step":' + dumps(step) + b',"key":'
            keys = sorted(states) if key is None else [key] if key in states else []
            for start in range(0, len(keys), CHUNK_KEYS):
                with _no_gc():
                    chunk = b"".join(
                        [b"".join((head, dumps(k), b',"state":', dumps(states[k]), b"}\n"))
                         for k in keys[start : start + CHUNK_KEYS]]
                    )
                yield chunk
            del states


def export_state(
    db_dir: Path | str, out: IO[bytes], *, step_id: str | None = None, key: str | None = None,
    epoch: int | None = None,
) -> int:
    """Write the export of ``db_dir`` to ``out``; return the number of lines (keys)."""
    count = 0
    with RecoveryStore.inspect(db_dir) as store:
        at = resume_epoch(store, epoch)
        for chunk in export_lines(store, at, step_id=step_id, key=key):
            out.write(chunk)
            count += chunk.count(b"\n")
    return count


def get_state(db_dir: Path | str, step_id: str, key: str, epoch: int | None = None) -> bytes | None:
    """One key's state as typed JSON (``None``: the key has no state in that step)."""
    with RecoveryStore.inspect(db_dir) as store:
        at = resume_epoch(store, epoch)
        check_step(store, step_id)
        live = live_states(store, partition_of(key, store.part_count), at, step_id, key)
        states = live.get(step_id, {})
        return orjson.dumps(states[key]) if key in states else None


def partition_of(key: str, part_count: int) -> int:
    """The partition a key's state lives in (the store's on-disk rule, docs/ARCHITECTURE.md)."""
    return int(stable_hash(key) % part_count)


@contextmanager
def _no_gc() -> Iterator[None]:
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

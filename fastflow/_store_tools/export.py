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

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

from fastflow._progress import by_size
from fastflow._store.reader import check_step, live_states, no_gc, partition_of, resume_epoch
from fastflow._store.store import CHUNK_KEYS, RecoveryStore


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
                with no_gc():
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

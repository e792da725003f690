"""State TTL: the keys of a stateful step that no item updated for ``ttl`` are discarded.

Why: a flow over an unbounded key space (sessions, devices, users) keeps every key it ever
saw unless its logic discards them; with a TTL the store and the memory stay bounded by the
keys active within ``ttl``. An expired key is discarded as if its logic had returned a
``None`` state: snapshotted as a deletion, so compaction and GC drop it; a later item for it
starts a new state.

Why checked at epoch boundaries, with one clock read: per item, a TTL step only notes which
keys its batch touched (a C-level set update); at the end of each epoch
(``Workers.close_epoch``) those keys are stamped with the current system time and the keys
whose stamp is at least ``ttl`` old are discarded, before the epoch's changes are encoded.
A key thus lives between ``ttl`` and ``ttl`` plus one epoch after the end of the epoch of its
last item. Stamps are kept in an ``OrderedDict`` in stamp order, so finding the expired keys
costs only the keys that expire, never a scan of all live keys. Steps without a TTL do none
of this.

Why the stamps are stored with the state (``Timed``): they must survive a resume. A flow run
periodically (every run ends with its input) or restarted more often than ``ttl`` would
otherwise never expire anything, and a key idle for a week before a crash would be kept for
another ``ttl`` after it. So a TTL step snapshots each key as ``Timed(updated_at, state)``
(the codec stores a dataclass as its fields: ``{"$dataclass": ["fastflow._engine.ttl:Timed",
{"updated_at": ..., "state": ...}]}``), and a resume goes on counting from the stored stamp,
downtime included (system time, as Flink's processing-time TTL). A state stored without a
stamp (the step had no TTL before) counts from the resume; a ``Timed`` state resumed by a
step without TTL is unwrapped (``plain``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Container, Iterable
from datetime import timedelta
from operator import itemgetter
from typing import Any

from fastflow._engine.ttl import Timed


def plain(states: dict[str, Any]) -> dict[str, Any]:
    """``states`` with every ``Timed`` snapshot unwrapped (for a step resumed without TTL)."""
    if not any(type(value) is Timed for value in states.values()):
        return states
    return {k: v.state if type(v) is Timed else v for k, v in states.items()}


_key_of = itemgetter(0)


def keys_of(batch: list[Any]) -> list[Any] | None:
    """The keys of a batch of ``(key, value)`` items (``None`` if an item is not a pair).

    Taken before user code runs: it may change the batch.
    """
    try:
        return list(map(_key_of, batch))
    except Exception:  # the state loop reports the bad item in its own words
        return None


class Expiry:
    """One TTL step's last-update stamps, in stamp order, and the keys touched since."""

    def __init__(self, ttl: timedelta) -> None:
        self._seconds = ttl.total_seconds()
        self._stamps: OrderedDict[str, float] = OrderedDict()
        self.touched: set[str] = set()
        """Keys an item reached since the last ``due``; the node adds to it per batch."""

    def touch(self, keys: Iterable[str]) -> None:
        """Note that items reached ``keys`` in this epoch."""
        self.touched.update(keys)

    def restore(self, states: dict[str, Any], now: float) -> dict[str, Any]:
        """Unwrap resumed snapshots, remembering each key's stamp (``now`` if it has none)."""
        unwrapped: dict[str, Any] = {}
        stamped: list[tuple[float, str]] = []
        for key, value in states.items():
            if type(value) is Timed:
                unwrapped[key] = value.state
                stamped.append((value.updated_at, key))
            else:
                unwrapped[key] = value
                stamped.append((now, key))
        stamped.sort()
        for at, key in stamped:
            self._stamps[key] = at
            self._stamps.move_to_end(key)
        return unwrapped

    def next_due(self) -> float | None:
        """When (Unix time) the oldest stamped key expires; an idle loop wakes for it."""
        for at in self._stamps.values():
            return at + self._seconds
        return None

    def due(self, live: Container[str], now: float) -> list[str]:
        """Stamp the keys touched since the last call with ``now``; return the expired keys.

        ``live`` are the keys with state: a touched key without state (its logic discarded
        it) is forgotten. The caller discards the returned keys.
        """
        stamps = self._stamps
        for key in self.touched:
            if key in live:
                stamps[key] = now
                stamps.move_to_end(key)
            else:
                stamps.pop(key, None)
        self.touched.clear()
        cutoff = now - self._seconds
        expired = []
        while stamps:
            key, at = next(iter(stamps.items()))
            if at > cutoff:
                break
            stamps.popitem(last=False)
            if key in live:
                expired.append(key)
        return expired

    def wrap(self, values: dict[str, Any], changed: Iterable[str]) -> dict[str, Timed]:
        """The snapshots of the changed keys that have a value, each with its stamp."""
        stamps = self._stamps
        now = time.time()  # only for a key stamped by no epoch end yet (none in a run)
        return {k: Timed(stamps.get(k, now), values[k]) for k in changed if k in values}

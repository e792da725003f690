"""The snapshot record of a key of a step with a ``ttl`` (see ``fastflow/_runtime/ttl.py``).

Part of the on-disk format: snapshots name this class as ``fastflow._engine.ttl:Timed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Timed:
    """A TTL step's snapshot of one key: its state and when an item last updated it.

    Part of the on-disk format (by module path and field names): do not rename or move.
    """

    updated_at: float
    """Unix time (seconds) of the end of the epoch of the key's last item."""
    state: Any

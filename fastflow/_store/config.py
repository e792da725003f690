"""How a run uses its recovery store: where it is, and how long old snapshots are kept.

Why here and not in ``fastflow.recovery``: the runtime needs it to open the store, and the
public module re-exports it; defining it in the public module made the runtime import a
module above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path


@dataclass(frozen=True)
class RecoveryConfig:
    """Where a run keeps its recovery partitions, and how long to keep old snapshots.

    ``backup_interval`` (default: none) is how long a superseded snapshot is
    kept, so that a copy of the partitions taken within that window can still
    be resumed from. ``trust_store_pickles`` (``fastflow run --trust-store-pickles``)
    unpickles stored states with plain pickle, which runs whatever code a pickle names:
    only for a store no one else can have written (docs/recovery.md, "Trust model").
    """

    db_dir: Path | str
    backup_interval: timedelta | None = None
    trust_store_pickles: bool = False

    def __post_init__(self) -> None:
        if self.backup_interval is not None and self.backup_interval < timedelta(0):
            raise ValueError("backup_interval must not be negative")

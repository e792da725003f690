"""Durable state: recovery partitions on disk and how a run uses them.

Create the partitions once with ``fastflow init-recovery DB_DIR N`` (or
:func:`init_db_dir`, or ``python -m fastflow.recovery DB_DIR N``), then run
with ``-r DB_DIR`` (or ``recovery_config=RecoveryConfig(DB_DIR)``). At the end
of every epoch the state that changed is committed to the partitions; a new
run on the same directory resumes from the last committed epoch. See
``docs/recovery.md``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import List, Optional, Union

from fastflow._engine.store import (
    CorruptPartitionError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    PartitionsExistError,
    RecoveryError,
    StoreLockedError,
)
from fastflow._engine.store import init_db_dir as _init_db_dir

__all__ = [
    "CorruptPartitionError",
    "InconsistentPartitionsError",
    "MissingPartitionsError",
    "NoPartitionsError",
    "PartitionsExistError",
    "RecoveryConfig",
    "RecoveryError",
    "StoreLockedError",
    "init_db_dir",
]


@dataclass(frozen=True)
class RecoveryConfig:
    """Where a run keeps its recovery partitions, and how long to keep old snapshots.

    ``backup_interval`` (default: none) is how long a superseded snapshot is
    kept, so that a copy of the partitions taken within that window can still
    be resumed from.
    """

    db_dir: Union[Path, str]
    backup_interval: Optional[timedelta] = None

    def __post_init__(self) -> None:
        if self.backup_interval is not None and self.backup_interval < timedelta(0):
            raise ValueError("backup_interval must not be negative")


def init_db_dir(db_dir: Union[Path, str], count: int, *, force: bool = False) -> List[Path]:
    """Create ``count`` empty recovery partitions in ``db_dir`` (created if missing).

    Refuses with :class:`PartitionsExistError` if partitions already exist
    there, unless ``force``; returns the paths created.
    """
    return _init_db_dir(db_dir, count, force=force)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create a set of empty recovery partitions for `fastflow run -r DB_DIR`.",
    )
    parser.add_argument("db_dir", type=Path, help="directory to create the partitions in")
    parser.add_argument("part_count", type=int, help="number of partitions to create")
    parser.add_argument(
        "--force",
        action="store_true",
        help="delete existing partitions (and all their state) first",
    )
    return parser


def main(argv: Optional[List[str]] = None, prog: str = "python -m fastflow.recovery") -> int:
    """Run ``init-recovery``; returns the exit code."""
    args = _parser(prog).parse_args(argv)
    try:
        init_db_dir(args.db_dir, args.part_count, force=args.force)
    except (RecoveryError, ValueError, OSError) as ex:
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

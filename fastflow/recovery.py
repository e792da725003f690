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
from pathlib import Path

from fastflow._stdout import guard_stdout
from fastflow._store.config import RecoveryConfig
from fastflow._store.partitions import init_db_dir as _init_db_dir
from fastflow.errors import (
    CorruptPartitionError,
    FormatVersionError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    PartitionsExistError,
    RecoveryError,
    StoreAccessError,
    StoreLockedError,
    StoreNotWritableError,
    StoreWriteError,
)

__all__ = [
    "CorruptPartitionError",
    "FormatVersionError",
    "InconsistentPartitionsError",
    "MissingPartitionsError",
    "NoPartitionsError",
    "PartitionsExistError",
    "RecoveryConfig",
    "RecoveryError",
    "StoreAccessError",
    "StoreLockedError",
    "StoreNotWritableError",
    "StoreWriteError",
    "init_db_dir",
]


def init_db_dir(db_dir: Path | str, count: int, *, force: bool = False) -> list[Path]:
    """Create ``count`` empty recovery partitions in ``db_dir`` (created if missing).

    Refuses with :class:`PartitionsExistError` if partitions already exist
    there, unless ``force``; returns the paths created.
    """
    return _init_db_dir(db_dir, count, force=force)


INIT_DESCRIPTION = "Create DB_DIR (if missing) and PART_COUNT empty recovery partitions in it."


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``init-recovery`` (shared with ``fastflow init-recovery``)."""
    parser.add_argument("db_dir", metavar="DB_DIR", type=Path, help="directory of the partitions")
    parser.add_argument("part_count", metavar="PART_COUNT", type=int, help="how many partitions")
    parser.add_argument(
        "--force", action="store_true", help="delete existing partitions (and their state) first"
    )


def init_command(args: argparse.Namespace, prog: str) -> int:
    """Carry out a parsed ``init-recovery`` command; returns the exit code."""
    try:
        paths = init_db_dir(args.db_dir, args.part_count, force=args.force)
    except (RecoveryError, ValueError) as ex:
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return 2
    except OSError as ex:
        print(
            f"{prog}: error: cannot create recovery partitions in {args.db_dir}: {ex.strerror}",
            file=sys.stderr,
        )
        return 2
    plural = "" if len(paths) == 1 else "s"
    print(f"created {len(paths)} recovery partition{plural} in {args.db_dir}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m fastflow.recovery") -> int:
    """Parse ``argv`` as ``fastflow init-recovery`` does and run it; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=INIT_DESCRIPTION)
    add_init_arguments(parser)
    args = parser.parse_args(argv)
    return guard_stdout(lambda: init_command(args, prog), prog)


if __name__ == "__main__":
    sys.exit(main())

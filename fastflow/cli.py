"""The ``fastflow`` command: run flows and manage recovery directories.

Imports stay lazy so that ``fastflow --version`` and ``--help`` start fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import fastflow
from fastflow.run import EXIT_BAD_INPUT, add_run_arguments, run_command

PROG = "fastflow"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fast stream processing with durable, resumable state.",
        epilog="Run `fastflow COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"fastflow {fastflow.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", help="run a dataflow", description="Run a dataflow, resuming its state with -r."
    )
    add_run_arguments(run)

    init = commands.add_parser(
        "init-recovery",
        help="create the recovery partitions of a flow",
        description="Create DB_DIR (if missing) and PART_COUNT empty recovery partitions in it.",
    )
    init.add_argument("db_dir", metavar="DB_DIR", type=Path, help="directory of the partitions")
    init.add_argument("part_count", metavar="PART_COUNT", type=int, help="how many partitions")
    init.add_argument(
        "--force", action="store_true", help="delete existing partitions (and their state) first"
    )

    recovery = commands.add_parser(
        "recovery", help="inspect a recovery directory", description="Inspect recovery partitions."
    )
    recovery_commands = recovery.add_subparsers(dest="recovery_command", metavar="COMMAND",
                                                required=True)
    status = recovery_commands.add_parser(
        "status",
        help="show partitions, executions, resume epoch and snapshot sizes",
        description="Show what a recovery directory holds, without changing it.",
    )
    status.add_argument("db_dir", metavar="DB_DIR", type=Path, help="directory of the partitions")
    return parser


def _init_recovery(args: argparse.Namespace) -> int:
    from fastflow.recovery import RecoveryError, init_db_dir

    try:
        paths = init_db_dir(args.db_dir, args.part_count, force=args.force)
    except (RecoveryError, ValueError, OSError) as ex:
        print(f"{PROG} init-recovery: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"created {len(paths)} recovery partition(s) in {args.db_dir}", file=sys.stderr)
    return 0


def _recovery_status(args: argparse.Namespace) -> int:
    from fastflow._engine.status import format_status
    from fastflow._engine.store import RecoveryError, RecoveryStore

    try:
        status = RecoveryStore.inspect(args.db_dir)
    except RecoveryError as ex:
        print(f"{PROG} recovery status: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_status(status))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``fastflow`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        return run_command(args, f"{PROG} run")
    if args.command == "init-recovery":
        return _init_recovery(args)
    return _recovery_status(args)


if __name__ == "__main__":
    sys.exit(main())

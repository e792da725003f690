"""The ``fastflow`` command: run flows and manage recovery directories.

``fastflow run`` is :mod:`fastflow.run` and ``fastflow init-recovery`` is
:mod:`fastflow.recovery` (both also runnable with ``python -m``); this module
only puts them, and ``recovery status``, under one command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import fastflow
from fastflow._pythonpath import add_python_path_argument, extend_sys_path
from fastflow.recovery import INIT_DESCRIPTION, add_init_arguments, init_command
from fastflow.run import EXIT_BAD_INPUT, RUN_HELP, add_run_arguments, run_command
from fastflow.visualize import (
    VISUALIZE_DESCRIPTION,
    add_visualize_arguments,
    visualize_command,
)

PROG = "fastflow"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fast stream processing with durable, resumable state.",
        epilog="Run `fastflow COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"fastflow {fastflow.__version__}")
    add_python_path_argument(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add_run_arguments(commands.add_parser("run", help="run a dataflow", **RUN_HELP))
    add_init_arguments(
        commands.add_parser(
            "init-recovery",
            help="create the recovery partitions of a flow",
            description=INIT_DESCRIPTION,
        )
    )
    recovery = commands.add_parser(
        "recovery", help="inspect or upgrade a recovery directory",
        description="Inspect or upgrade recovery partitions."
    )
    recovery_commands = recovery.add_subparsers(
        dest="recovery_command", metavar="COMMAND", required=True
    )
    status = recovery_commands.add_parser(
        "status",
        help="show partitions, executions, resume epoch and snapshot sizes",
        description="Show what a recovery directory holds (partitions, executions, resume "
        "epoch, per-worker frontiers, snapshot counts and sizes per step), without changing it.",
    )
    status.add_argument("db_dir", metavar="DB_DIR", type=Path, help="directory of the partitions")
    upgrade = recovery_commands.add_parser(
        "upgrade",
        help="convert a store made by fastflow 0.1 (format 1) to the current format",
        description="Convert the recovery partitions in DB_DIR from format 1 (fastflow 0.1) to "
        "the current format, in place, one partition at a time; safe to run again if it was "
        "interrupted. The next run resumes where it would have; older epochs kept for the "
        "backup window are not carried over. Stop the flow using DB_DIR first.",
    )
    upgrade.add_argument("db_dir", metavar="DB_DIR", type=Path, help="directory of the partitions")
    add_visualize_arguments(
        commands.add_parser(
            "visualize", help="print a diagram of a dataflow", description=VISUALIZE_DESCRIPTION
        )
    )
    return parser


def _recovery_status(args: argparse.Namespace) -> int:
    from fastflow._engine.partitions import RecoveryError
    from fastflow._engine.status import format_status, read_status

    try:
        status = read_status(args.db_dir)
    except RecoveryError as ex:
        print(f"{PROG} recovery status: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_status(status))
    return 0


def _recovery_upgrade(args: argparse.Namespace) -> int:
    from fastflow._engine.partitions import SCHEMA_VERSION, RecoveryError
    from fastflow._engine.upgrade import upgrade_store

    try:
        done = upgrade_store(args.db_dir)
    except RecoveryError as ex:
        print(f"{PROG} recovery upgrade: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if done.converted == 0:
        print(f"{args.db_dir} is already in format {SCHEMA_VERSION}; nothing to do")
    else:
        print(
            f"upgraded {done.converted} partition(s) of {args.db_dir} to format "
            f"{SCHEMA_VERSION}; the next run resumes at epoch {done.resume_epoch}"
        )
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``fastflow`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    extend_sys_path(args.python_path)
    if args.command == "run":
        return run_command(args, f"{PROG} run")
    if args.command == "init-recovery":
        return init_command(args, f"{PROG} init-recovery")
    if args.command == "visualize":
        return visualize_command(args, f"{PROG} visualize")
    if args.recovery_command == "upgrade":
        return _recovery_upgrade(args)
    return _recovery_status(args)


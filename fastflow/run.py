"""``fastflow run`` (also ``python -m fastflow.run``): run a flow file from the command line.

Exit codes: 0 when the flow ran to the end, 1 when it raised (its traceback
and a one-line summary go to stderr), 2 on bad usage or bad input (a missing
or broken flow file, an unusable recovery directory): one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path
from typing import List, Optional

__all__ = ["cli_main", "main"]

EXIT_OK, EXIT_FLOW_RAISED, EXIT_BAD_INPUT = 0, 1, 2


def _seconds(text: str) -> timedelta:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return timedelta(seconds=value)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``run`` (shared by ``fastflow run`` and ``python -m fastflow.run``)."""
    env = os.environ.get
    parser.add_argument(
        "import_str",
        metavar="IMPORT_STR",
        help="the flow to run: path/to/flow.py, module, module:variable or "
        'module:factory("arg") (the variable defaults to `flow`)',
    )
    parser.add_argument(
        "-r", "--recovery-directory", type=Path,
        default=env("FASTFLOW_RECOVERY_DIRECTORY"),
        help="directory of recovery partitions (made with `fastflow init-recovery`); "
        "state is snapshotted there every epoch and the run resumes from it "
        "[env FASTFLOW_RECOVERY_DIRECTORY]",
    )
    parser.add_argument(
        "-s", "--snapshot-interval", type=_seconds, metavar="SECONDS",
        default=_seconds(env("FASTFLOW_SNAPSHOT_INTERVAL", "10")),
        help="length of an epoch: how often state is snapshotted (default: 10) "
        "[env FASTFLOW_SNAPSHOT_INTERVAL]",
    )
    parser.add_argument(
        "-b", "--backup-interval", type=_seconds, metavar="SECONDS",
        default=_seconds(env("FASTFLOW_BACKUP_INTERVAL", "0")),
        help="how long superseded snapshots are kept, so a backup copy of the partitions "
        "taken within that time can be resumed from (default: 0) [env FASTFLOW_BACKUP_INTERVAL]",
    )
    parser.add_argument(
        "-w", "--workers-per-process", type=_positive_int, metavar="WORKERS",
        default=_positive_int(env("FASTFLOW_WORKERS_PER_PROCESS", "1")),
        help="workers per process; only 1 is supported so far [env FASTFLOW_WORKERS_PER_PROCESS]",
    )
    parser.add_argument(
        "-p", "--processes", type=_positive_int, metavar="PROCESSES",
        default=_positive_int(env("FASTFLOW_PROCESSES", "1")),
        help="processes to run; only 1 is supported so far [env FASTFLOW_PROCESSES]",
    )


def _fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Carry out a parsed ``run`` command; returns the exit code."""
    from fastflow._locate import FlowImportFailed, FlowNotFound, locate_dataflow
    from fastflow.recovery import RecoveryConfig, RecoveryError

    if args.workers_per_process != 1 or args.processes != 1:
        return _fail(prog, "only one worker in one process is supported so far", EXIT_BAD_INPUT)
    if args.snapshot_interval <= timedelta(0):
        return _fail(prog, "the snapshot interval (-s) must be positive", EXIT_BAD_INPUT)
    try:
        flow = locate_dataflow(args.import_str)
    except FlowNotFound as ex:
        return _fail(prog, str(ex), EXIT_BAD_INPUT)
    except FlowImportFailed as ex:
        traceback.print_exception(ex.__cause__, file=sys.stderr)
        return _fail(prog, str(ex), EXIT_BAD_INPUT)
    recovery = (
        None
        if args.recovery_directory is None
        else RecoveryConfig(args.recovery_directory, args.backup_interval)
    )
    try:
        cli_main(flow, epoch_interval=args.snapshot_interval, recovery_config=recovery)
    except RecoveryError as ex:
        return _fail(prog, str(ex), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        return _fail(prog, "interrupted", 130)
    except Exception as ex:
        traceback.print_exception(ex, file=sys.stderr)
        return _fail(prog, f"the flow raised {type(ex).__name__}: {ex}", EXIT_FLOW_RAISED)
    finally:
        sys.stdout.flush()
    return EXIT_OK


def cli_main(
    flow: "Dataflow",  # noqa: F821 - imported lazily to keep start-up small
    *,
    workers_per_process: int = 1,
    process_id: Optional[int] = None,
    addresses: Optional[List[str]] = None,
    epoch_interval: Optional[timedelta] = None,
    recovery_config: "Optional[RecoveryConfig]" = None,  # noqa: F821
) -> None:
    """Run ``flow`` as the command line would (one worker in this process, for now)."""
    from fastflow.testing import cluster_main

    cluster_main(
        flow,
        addresses or [],
        process_id or 0,
        epoch_interval=epoch_interval,
        recovery_config=recovery_config,
        worker_count_per_proc=workers_per_process,
    )


def main(argv: Optional[List[str]] = None, prog: str = "python -m fastflow.run") -> int:
    """Parse ``argv`` as ``fastflow run`` does and run the flow; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description="Run a fastflow dataflow.")
    add_run_arguments(parser)
    return run_command(parser.parse_args(argv), prog)


if __name__ == "__main__":
    sys.exit(main())

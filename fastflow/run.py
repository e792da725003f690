"""``fastflow run`` (also ``python -m fastflow.run``): run a flow from the command line.

Exit codes: 0 when the flow ran to the end; 1 when it raised (the traceback of
the user's code, then one line naming the failing step, on stderr); 2 on bad
usage or bad input (a flow that cannot be found or built, bad option values,
an unusable recovery directory): one line on stderr, after the user's
traceback only if the user's code raised while the flow was being built;
130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fastflow._stdout import guard_stdout, report_stdout_closed

if TYPE_CHECKING:  # imported lazily at run time, to keep start-up small
    from fastflow._observe.session import ObservedRun
    from fastflow._runtime.execute import RayOptions
    from fastflow.dataflow import Dataflow
    from fastflow.recovery import RecoveryConfig

__all__ = ["RayOptions", "cli_main", "main"]

_log = logging.getLogger("fastflow.run")

EXIT_OK, EXIT_FLOW_RAISED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

RUN_HELP: dict[str, Any] = {
    "description": "Run a dataflow to the end of its input; with -r, snapshot its state "
    "every epoch and resume from the last snapshot.",
    "epilog": "examples:\n"
    "  fastflow run flows/wordcount.py\n"
    "  fastflow run my_pkg.flows:flow\n"
    "  fastflow run 'my_pkg.flows:build(\"config.toml\")'\n"
    "  fastflow init-recovery db 1 && fastflow run flow.py -r db -s 30 -b 180\n",
    "formatter_class": argparse.RawDescriptionHelpFormatter,
}


def _seconds(text: str) -> timedelta:
    """Parse a number of seconds >= 0."""
    try:
        value = timedelta(seconds=float(text))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _positive_seconds(text: str) -> float:
    """Parse a number of seconds > 0."""
    seconds = _seconds(text).total_seconds()
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return seconds


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {least}")
    return value


def _positive_int(text: str) -> int:
    """Parse a whole number >= 1."""
    return _whole_number(text, 1)


def _non_negative_int(text: str) -> int:
    """Parse a whole number >= 0."""
    return _whole_number(text, 0)


class _Option(NamedTuple):
    flags: tuple[str, str]
    metavar: str
    parse: Callable[[str], Any]
    env: str
    default: str | None  # parsed like a value given on the command line
    help: str
    bytewax_env: str | None = None  # Bytewax's name for the variable, honoured too


# Options not given on the command line come from the environment, else the default.
_OPTIONS = {
    "recovery_directory": _Option(
        ("-r", "--recovery-directory"), "DB_DIR", Path, "FASTFLOW_RECOVERY_DIRECTORY", None,
        "directory of recovery partitions (made with `fastflow init-recovery`); state is "
        "snapshotted there every epoch and the run resumes from the last snapshot",
        "BYTEWAX_RECOVERY_DIRECTORY",
    ),
    "snapshot_interval": _Option(
        ("-s", "--snapshot-interval"), "SECONDS", _seconds,
        "FASTFLOW_SNAPSHOT_INTERVAL", "10",
        "length of an epoch: how often state is snapshotted; 0 snapshots at the end of "
        "every round, as often as possible (default: 10)",
        "BYTEWAX_SNAPSHOT_INTERVAL",
    ),
    "backup_interval": _Option(
        ("-b", "--backup-interval"), "SECONDS", _seconds, "FASTFLOW_BACKUP_INTERVAL", "0",
        "how long superseded snapshots are kept, so that a backup copy of the partitions "
        "taken within that time can be resumed from (default: 0)",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL",
    ),
    "workers_per_process": _Option(
        ("-w", "--workers-per-process"), "WORKERS", _positive_int,
        "FASTFLOW_WORKERS_PER_PROCESS", "1",
        "workers in this process, run in turns in one thread; keyed state is spread "
        "over them by key (default: 1)",
        "BYTEWAX_WORKERS_PER_PROCESS",
    ),
    "processes": _Option(
        ("-p", "--processes"), "PROCESSES", _positive_int, "FASTFLOW_PROCESSES", "1",
        "processes to run on this machine, each with its -w workers, so the flow uses "
        "several cores; keyed state is spread over all workers by key; at most what "
        "`ulimit -n` allows, N * (N + 2) + 64 file descriptors (default: 1)",
        "BYTEWAX_PROCESSES",
    ),
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``run`` (for ``fastflow run`` and ``python -m fastflow.run``)."""
    parser.add_argument(
        "import_str",
        metavar="IMPORT_STR",
        help="the flow to run: path/to/flow.py, module, module:variable or "
        'module:factory("arg") (the variable defaults to `flow`)',
    )
    for dest, option in _OPTIONS.items():
        parser.add_argument(
            *option.flags,
            dest=dest,
            type=option.parse,
            metavar=option.metavar,
            help=f"{option.help} [env {option.env}]",
        )
    parser.add_argument(
        "--trust-store-pickles", action="store_true", default=None,
        help="with -r, unpickle stored states with plain pickle, which runs any code a "
        "pickle names; by default only the flow's own classes and standard value types "
        "are rebuilt (docs/recovery.md, Trust model) [env FASTFLOW_TRUST_STORE_PICKLES=1]",
    )
    parser.add_argument("-i", "--process-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("-a", "--addresses", help=argparse.SUPPRESS)
    ray = parser.add_argument_group(
        "Ray", "run the -p processes as actors of a Ray cluster (pip install 'fastflow[ray]')"
    )
    ray.add_argument(
        "--ray", dest="ray_address", nargs="?", const="", metavar="ADDRESS",
        help="run on Ray: ADDRESS is `auto` or ray://host:port; without it, a local Ray "
        "instance is started [env FASTFLOW_RAY_ADDRESS]",
    )
    ray.add_argument(
        "--max-restarts", type=_non_negative_int, metavar="K",
        help="with -r, restart from the last committed epoch up to K times when an actor or "
        "its node dies; 0 fails at once (default: 3)",
    )
    ray.add_argument(
        "--ray-placement", choices=("spread", "pack"),
        help="spread the actors over the nodes, or pack them onto few (default: spread)",
    )
    ray.add_argument(
        "--ray-timeout", type=_positive_seconds, metavar="SECONDS",
        help="give up if the Ray cluster does not answer within SECONDS (default: 30)",
    )
    from fastflow._observe.options import add_observe_arguments

    add_observe_arguments(parser)
    parser.add_argument(
        "--progress", action="store_true",
        help="show one status line on stderr, redrawn every second (items/s, epoch, last "
        "commit), when stderr is a terminal",
    )


def _status_line(observed: ObservedRun, wanted: bool) -> AbstractContextManager[object]:
    """``--progress``: the status line, made of what ``/status`` shows."""
    if not wanted:
        return nullcontext()
    from fastflow._observe.status import StatusView
    from fastflow._progress import StatusLine

    return StatusLine(StatusView(observed.observer).status)


class _BadInput(Exception):
    """Stop with exit code 2 and this one-line message."""


# Bytewax's variables for running one command per machine (-i/-a, its Helm chart).
_BYTEWAX_MULTI_MACHINE = ("BYTEWAX_PROCESS_ID", "BYTEWAX_ADDRESSES", "BYTEWAX_HOSTFILE_PATH",
                          "BYTEWAX_STATEFULSET_NAME")


def _from_environment(option: _Option) -> tuple[str, str] | None:
    """The variable that sets ``option`` and its text: fastflow's name, else Bytewax's."""
    ours = os.environ.get(option.env)
    theirs = os.environ.get(option.bytewax_env) if option.bytewax_env else None
    if theirs:
        _log.warning(
            "%s is read as %s, fastflow's name for it%s", option.bytewax_env, option.env,
            f" (ignored: {option.env} is set)" if ours else "",
        )
    if ours:
        return option.env, ours
    if theirs:
        assert option.bytewax_env is not None
        return option.bytewax_env, theirs
    return None


def _apply_env(args: argparse.Namespace) -> None:
    """Fill the options not given on the command line from the environment or defaults.

    Bytewax's variables (``BYTEWAX_RECOVERY_DIRECTORY``, ...) count too, so that a migrated
    deployment never silently runs without its recovery directory; those of its
    one-command-per-machine mode are refused, as ``-i``/``-a`` are.
    """
    for name in _BYTEWAX_MULTI_MACHINE:
        if os.environ.get(name):
            raise _BadInput(
                f"environment variable {name}: one command per machine (Bytewax's -i/-a) is "
                "not supported: run several processes on this machine with -p N, or on a "
                "Ray cluster with --ray (docs/distributed.md)"
            )
    for dest, option in _OPTIONS.items():
        if getattr(args, dest) is not None:
            continue
        found = _from_environment(option)
        variable, text = found if found else (None, option.default)
        if text is None:
            continue
        try:
            setattr(args, dest, option.parse(text))
        except argparse.ArgumentTypeError as ex:
            raise _BadInput(f"environment variable {variable}: {ex}") from None


def _trust_store_pickles(args: argparse.Namespace) -> bool:
    """``--trust-store-pickles``, else ``FASTFLOW_TRUST_STORE_PICKLES`` (1 or 0)."""
    if args.trust_store_pickles:
        return True
    text = os.environ.get("FASTFLOW_TRUST_STORE_PICKLES", "").strip()
    if text not in ("", "0", "1"):
        raise _BadInput(f"environment variable FASTFLOW_TRUST_STORE_PICKLES must be 1 or 0, "
                        f"not {text!r}")
    return text == "1"


def _print_user_traceback(error: BaseException) -> None:
    from fastflow._tracebacks import user_traceback

    print(user_traceback(error), end="", file=sys.stderr)


def _stdout_closed(error: BaseException) -> bool:
    """Whether fastflow's own printing found stdout's reader gone (``fastflow run f.py | head``)."""
    from fastflow._tracebacks import is_internal

    return isinstance(error, BrokenPipeError) and all(
        is_internal(frame) for frame in traceback.extract_tb(error.__traceback__)
    )


def _run(args: argparse.Namespace, prog: str) -> int:
    from fastflow._locate import FlowImportFailed, FlowNotFound, locate_dataflow
    from fastflow._observe import logs
    from fastflow._observe.options import BadOption, resolve
    from fastflow._observe.session import ApiUnavailable, ObservedRun
    from fastflow._runtime.execute import RayOptions
    from fastflow._tracebacks import one_line
    from fastflow._tracebacks import user_error as innermost
    from fastflow.errors import (
        ProcessFailed,
        RayUnavailable,
        RecoveryError,
        StoreWriteError,
        TooManyProcesses,
    )
    from fastflow.recovery import RecoveryConfig
    from fastflow.visualize import to_json

    _apply_env(args)
    if args.ray_address is None and os.environ.get("FASTFLOW_RAY_ADDRESS") is not None:
        args.ray_address = os.environ["FASTFLOW_RAY_ADDRESS"]
    ray_only = [flag for flag, value in (("--max-restarts", args.max_restarts),
                                         ("--ray-placement", args.ray_placement),
                                         ("--ray-timeout", args.ray_timeout))
                if value is not None]
    if ray_only and args.ray_address is None:
        raise _BadInput(f"{ray_only[0]} only applies with --ray")
    if args.trust_store_pickles and args.recovery_directory is None:
        raise _BadInput("--trust-store-pickles only applies with -r")
    if args.process_id is not None or args.addresses is not None:
        raise _BadInput(
            "-i/--process-id and -a/--addresses (one command per machine) are not supported: "
            "run several processes on this machine with -p N, or on a Ray cluster with "
            "--ray (docs/distributed.md)"
        )
    try:
        observe = resolve(args)
    except BadOption as ex:
        raise _BadInput(str(ex)) from None
    logs.configure(observe.log_level)
    import fastflow.compat  # noqa: F401 - `bytewax` imports get fastflow if Bytewax is absent

    try:
        flow = locate_dataflow(args.import_str)
    except FlowNotFound as ex:
        raise _BadInput(str(ex)) from None
    except FlowImportFailed as ex:
        assert ex.__cause__ is not None
        from fastflow.tracing import TracingUnavailable

        if isinstance(ex.__cause__, TracingUnavailable):  # setup_tracing without the extra
            raise _BadInput(str(ex.__cause__)) from None
        _print_user_traceback(ex.__cause__)
        raise _BadInput(str(ex)) from None
    recovery = (
        None
        if args.recovery_directory is None
        else RecoveryConfig(args.recovery_directory, args.backup_interval,
                            trust_store_pickles=_trust_store_pickles(args))
    )
    try:
        observed = ObservedRun(
            flow, observe, processes=args.processes,
            workers_per_process=args.workers_per_process, interval=args.snapshot_interval,
            store=args.recovery_directory, child_setup=logs.ChildLogging(observe.log_level),
            progress=args.progress, describe=to_json,
        )
        with observed, _status_line(observed, args.progress):
            cli_main(
                flow,
                processes=args.processes,
                workers_per_process=args.workers_per_process,
                epoch_interval=args.snapshot_interval,
                recovery_config=recovery,
                ray=None if args.ray_address is None else RayOptions(
                    args.ray_address or None,
                    3 if args.max_restarts is None else args.max_restarts,
                    args.ray_placement or "spread",
                    30.0 if args.ray_timeout is None else args.ray_timeout,
                ),
            )
    except ApiUnavailable as ex:
        raise _BadInput(str(ex)) from None
    except (RayUnavailable, TooManyProcesses) as ex:
        raise _BadInput(str(ex)) from None
    except StoreWriteError as ex:  # the run started, then the disk failed it
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_FLOW_RAISED
    except RecoveryError as ex:
        raise _BadInput(str(ex)) from None
    except ProcessFailed as ex:  # a worker process raised (its traceback) or died
        if ex.traceback_text:
            print(ex.traceback_text, end="", file=sys.stderr)
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_FLOW_RAISED
    except Exception as ex:
        user_error = innermost(ex)
        if _stdout_closed(user_error):
            return report_stdout_closed(prog, ", so the flow stopped")
        _print_user_traceback(user_error)
        print(f"{prog}: error: the flow failed: {one_line(ex)}", file=sys.stderr)
        return EXIT_FLOW_RAISED
    return EXIT_OK


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Carry out a parsed ``run`` command; returns the exit code."""
    try:
        return _run(args, prog)
    except _BadInput as ex:
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def __getattr__(name: str) -> Any:
    """``RayOptions`` is loaded on first use: the engine stays out of ``--help``'s start-up."""
    if name == "RayOptions":
        from fastflow._runtime.execute import RayOptions

        return RayOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cli_main(
    flow: Dataflow,
    *,
    workers_per_process: int = 1,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    epoch_interval: timedelta | None = None,
    recovery_config: RecoveryConfig | None = None,
    processes: int = 1,
    ray: RayOptions | None = None,
) -> None:
    """Run ``flow`` as ``fastflow run`` does: ``processes`` local processes of ``-w`` workers.

    This is the Python way to use several cores: ``cli_main(flow, processes=4)`` forks 4
    worker processes and returns when the flow is done (raising ``ProcessFailed`` if one
    of them raised or died). With ``ray=RayOptions(...)`` the processes are actors of a Ray
    cluster instead (``fastflow run --ray``). ``addresses`` and ``process_id`` (one call per
    machine, as in Bytewax) support one process only.
    """
    from fastflow._runtime.execute import check_one_process, run_flow

    if addresses or process_id:  # as cluster_main: one process, so no -p and no --ray
        check_one_process(addresses or [], process_id or 0)
        processes, ray = 1, None
    run_flow(flow, epoch_interval=epoch_interval, recovery_config=recovery_config,
             worker_count=workers_per_process, processes=processes, ray=ray)


def main(argv: list[str] | None = None, prog: str = "python -m fastflow.run") -> int:
    """Parse ``argv`` as ``fastflow run`` does and run the flow; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, **RUN_HELP)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    return guard_stdout(lambda: run_command(args, prog), prog)


if __name__ == "__main__":
    sys.exit(main())

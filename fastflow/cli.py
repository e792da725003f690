"""The ``fastflow`` command: run flows and manage recovery directories.

``fastflow run`` is :mod:`fastflow.run` and ``fastflow init-recovery`` is
:mod:`fastflow.recovery` (both also runnable with ``python -m``); this module
only puts them, and the ``recovery`` commands, under one command. Each
``recovery`` command is a module of ``fastflow/_store_tools`` (status, upgrade,
export, import_state, repartition, backup); here they only get their arguments,
and their errors become one line on stderr: exit code 2 for bad input or a
store that cannot be used as asked (nothing was changed), 1 for a failed write.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastflow
from fastflow._pythonpath import add_python_path_argument, extend_sys_path
from fastflow._stdout import guard_stdout
from fastflow.dashboard import DASHBOARD_DESCRIPTION, add_dashboard_arguments, dashboard_command
from fastflow.recovery import INIT_DESCRIPTION, add_init_arguments, init_command
from fastflow.run import (
    EXIT_BAD_INPUT,
    EXIT_FLOW_RAISED,
    RUN_HELP,
    add_run_arguments,
    run_command,
)
from fastflow.visualize import (
    VISUALIZE_DESCRIPTION,
    add_visualize_arguments,
    visualize_command,
)

PROG = "fastflow"


class _Version(argparse.Action):
    """``--version``: fastflow's version and the recovery store format it reads and writes."""

    def __init__(self, option_strings: list[str], dest: str, help: str) -> None:
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from fastflow._store_tools import SCHEMA_VERSION  # not paid by other commands

        print(f"fastflow {fastflow.__version__} (recovery store format {SCHEMA_VERSION})")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fast stream processing with durable, resumable state.",
        epilog="Run `fastflow COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
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
        "recovery", help="inspect, edit, repartition, back up or upgrade a recovery directory",
        description="Inspect, export, edit, repartition, back up or upgrade recovery "
        "partitions."
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
    _add_state_commands(recovery_commands)
    add_visualize_arguments(
        commands.add_parser(
            "visualize", help="print a diagram of a dataflow", description=VISUALIZE_DESCRIPTION
        )
    )
    compat = commands.add_parser(
        "compat",
        help="make `bytewax` mean fastflow in every Python of this environment (or stop)",
        description="`enable` makes `import bytewax...` and `python -m bytewax.run` / "
        "`python -m bytewax.testing` use fastflow in every Python of this environment, by "
        "a .pth file in its site-packages; `disable` removes it. Refused when the real "
        "Bytewax is installed here. `fastflow run` needs neither: it serves `bytewax` "
        "imports by itself.",
    )
    compat.add_argument("action", choices=("enable", "disable"))
    add_dashboard_arguments(
        commands.add_parser(
            "dashboard", help="serve the dashboard page of a recovery store at rest",
            description=DASHBOARD_DESCRIPTION,
        )
    )
    return parser


def _compat(args: argparse.Namespace) -> int:
    from fastflow._bytewax_alias import AliasRefused, disable, enable, site_packages

    if args.action == "disable":
        removed = disable(site_packages())
        print(f"removed {removed}" if removed else "the alias was not enabled; nothing to do")
        return 0
    try:
        path = enable(site_packages())
    except (AliasRefused, OSError) as ex:
        print(f"{PROG} compat: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {path}: `bytewax` now means fastflow in this environment "
          f"(undo with `{PROG} compat disable`)")
    return 0


def _add_state_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``export``, ``import``, ``get``, ``repartition`` and ``backup`` (docs/recovery.md)."""
    db_dir: dict[str, Any] = {
        "metavar": "DB_DIR", "type": Path, "help": "directory of the partitions"
    }
    epoch: dict[str, Any] = {
        "type": int, "metavar": "E", "help": "the state a resume at epoch E would restore (E "
        "inside the backup window); default: the next run's resume epoch",
    }
    export = commands.add_parser(
        "export",
        help="write the state a resume would restore, one JSON line per key",
        description="Write the state the next run would resume with (or, with --epoch, a "
        "resume at an older epoch in the backup window), one JSON object per line: "
        '{"step": STEP_ID, "key": KEY, "state": TYPED_JSON}. States are shown in the '
        "snapshot codec's typed JSON and never decoded (a pickled state stays a "
        "{\"$pickle\": ...} tag). Read-only: safe while a flow runs.",
    )
    export.add_argument("db_dir", **db_dir)
    export.add_argument("--step", metavar="STEP", help="only this step id")
    export.add_argument("--key", metavar="KEY", help="only this key")
    export.add_argument("--epoch", **epoch)
    export.add_argument("-o", "--output", metavar="FILE", type=Path,
                        help="write to FILE instead of standard output")
    load = commands.add_parser(
        "import",
        help="apply edited state lines (as export writes them) as one new epoch",
        description="Apply FILE's lines (as `fastflow recovery export` writes them; a state "
        "of null deletes the key) to DB_DIR as one new committed epoch, so the next run "
        "resumes with the edited state. Every line is checked first (JSON, known step, a "
        "state the codec decodes); a bad line changes nothing. Stop the flow using DB_DIR "
        "first.",
    )
    load.add_argument("db_dir", **db_dir)
    load.add_argument("file", metavar="FILE", help="the state lines; - for standard input")
    load.add_argument("--allow-pickle", action="store_true",
                      help='accept {"$pickle": ...} states (checking them unpickles them, '
                      "which can run any code)")
    load.add_argument("--allow-import", action="store_true",
                      help='accept {"$dataclass": ...} states of modules fastflow has not '
                      "imported (checking them imports the module, which runs its code)")
    get = commands.add_parser(
        "get",
        help="print one key's state",
        description="Print the typed JSON state of KEY in step STEP, as the next run would "
        "restore it; exit code 1 if the key has no state. Read-only.",
    )
    get.add_argument("db_dir", **db_dir)
    get.add_argument("step", metavar="STEP", help="step id, as export and status show it")
    get.add_argument("key", metavar="KEY", help="the state key")
    get.add_argument("--epoch", **epoch)
    repartition = commands.add_parser(
        "repartition",
        help="rewrite the store into N partitions",
        description="Rewrite the store in DB_DIR into N partitions. The new store is built "
        "beside DB_DIR and swapped in atomically: killed at any moment, DB_DIR holds the old "
        "store or the new one. The next run resumes where it would have; older epochs kept "
        "for the backup window are not carried over. Stop the flow using DB_DIR first.",
    )
    repartition.add_argument("db_dir", **db_dir)
    repartition.add_argument("count", metavar="N", type=int, help="the new partition count")
    backup = commands.add_parser(
        "backup",
        help="copy a store consistently, also while a flow runs",
        description="Copy every partition of DB_DIR into DEST (a new or empty directory) with "
        "SQLite's online backup, so that `fastflow run -r DEST` resumes from the copy. Safe "
        "while a flow runs on DB_DIR; a killed backup leaves DEST as it was.",
    )
    backup.add_argument("db_dir", **db_dir)
    backup.add_argument("dest", metavar="DEST", type=Path, help="directory of the copy")


def _recovery_export(args: argparse.Namespace) -> int:
    from fastflow._store_tools import export_state

    if args.output is None:
        export_state(args.db_dir, sys.stdout.buffer, step_id=args.step, key=args.key,
                     epoch=args.epoch)
        sys.stdout.buffer.flush()
        return 0
    try:
        with open(args.output, "wb") as out:
            count = export_state(args.db_dir, out, step_id=args.step, key=args.key,
                                 epoch=args.epoch)
    except BaseException:
        args.output.unlink(missing_ok=True)  # no half an export that looks like a whole one
        raise
    print(f"exported {count} key(s) of {args.db_dir} to {args.output}")
    return 0


def _recovery_import(args: argparse.Namespace) -> int:
    from fastflow._progress import reading
    from fastflow._store_tools import Trust, import_state

    trust = Trust(pickles=args.allow_pickle, imports=args.allow_import)
    if args.file == "-":
        with reading(sys.stdin.buffer, "importing") as counted:
            done = import_state(args.db_dir, counted, trust)
    else:
        with open(args.file, "rb") as lines, reading(lines, "importing") as counted:
            done = import_state(args.db_dir, counted, trust)
    if done.epoch is None:
        print(f"{args.file} holds no state lines; nothing was changed")
    else:
        print(
            f"imported {done.set_keys} state(s) and {done.deleted_keys} deletion(s) into "
            f"{args.db_dir} as epoch {done.epoch}; the next run resumes at epoch "
            f"{done.resume_epoch}"
        )
    return 0


def _recovery_get(args: argparse.Namespace) -> int:
    from fastflow._store_tools import get_state

    state = get_state(args.db_dir, args.step, args.key, args.epoch)
    if state is None:
        print(f"{PROG} recovery get: key {args.key!r} of step {args.step!r} has no state in "
              f"{args.db_dir}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(state + b"\n")
    sys.stdout.buffer.flush()
    return 0


def _recovery_repartition(args: argparse.Namespace) -> int:
    from fastflow._store_tools import repartition_store

    done = repartition_store(args.db_dir, args.count)
    print(
        f"repartitioned {args.db_dir} from {done.old_count} to {done.new_count} partition(s) "
        f"({done.keys} key(s)); the next run resumes at epoch {done.resume_epoch}"
    )
    return 0


def _recovery_backup(args: argparse.Namespace) -> int:
    from fastflow._store_tools import backup_store

    done = backup_store(args.db_dir, args.dest)
    print(
        f"backed up {done.partitions} partition(s) of {args.db_dir} to {args.dest}; a run on "
        f"it resumes at epoch {done.resume_epoch}"
    )
    return 0


_STATE_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "export": _recovery_export,
    "import": _recovery_import,
    "get": _recovery_get,
    "repartition": _recovery_repartition,
    "backup": _recovery_backup,
}


def _state_command(args: argparse.Namespace) -> int:
    """Run a state command; its error becomes one line on stderr and the exit code."""
    from fastflow.errors import RecoveryError, StoreWriteError

    name = f"{PROG} recovery {args.recovery_command}"
    try:
        return _STATE_COMMANDS[args.recovery_command](args)
    except StoreWriteError as ex:
        print(f"{name}: error: {ex}", file=sys.stderr)
        return EXIT_FLOW_RAISED
    except (RecoveryError, ValueError) as ex:
        print(f"{name}: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        raise  # stdout's reader went away: main says so, as for every command
    except OSError as ex:  # a file named on the command line, such as import's FILE
        print(f"{name}: error: {_one_line(ex)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _one_line(ex: BaseException) -> str:
    """A recovery error's message, or an OS error's ``file: reason``."""
    from fastflow.errors import RecoveryError

    if isinstance(ex, RecoveryError) or not isinstance(ex, OSError):
        return str(ex)
    where = f"{ex.filename}: " if ex.filename else ""
    return f"{where}{ex.strerror or ex}"


def _recovery_status(args: argparse.Namespace) -> int:
    from fastflow._store_tools import format_status, read_status
    from fastflow.errors import RecoveryError

    try:
        status = read_status(args.db_dir)
    except (RecoveryError, OSError) as ex:
        print(f"{PROG} recovery status: error: {_one_line(ex)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_status(status))
    return 0


def _recovery_upgrade(args: argparse.Namespace) -> int:
    from fastflow._store_tools import SCHEMA_VERSION, upgrade_store
    from fastflow.errors import RecoveryError

    try:
        done = upgrade_store(args.db_dir)
    except (RecoveryError, OSError) as ex:
        print(f"{PROG} recovery upgrade: error: {_one_line(ex)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if done.converted == 0:
        print(f"{args.db_dir} is already in format {SCHEMA_VERSION}; nothing to do")
    else:
        print(
            f"upgraded {done.converted} partition(s) of {args.db_dir} to format "
            f"{SCHEMA_VERSION}; the next run resumes at epoch {done.resume_epoch}"
        )
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported with the usage of its own command.

    (argparse would report it with ``fastflow``'s usage, which does not list the option.)
    """
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser
        for name in (args.command, getattr(args, "recovery_command", None)):
            if name is not None:
                command = _subcommand(command, name)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of command ``name`` under ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]  # type: ignore[no-any-return]
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return run_command(args, f"{PROG} run")
    if args.command == "init-recovery":
        return init_command(args, f"{PROG} init-recovery")
    if args.command == "visualize":
        return visualize_command(args, f"{PROG} visualize")
    if args.command == "compat":
        return _compat(args)
    if args.command == "dashboard":
        return dashboard_command(args, f"{PROG} dashboard")
    if args.recovery_command == "upgrade":
        return _recovery_upgrade(args)
    if args.recovery_command in _STATE_COMMANDS:
        return _state_command(args)
    return _recovery_status(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastflow`` command; returns the exit code."""
    args = _parse(argv)
    extend_sys_path(args.python_path)
    prog = " ".join(filter(None, (PROG, args.command, getattr(args, "recovery_command", None))))
    return guard_stdout(lambda: _dispatch(args), prog)


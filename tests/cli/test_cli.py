"""The `fastflow` command end to end: the real console script in a subprocess.

Exit codes: 0 ran to the end, 1 the flow raised, 2 bad usage or bad input,
130 interrupted. Every error ends with exactly one `PROG: error: ...` line.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import fastflow

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))
PYTHON_M = [sys.executable, "-m"]

HEADER = """\
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource
"""

# `flow` doubles 1, 2, 3; `other` and `make(...)` are the same flow with other factors.
DOUBLE = (
    HEADER
    + """
def make(name, factor=2):
    flow = Dataflow(name)
    nums = op.input("inp", flow, TestingSource([1, 2, 3]))
    op.output("out", op.map("times", nums, lambda x: (name, x * factor)), StdOutSink())
    return flow

flow = make("double")
other = make("other", 10)
not_a_flow = 42
"""
)

# Prints 1 and 2, then its map divides by zero on the third item.
CRASH = (
    HEADER
    + """
flow = Dataflow("crash")
nums = op.input("inp", flow, TestingSource([1, 2, 0, 4]))
op.output("out", op.map("inverse", nums, lambda x: 2 // x), StdOutSink())
"""
)

# The recovery tutorial: a running sum over `inp`.
RUNNING_SUM = (
    HEADER
    + """
inp = {inp}
flow = Dataflow("recovery")
keyed = op.key_on("key", op.input("inp", flow, TestingSource(inp)), lambda _: "ALL")
sums = op.stateful_map("sum", keyed, lambda: 0, lambda acc, x: (acc + x, acc + x))
op.output("out", sums, StdOutSink())
"""
)

DOUBLED = "('double', 2)\n('double', 4)\n('double', 6)\n"
TIMES_TEN = "('other', 10)\n('other', 20)\n('other', 30)\n"
RUN_USAGE = """\
usage: fastflow run [-h] [-r DB_DIR] [-s SECONDS] [-b SECONDS] [-w WORKERS]
                    [-p PROCESSES] [--trust-store-pickles] [--ray [ADDRESS]]
                    [--max-restarts K] [--ray-placement {spread,pack}]
                    [--ray-timeout SECONDS] [--api [[HOST:]PORT]]
                    [--api-linger SECONDS] [--metrics-prefix PREFIX]
                    [--log-level LEVEL] [--progress]
                    IMPORT_STR
"""


def cmd(*args, cwd, env=None, prefix=None):
    """Run `fastflow ARGS` (or `PREFIX ARGS`) in ``cwd`` with no FASTFLOW_* variables but
    those in ``env``; return the finished process."""
    argv = [*(prefix or [FASTFLOW]), *map(str, args)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FASTFLOW_")}
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env={**clean, **(env or {})}, timeout=60
    )


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def assert_bad_input(proc, line):
    """Exit 2 with nothing on stdout and exactly ``line`` on stderr: no traceback."""
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")


def test_console_script_is_installed():
    assert FASTFLOW is not None, "pip install -e . installs the `fastflow` command"


# --- version and help ---------------------------------------------------------------


@pytest.mark.parametrize("prefix", [None, [*PYTHON_M, "fastflow"]], ids=["script", "python-m"])
def test_version(tmp_path, prefix):
    proc = cmd("--version", cwd=tmp_path, prefix=prefix)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        f"fastflow {fastflow.__version__} (recovery store format 2)\n",
        "",
    )


def test_version_names_the_store_format_of_init_recovery(tmp_path):
    # `--version` says which store format this fastflow writes: the one init-recovery makes.
    assert cmd("init-recovery", "db", 1, cwd=tmp_path).returncode == 0
    with closing(sqlite3.connect(tmp_path / "db" / "part-0.sqlite3")) as conn:
        (written,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    number = cmd("--version", cwd=tmp_path).stdout.split("format ")[1].rstrip(")\n")
    assert number == str(written)


@pytest.mark.parametrize(
    "args, usage",
    [
        (["run", "flow.py", "-x"], "usage: fastflow run [-h]"),
        (["recovery", "status", "db", "--nope"], "usage: fastflow recovery status [-h]"),
        (["visualize", "flow.py", "-x"], "usage: fastflow visualize [-h]"),
    ],
    ids=["run", "recovery-status", "visualize"],
)
def test_an_unknown_option_shows_the_usage_of_its_own_command(tmp_path, args, usage):
    proc = cmd(*args, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(usage)
    command = " ".join(arg for arg in args[:2] if not arg.endswith(".py"))
    assert proc.stderr.endswith(f"fastflow {command}: error: unrecognized arguments: {args[-1]}\n")


@pytest.mark.parametrize(
    "args, usage, words",
    [
        ([], "usage: fastflow [-h] [--version] ", ["COMMAND ...\n", "init-recovery", "recovery"]),
        (["run"], RUN_USAGE, ["IMPORT_STR", "FASTFLOW_", "examples:"]),
        (["init-recovery"], "usage: fastflow init-recovery [-h] [--force] DB_DIR PART_COUNT\n",
         ["partitions"]),
        (["recovery"], "usage: fastflow recovery [-h] COMMAND ...\n", ["status"]),
        (["recovery", "status"], "usage: fastflow recovery status [-h] DB_DIR\n",
         ["resume epoch"]),
    ],
    ids=["fastflow", "run", "init-recovery", "recovery", "recovery-status"],
)
def test_help_of_every_command(tmp_path, args, usage, words):
    proc = cmd(*args, "--help", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith(usage)
    for word in words:
        assert word in proc.stdout


def test_run_help_names_every_option_and_its_environment_variable(tmp_path):
    help_text = " ".join(cmd("run", "--help", cwd=tmp_path).stdout.split())
    for flags, variable in [
        ("-r DB_DIR, --recovery-directory DB_DIR", "FASTFLOW_RECOVERY_DIRECTORY"),
        ("-s SECONDS, --snapshot-interval SECONDS", "FASTFLOW_SNAPSHOT_INTERVAL"),
        ("-b SECONDS, --backup-interval SECONDS", "FASTFLOW_BACKUP_INTERVAL"),
        ("-w WORKERS, --workers-per-process WORKERS", "FASTFLOW_WORKERS_PER_PROCESS"),
        ("-p PROCESSES, --processes PROCESSES", "FASTFLOW_PROCESSES"),
        ("--ray [ADDRESS]", "FASTFLOW_RAY_ADDRESS"),
    ]:
        assert flags in help_text
        assert f"[env {variable}]" in help_text


@pytest.mark.parametrize(
    "module, command", [("fastflow.run", "run"), ("fastflow.recovery", "init-recovery")]
)
def test_python_m_help_is_the_subcommand_help(tmp_path, module, command):
    direct = cmd("--help", cwd=tmp_path, prefix=[*PYTHON_M, module])
    via_fastflow = cmd(command, "--help", cwd=tmp_path)
    assert (direct.returncode, direct.stderr) == (0, "")
    prog = f"python -m {module}"
    assert direct.stdout.startswith(f"usage: {prog} ")
    # Same texts after the usage paragraph, which differs only in the program name.
    assert direct.stdout.split("\n\n", 1)[1] == via_fastflow.stdout.split("\n\n", 1)[1]


# --- exit 0: every import string form, exact output ------------------------------------


IMPORT_FORMS = [
    ("flows/double.py", DOUBLED),
    ("flows/double.py:other", TIMES_TEN),
    ("double", DOUBLED),
    ("double:other", TIMES_TEN),
    ('double:make("tripled", 3)', "('tripled', 3)\n('tripled', 6)\n('tripled', 9)\n"),
    ("double:make('kw', factor=-1)", "('kw', -1)\n('kw', -2)\n('kw', -3)\n"),
    ("pkg.sub.double:flow", DOUBLED),
]


@pytest.mark.parametrize(
    "import_str, expected", IMPORT_FORMS, ids=[form for form, _ in IMPORT_FORMS]
)
def test_import_string_forms(tmp_path, import_str, expected):
    write(tmp_path / "flows" / "double.py", DOUBLE)
    write(tmp_path / "double.py", DOUBLE)
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "sub" / "__init__.py", "")
    write(tmp_path / "pkg" / "sub" / "double.py", DOUBLE)
    proc = cmd("run", import_str, cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, expected, "")


def test_flow_file_can_import_its_sibling_modules(tmp_path):
    write(tmp_path / "flows" / "helpers.py", "def triple(x):\n    return 3 * x\n")
    write(
        tmp_path / "flows" / "flow.py",
        HEADER
        + "from helpers import triple\n"
        + "flow = Dataflow('f')\n"
        + "op.output('out', op.map('m', op.input('inp', flow, TestingSource([1, 2])), triple),"
        + " StdOutSink())\n",
    )
    proc = cmd("run", "flows/flow.py", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "3\n6\n", "")


def test_flow_file_main_block_does_not_run(tmp_path):
    write(tmp_path / "flow.py", DOUBLE + "if __name__ == '__main__':\n    print('main ran')\n")
    assert cmd("run", "flow.py", cwd=tmp_path).stdout == DOUBLED


def test_recovery_tutorial_output_is_exact(tmp_path):
    write(tmp_path / "recovery.py", RUNNING_SUM.format(inp=[0, 1, 2]))
    proc = cmd("run", "recovery.py", cwd=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        "('ALL', 0)\n('ALL', 1)\n('ALL', 3)\n",
        "",
    )


def test_stdout_sink_prints_str_of_items_like_print(tmp_path):
    items = ["text", ("k", "v"), None, {"a": [1.5]}, b"raw", "two\nlines"]
    write(
        tmp_path / "flow.py",
        HEADER
        + "flow = Dataflow('p')\n"
        + f"op.output('out', op.input('inp', flow, TestingSource({items!r}, 4)), StdOutSink())\n",
    )
    proc = cmd("run", "flow.py", cwd=tmp_path)
    assert proc.stdout == "".join(f"{item}\n" for item in items)


# --- python -m forms behave the same ------------------------------------------------------


def test_python_m_fastflow_run_is_fastflow_run(tmp_path):
    write(tmp_path / "double.py", DOUBLE)
    write(tmp_path / "crash.py", CRASH)
    for args in (["double:other"], ["crash.py"], ["missing.py"], ["-s", "x", "double.py"]):
        script = cmd("run", *args, cwd=tmp_path)
        module = cmd(*args, cwd=tmp_path, prefix=[*PYTHON_M, "fastflow.run"])
        assert module.returncode == script.returncode
        assert module.stdout == script.stdout
        assert module.stderr.splitlines()[-1:] == [
            line.replace("fastflow run:", "python -m fastflow.run:")
            for line in script.stderr.splitlines()[-1:]
        ]
        via_package = cmd("run", *args, cwd=tmp_path, prefix=[*PYTHON_M, "fastflow"])
        assert (via_package.returncode, via_package.stdout, via_package.stderr) == (
            script.returncode,
            script.stdout,
            script.stderr,
        )


def test_python_m_fastflow_recovery_is_init_recovery(tmp_path):
    script = cmd("init-recovery", "a", 2, cwd=tmp_path)
    module = cmd("b", 2, cwd=tmp_path, prefix=[*PYTHON_M, "fastflow.recovery"])
    assert (script.returncode, script.stdout, script.stderr) == (
        0,
        "created 2 recovery partitions in a\n",
        "",
    )
    assert (module.returncode, module.stdout, module.stderr) == (
        0,
        "created 2 recovery partitions in b\n",
        "",
    )
    for db in ("a", "b"):
        assert sorted(p.name for p in (tmp_path / db).iterdir()) == [
            "part-0.sqlite3",
            "part-1.sqlite3",
        ]

    again = "already holds recovery partitions: part-0.sqlite3, part-1.sqlite3; nothing was"
    script = cmd("init-recovery", "a", 1, cwd=tmp_path)
    module = cmd("b", 1, cwd=tmp_path, prefix=[*PYTHON_M, "fastflow.recovery"])
    for proc, prog, db in [(script, "fastflow init-recovery", "a"),
                           (module, "python -m fastflow.recovery", "b")]:
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr.startswith(f"{prog}: error: {db} {again}")
        assert len(proc.stderr.splitlines()) == 1


# --- exit 1: the flow raised ------------------------------------------------------------


def test_flow_raising_prints_earlier_output_then_the_user_traceback(tmp_path):
    flow_file = write(tmp_path / "crash.py", CRASH)
    proc = cmd("run", "crash.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == "2\n1\n"
    *traceback, last = proc.stderr.splitlines()
    assert last == (
        "fastflow run: error: the flow failed: error calling `mapper` in step "
        "'crash.inverse.flat_map_batch': ZeroDivisionError: integer division or modulo by zero"
    )
    assert traceback[0] == "Traceback (most recent call last):"
    assert f'  File "{flow_file}", line 8, in <lambda>' in traceback
    assert traceback[-1] == "ZeroDivisionError: integer division or modulo by zero"
    assert not [line for line in traceback if "fastflow/" in line], "only the user's frames"


def test_output_printed_by_user_code_is_flushed_before_the_failure(tmp_path):
    write(
        tmp_path / "flow.py",
        HEADER
        + """
def check(x):
    print("checking", x)
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x

flow = Dataflow("f")
op.output("out", op.map("check", op.input("inp", flow, TestingSource([1, 2, 3, 4])), check),
          StdOutSink())
""",
    )
    proc = cmd("run", "flow.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == "checking 1\n1\nchecking 2\n2\nchecking 3\n"
    assert proc.stderr.splitlines()[-1] == (
        "fastflow run: error: the flow failed: error calling `mapper` in step "
        "'f.check.flat_map_batch': ValueError: bad item 3"
    )


# --- exit 2: bad usage or bad input: one line, no traceback --------------------------------

BAD_INPUT = [
    (["run", "missing.py"], "flow file 'missing.py' does not exist"),
    (["run", "flows/missing.py:flow"], "flow file 'flows/missing.py' does not exist"),
    (
        ["run", "nosuchmodule"],
        "no module named 'nosuchmodule' (and no such .py file); "
        "give a path like flows/my_flow.py or an importable module",
    ),
    (
        ["run", "pkg.nosuchmodule:flow"],
        "no module named 'pkg.nosuchmodule' (and no such .py file); "
        "give a path like flows/my_flow.py or an importable module",
    ),
    (
        ["run", "double:nope"],
        "'double' has no variable 'nope'; name the Dataflow's variable with double:VARIABLE",
    ),
    (
        ["run", "empty.py"],
        "'empty.py' has no variable 'flow'; name the Dataflow's variable with empty.py:VARIABLE",
    ),
    (
        ["run", "double:not_a_flow"],
        "double:not_a_flow is a 'int', not a fastflow Dataflow; "
        "name a Dataflow variable or a function returning one",
    ),
    (["run", "double:other()"], "double:other() calls a 'Dataflow', which is not callable"),
    (
        ["run", "double:make()"],
        "double:make() does not match the factory's parameters: "
        "missing a required argument: 'name'",
    ),
    (
        ["run", "double:make('a', colour=1)"],
        "double:make('a', colour=1) does not match the factory's parameters: "
        "got an unexpected keyword argument 'colour'",
    ),
    (
        ["run", "double:make("],
        "cannot parse 'make(' as a variable name or a call like factory(\"arg\")",
    ),
    (
        ["run", "double:a.b"],
        "cannot parse 'a.b' as a variable name or a call like factory(\"arg\")",
    ),
    (["run", "double:"], "import string 'double:' must look like MODULE[:ATTRIBUTE]"),
    (["run", ":flow"], "import string ':flow' must look like MODULE[:ATTRIBUTE]"),
    (["run", "double:make(name)"], "the arguments in 'make(name)' must be Python literals"),
    (
        ["run", "noinput.py"],
        "noinput.py:flow: Dataflow needs to contain at least one input step; "
        "add with `fastflow.operators.input`",
    ),
    (
        ["run", "-i", "0", "-a", "hosts.txt", "double.py"],
        "-i/--process-id and -a/--addresses (one command per machine) are not supported: "
        "run several processes on this machine with -p N, or on a Ray cluster with "
        "--ray (docs/distributed.md)",
    ),
    (
        ["run", "-r", "nodir", "double.py"],
        "recovery directory nodir does not exist; "
        "create partitions with `fastflow init-recovery nodir N` (N of them)",
    ),
    (
        ["run", "-r", "emptydir", "double.py"],
        "no recovery partitions (part-*.sqlite3) in emptydir; "
        "create partitions with `fastflow init-recovery emptydir N` (N of them)",
    ),
]


@pytest.mark.parametrize("args, message", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    write(tmp_path / "double.py", DOUBLE)
    write(tmp_path / "empty.py", "")
    write(tmp_path / "noinput.py", "from fastflow.dataflow import Dataflow\n"
          "flow = Dataflow('noinput')\n")
    write(tmp_path / "pkg" / "__init__.py", "")
    (tmp_path / "emptydir").mkdir()
    assert_bad_input(cmd(*args, cwd=tmp_path), f"fastflow {args[0]}: error: {message}")


def test_syntax_error_in_the_flow_file_is_one_line(tmp_path):
    flow_file = write(tmp_path / "broken.py", "import os\nx = (\n")
    assert_bad_input(
        cmd("run", "broken.py", cwd=tmp_path),
        f"fastflow run: error: syntax error in {flow_file} line 2: '(' was never closed",
    )


@pytest.mark.parametrize(
    "args, error",
    [
        (["run", "-s", "abc", "f.py"], "argument -s/--snapshot-interval: 'abc' is not a number "
         "of seconds"),
        (["run", "-s", "-1", "f.py"], "argument -s/--snapshot-interval: '-1' must not be "
         "negative"),
        (["run", "-s", "-0.5", "f.py"], "argument -s/--snapshot-interval: '-0.5' must not be "
         "negative"),
        (["run", "-s", "nan", "f.py"], "argument -s/--snapshot-interval: 'nan' is not a number "
         "of seconds"),
        (["run", "-b", "-5", "f.py"], "argument -b/--backup-interval: '-5' must not be negative"),
        (["run", "-w", "two", "f.py"], "argument -w/--workers-per-process: 'two' is not a whole "
         "number"),
        (["run", "-p", "0", "f.py"], "argument -p/--processes: '0' must be at least 1"),
        (["run"], "the following arguments are required: IMPORT_STR"),
    ],
)
def test_bad_option_values_print_usage_and_one_error_line(tmp_path, args, error):
    proc = cmd(*args, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"{RUN_USAGE}fastflow run: error: {error}\n"


@pytest.mark.parametrize(
    "args, error",
    [
        ([], "the following arguments are required: COMMAND"),
        (["walk"], "argument COMMAND: invalid choice: 'walk'"),
        (["recovery"], "the following arguments are required: COMMAND"),
        (["run", "--bogus", "f.py"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_commands_print_usage_and_one_error_line(tmp_path, args, error):
    proc = cmd(*args, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith("usage: fastflow")
    assert f": error: {error}" in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["init-recovery", "db", "0"],
         "partition count must be a whole number from 1 to 4096, got 0"),
        (["init-recovery", "db", "99999999999999999999"],
         "partition count must be a whole number from 1 to 4096, got 99999999999999999999"),
        (["init-recovery", "file", "1"], "cannot create recovery partitions in file: File exists"),
        (
            ["recovery", "status", "nodir"],
            "recovery directory nodir does not exist; create partitions with "
            "`fastflow init-recovery nodir N` (N of them)",
        ),
        (["recovery", "status", "file"], "recovery directory file is a file, not a directory"),
    ],
)
def test_bad_recovery_directories_are_one_line(tmp_path, args, message):
    write(tmp_path / "file", "")
    cmd_name = " ".join(args[:-1] if args[0] == "recovery" else args[:1])
    assert_bad_input(cmd(*args, cwd=tmp_path), f"fastflow {cmd_name}: error: {message}")


# --- exit 2 when the user's code raised while the flow was being built ----------------------


@pytest.mark.parametrize(
    "import_str, frame, error, message",
    [
        (
            "boom.py",
            'boom.py", line 3, in <module>',
            "RuntimeError: no config",
            "importing 'boom.py' raised RuntimeError: no config",
        ),
        (
            "factory:make(2)",
            'factory.py", line 2, in make',
            "ZeroDivisionError: division by zero",
            "calling factory:make(2) raised ZeroDivisionError: division by zero",
        ),
        (
            "needs_dep.py",
            'needs_dep.py", line 1, in <module>',
            "ModuleNotFoundError: No module named 'no_such_dependency'",
            "importing 'needs_dep.py' raised ModuleNotFoundError: "
            "No module named 'no_such_dependency'",
        ),
    ],
    ids=["import", "factory", "missing-dependency"],
)
def test_user_code_raising_while_building_shows_its_traceback(
    tmp_path, import_str, frame, error, message
):
    write(tmp_path / "boom.py", "import os\n\nraise RuntimeError('no config')\n")
    write(tmp_path / "factory.py", "def make(n):\n    return 1 / (n - 2)\n")
    write(tmp_path / "needs_dep.py", "import no_such_dependency\n")
    proc = cmd("run", import_str, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (2, "")
    lines = proc.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1].startswith('  File "') and lines[1].endswith(frame)
    assert lines[-2:] == [error, f"fastflow run: error: {message}"]
    assert not [line for line in lines[:-1] if "fastflow" in line], "only the user's frames"


# --- environment variables -------------------------------------------------------------


def test_recovery_directory_from_the_environment_makes_a_second_run_resume(tmp_path):
    flow_file = write(tmp_path / "recovery.py", RUNNING_SUM.format(inp=[0, 1, 2]))
    assert cmd("init-recovery", "db", 1, cwd=tmp_path).returncode == 0
    env = {
        "FASTFLOW_RECOVERY_DIRECTORY": "db",
        "FASTFLOW_SNAPSHOT_INTERVAL": "30",
        "FASTFLOW_BACKUP_INTERVAL": "180",
    }
    assert cmd("run", "recovery.py", cwd=tmp_path, env=env).stdout == (
        "('ALL', 0)\n('ALL', 1)\n('ALL', 3)\n"
    )
    flow_file.write_text(RUNNING_SUM.format(inp=[0, 1, 2, 3, 4]))
    resumed = cmd("run", "recovery.py", cwd=tmp_path, env=env)
    assert (resumed.returncode, resumed.stdout, resumed.stderr) == (
        0,
        "('ALL', 6)\n('ALL', 10)\n",
        "",
    )
    # Without the variable the run starts from scratch.
    assert cmd("run", "recovery.py", cwd=tmp_path).stdout.splitlines()[-1] == "('ALL', 10)"


@pytest.mark.parametrize(
    "args, env",
    [(["-s", "0"], {}), ([], {"FASTFLOW_SNAPSHOT_INTERVAL": "0"})],
    ids=["option", "environment"],
)
def test_snapshot_interval_zero_snapshots_after_every_round(tmp_path, args, env):
    # As with Bytewax's `-s 0`: every round closes an epoch, so a run that fails on its
    # fourth item has committed the first three, and the fixed flow resumes after them.
    flow_file = write(tmp_path / "recovery.py", RUNNING_SUM.format(inp=[1, 2, 3, "boom"]))
    assert cmd("init-recovery", "db", 1, cwd=tmp_path).returncode == 0
    failed = cmd("run", *args, "-r", "db", "recovery.py", cwd=tmp_path, env=env)
    assert (failed.returncode, failed.stdout) == (1, "('ALL', 1)\n('ALL', 3)\n('ALL', 6)\n")
    flow_file.write_text(RUNNING_SUM.format(inp=[1, 2, 3, 4]))
    resumed = cmd("run", *args, "-r", "db", "recovery.py", cwd=tmp_path, env=env)
    assert (resumed.returncode, resumed.stdout, resumed.stderr) == (0, "('ALL', 10)\n", "")


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("FASTFLOW_SNAPSHOT_INTERVAL", "abc", "'abc' is not a number of seconds"),
        ("FASTFLOW_BACKUP_INTERVAL", "-1", "'-1' must not be negative"),
        ("FASTFLOW_WORKERS_PER_PROCESS", "0", "'0' must be at least 1"),
    ],
)
def test_bad_environment_values_are_one_line(tmp_path, variable, value, message):
    write(tmp_path / "double.py", DOUBLE)
    proc = cmd("run", "double.py", cwd=tmp_path, env={variable: value})
    assert_bad_input(proc, f"fastflow run: error: environment variable {variable}: {message}")


def test_command_line_options_override_the_environment(tmp_path):
    write(tmp_path / "double.py", DOUBLE)
    env = {"FASTFLOW_SNAPSHOT_INTERVAL": "abc", "FASTFLOW_RECOVERY_DIRECTORY": "nodir"}
    assert cmd("init-recovery", "db", 1, cwd=tmp_path).returncode == 0
    proc = cmd("run", "-s", "5", "-r", "db", "double.py", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, DOUBLED, "")


def test_bytewax_recovery_variables_are_honoured_with_a_warning(tmp_path):
    # A deployment migrated from Bytewax keeps its variables: never a silent run without
    # recovery that re-processes the input.
    flow_file = write(tmp_path / "recovery.py", RUNNING_SUM.format(inp=[0, 1, 2]))
    assert cmd("init-recovery", "db", 1, cwd=tmp_path).returncode == 0
    env = {"BYTEWAX_RECOVERY_DIRECTORY": "db", "BYTEWAX_SNAPSHOT_INTERVAL": "30",
           "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "180"}
    first = cmd("run", "recovery.py", cwd=tmp_path, env=env)
    assert first.stdout == "('ALL', 0)\n('ALL', 1)\n('ALL', 3)\n"
    assert "BYTEWAX_RECOVERY_DIRECTORY is read as FASTFLOW_RECOVERY_DIRECTORY" in first.stderr
    flow_file.write_text(RUNNING_SUM.format(inp=[0, 1, 2, 3]))
    resumed = cmd("run", "recovery.py", cwd=tmp_path, env=env)
    assert (resumed.returncode, resumed.stdout) == (0, "('ALL', 6)\n")


def test_fastflow_variables_win_over_bytewax_ones(tmp_path):
    write(tmp_path / "double.py", DOUBLE)
    env = {"FASTFLOW_SNAPSHOT_INTERVAL": "5", "BYTEWAX_SNAPSHOT_INTERVAL": "abc"}
    proc = cmd("run", "double.py", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout) == (0, DOUBLED)
    assert proc.stderr == (
        "BYTEWAX_SNAPSHOT_INTERVAL is read as FASTFLOW_SNAPSHOT_INTERVAL, fastflow's name for "
        "it (ignored: FASTFLOW_SNAPSHOT_INTERVAL is set)\n"
    )


def test_a_bad_bytewax_variable_is_named(tmp_path):
    write(tmp_path / "double.py", DOUBLE)
    proc = cmd("run", "double.py", cwd=tmp_path, env={"BYTEWAX_WORKERS_PER_PROCESS": "0"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "fastflow run: error: environment variable BYTEWAX_WORKERS_PER_PROCESS: '0' must be "
        "at least 1"
    )


@pytest.mark.parametrize("variable", ["BYTEWAX_ADDRESSES", "BYTEWAX_PROCESS_ID"])
def test_bytewax_one_command_per_machine_variables_are_refused(tmp_path, variable):
    write(tmp_path / "double.py", DOUBLE)
    proc = cmd("run", "double.py", cwd=tmp_path, env={variable: "1"})
    assert_bad_input(
        proc,
        f"fastflow run: error: environment variable {variable}: one command per machine "
        "(Bytewax's -i/-a) is not supported: run several processes on this machine with -p N, "
        "or on a Ray cluster with --ray (docs/distributed.md)",
    )


def test_version_and_help_ignore_bad_environment_values(tmp_path):
    env = {"FASTFLOW_SNAPSHOT_INTERVAL": "abc"}
    assert cmd("--version", cwd=tmp_path, env=env).returncode == 0
    assert cmd("run", "--help", cwd=tmp_path, env=env).returncode == 0


# --- Ctrl-C ---------------------------------------------------------------------------


def test_ctrl_c_stops_a_long_running_flow_with_one_line(tmp_path):
    write(
        tmp_path / "slow.py",
        HEADER
        + """
import time

def slow(x):
    if x == 1:
        time.sleep(60)
    return x

flow = Dataflow("slow")
op.output("out", op.map("slow", op.input("inp", flow, TestingSource([0, 1, 2])), slow),
          StdOutSink())
""",
    )
    proc = subprocess.Popen(
        [FASTFLOW, "run", "slow.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "0\n"  # now in (or about to enter) the sleep
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert (proc.returncode, rest, err) == (130, "", "fastflow run: interrupted\n")


# --- stdout closed early (`fastflow run flow.py | head -1`) ---------------------------------


@pytest.mark.parametrize(
    "output", ["op.output('out', nums, StdOutSink())", "op.inspect('see', nums)"]
)
def test_closed_stdout_stops_the_flow_with_one_line(tmp_path, output):
    write(
        tmp_path / "flow.py",
        HEADER
        + "flow = Dataflow('many')\n"
        + "nums = op.input('inp', flow, TestingSource(range(10**6), 100))\n"
        + f"{output}\n",
    )
    proc = subprocess.Popen(
        [FASTFLOW, "run", "flow.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout.readline() in (b"0\n", b"many.see: 0\n")
        proc.stdout.close()  # far more output is still to come: the next write fails
        err = proc.stderr.read()
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert (proc.returncode, err.decode()) == (
        1,
        "fastflow run: error: stdout was closed (broken pipe), so the flow stopped\n",
    )


# Outputs far longer than a pipe holds: `flow` has 2,000 steps to draw, `keys` 50,000 keys
# to export.
MANY_STEPS = HEADER + """
flow = Dataflow("many_steps")
stream = op.input("inp", flow, TestingSource([]))
for i in range(2_000):
    stream = op.map(f"step_{i}", stream, lambda x: x)
op.inspect("seen", stream)

keys = Dataflow("many_keys")
keyed = op.key_on("key", op.input("inp", keys, TestingSource(range(50_000))), str)
op.inspect("seen", op.stateful_map("last", keyed, lambda last, x: (x, x)))
"""


@pytest.mark.parametrize(
    "args, prog",
    [
        (["visualize", "flow.py", "--format", "json"], "fastflow visualize"),
        (["recovery", "export", "db"], "fastflow recovery export"),
        ([*PYTHON_M, "fastflow.visualize", "flow.py"], "python -m fastflow.visualize"),
    ],
    ids=["visualize", "recovery-export", "python-m-visualize"],
)
def test_every_command_reports_a_closed_stdout_in_one_line(tmp_path, args, prog):
    # `fastflow visualize flow.py --format json | head -c 100`: the reader goes away.
    write(tmp_path / "flow.py", MANY_STEPS)
    assert cmd("init-recovery", "db", 1, cwd=tmp_path).returncode == 0
    assert cmd("run", "flow.py:keys", "-r", "db", cwd=tmp_path).returncode == 0
    argv = args if args[0] == sys.executable else [FASTFLOW, *args]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.read(10)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err.decode()) == (
        1, f"{prog}: error: stdout was closed (broken pipe)\n"
    )

"""The standalone executable `dist/fastflow` (built by scripts/build-binary), run as a user would.

Every run goes through `env -i` with only HOME and TMPDIR set (no PATH, no PYTHONPATH, no
virtualenv), in an empty work directory, and must leave its TMPDIR as it found it. The binary
is rebuilt when any source is newer than it; FASTFLOW_SKIP_BINARY=1 skips this module.
"""

import argparse
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import _binary
import pytest
from _binary import HEADER, ROOT, Sandbox

import fastflow
import fastflow.cli

binary = _binary.binary  # the fixtures the binary test modules share
sandbox = _binary.sandbox
ff = _binary.ff
pytestmark = _binary.pytestmark


def test_version_is_the_packages(ff, sandbox, fastflow_command):
    assert ff("--version").startswith(f"fastflow {fastflow.__version__} (recovery store format ")
    assert sandbox.run(fastflow_command, "--version").stdout == ff("--version")


FLOW = HEADER + """
flow = Dataflow("double")
op.output("out", op.map("x2", op.input("inp", flow, TestingSource([1, 2])), lambda x: 2 * x),
          StdOutSink())
"""
BYTEWAX = HEADER.replace("fastflow", "bytewax") + """
flow = Dataflow("bw")
op.output("out", op.count_final("count", op.input("inp", flow, TestingSource(["a", "b", "a"])),
                                lambda word: word), StdOutSink())
"""
CRASH = HEADER + """
flow = Dataflow("crash")
nums = op.input("inp", flow, TestingSource([1, 2, 0, 4]))
op.output("out", op.map("inverse", nums, lambda x: 2 // x), StdOutSink())
"""


def _every_help(parser: argparse.ArgumentParser, command: Tuple[str, ...] = ()) -> Iterator[list]:
    """``--help`` of the command and of each of its subcommands, recursively."""
    yield [*command, "--help"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from _every_help(subparser, (*command, name))


@pytest.mark.parametrize(
    "args",
    [
        *_every_help(fastflow.cli._parser()),
        ["--python-path", ".", "run", "flow.py"],
        [],
        ["bogus"],
        ["run"],
        ["run", "missing.py"],
        ["run", "flow:nothing"],
        ["run", "crash.py"],
        ["run", "bytewax_flow.py"],
        ["run", "raises_on_import.py"],
        ["run", "flow.py", "-s", "soon"],
        ["run", "flow.py", "-r", "missing_dir"],
        ["init-recovery", "db", "two"],
        ["recovery", "status", "missing_dir"],
        ["--python-path", "no_such_dir", "run", "flow.py"],
    ],
    ids=lambda args: " ".join(args) or "no-arguments",
)
def test_output_and_exit_code_are_the_installed_commands(sandbox, fastflow_command, args):
    sandbox.write("flow.py", FLOW)
    sandbox.write("crash.py", CRASH)
    sandbox.write("bytewax_flow.py", BYTEWAX)
    sandbox.write("raises_on_import.py", "raise ValueError('not today')\n")
    frozen = sandbox.run(sandbox.exe, *args)
    installed = sandbox.run(fastflow_command, *args)
    assert (frozen.returncode, frozen.stdout, frozen.stderr) == (
        installed.returncode, installed.stdout, installed.stderr
    )


def test_recovery_tutorial_under_env_i(ff, sandbox):
    (sandbox.root / "bin").mkdir()  # a copy elsewhere, as if copied onto another machine
    sandbox.exe = [str(shutil.copy2(sandbox.binary, sandbox.root / "bin" / "fastflow"))]
    shutil.copy(ROOT / "examples" / "recovery.py", sandbox.work / "recovery.py")

    ff("init-recovery", "db_dir", "1")
    assert sorted(p.name for p in (sandbox.work / "db_dir").iterdir()) == ["part-0.sqlite3"]

    run = ["run", "recovery.py", "-r", "db_dir", "-s", "30", "-b", "180"]
    assert ff(*run) == "('ALL', 0)\n('ALL', 1)\n('ALL', 3)\n"

    flow_file = sandbox.work / "recovery.py"
    flow_file.write_text(flow_file.read_text().replace("inp = [0, 1, 2]", "inp = [3, 4]"))
    assert ff(*run) == "('ALL', 6)\n('ALL', 10)\n"

    assert ff(*run) == ""


MODULE_FLOW = HEADER + """
def make(name):
    flow = Dataflow(name)
    op.output("out", op.input("inp", flow, TestingSource([name])), StdOutSink())
    return flow

flow = make("default")
other = make("other")
"""


@pytest.mark.parametrize(
    ("import_str", "printed"),
    [
        ("flowmod", "default"),
        ("flowmod:other", "other"),
        ('flowmod:make("made")', "made"),
        ("pkg.inner:flow", "default"),
        ("flows/uses_helper.py", "helped"),
    ],
)
def test_import_strings_find_flows_on_disk(ff, sandbox, import_str, printed):
    sandbox.write("flowmod.py", MODULE_FLOW)
    sandbox.write("pkg/__init__.py", "")
    sandbox.write("pkg/inner.py", MODULE_FLOW)
    sandbox.write("flows/helper.py", "WORD = 'helped'\n")
    sandbox.write("flows/uses_helper.py", "from helper import WORD\nfrom flowmod import make\n"
                  "flow = make(WORD)\n")
    (sandbox.work / "flows" / "flowmod.py").symlink_to(sandbox.work / "flowmod.py")
    assert ff("run", import_str) == f"{printed}\n"


STDLIB_FLOW = HEADER + """
import csv, fractions, hashlib, io, json, statistics, textwrap
import xml.etree.ElementTree as ET
from decimal import Decimal
from email.utils import parseaddr

def describe(nums):
    row = next(csv.reader(io.StringIO(",".join(map(str, nums)))))
    return json.dumps({
        "mean": statistics.mean(nums),
        "third": str(fractions.Fraction(sum(nums), 3)),
        "sha": hashlib.sha256(",".join(row).encode()).hexdigest()[:8],
        "xml": ET.fromstring("<a><b/></a>")[0].tag,
        "dec": str(Decimal("0.1") + Decimal("0.2")),
        "mail": parseaddr("Ada <ada@example.org>")[1],
        "wrap": textwrap.shorten("a b c d e f", 7),
    }, sort_keys=True)

flow = Dataflow("stdlib")
op.output("out", op.map("describe", op.input("inp", flow, TestingSource([[1, 2, 3]])),
                        describe), StdOutSink())
"""


def test_flows_import_the_standard_library_from_the_bundle(ff, sandbox, fastflow_command):
    sandbox.write("stdlib_flow.py", STDLIB_FLOW)
    printed = ff("run", "stdlib_flow.py")
    assert printed == (
        '{"dec": "0.3", "mail": "ada@example.org", "mean": 2, "sha": "8a6ae151", '
        '"third": "2", "wrap": "a [...]", "xml": "b"}\n'
    )
    assert printed == sandbox.run(fastflow_command, "run", "stdlib_flow.py").stdout


PACKAGE_FLOW = HEADER + """
import json  # the standard library's, not the one in the package directory
from greeting import shout

assert json.dumps([1]) == "[1]"
flow = Dataflow("greet")
op.output("out", op.map("shout", op.input("inp", flow, TestingSource(["hi"])), shout),
          StdOutSink())
"""
VERSION_FLOW = HEADER + """
from sys import version_info

flow = Dataflow("version")
op.output("out", op.input("inp", flow, TestingSource(["%d.%d" % version_info[:2]])),
          StdOutSink())
"""


def _write_greeting(directory: Path) -> None:
    (directory / "greeting").mkdir(parents=True)
    (directory / "greeting" / "__init__.py").write_text(
        "def shout(word):\n    return word.upper() + '!'\n"
    )
    (directory / "json.py").write_text("raise ImportError('shadowed the standard library')\n")


def test_third_party_packages_come_from_python_path_or_virtualenv(ff, sandbox):
    sandbox.write("greet.py", PACKAGE_FLOW)
    _write_greeting(sandbox.work / "libs")

    without = sandbox.run(sandbox.exe, "run", "greet.py")
    assert without.returncode == 2
    assert "No module named 'greeting'" in without.stderr

    assert ff("--python-path", "libs", "run", "greet.py") == "HI!\n"
    assert ff("run", "greet.py", FASTFLOW_PYTHONPATH=f"/nowhere{os.pathsep}libs") == "HI!\n"

    # An active virtualenv: its site-packages, and the .pth files in there, are used.
    sandbox.write("version.py", VERSION_FLOW)
    version = ff("run", "version.py").strip()
    site_packages = sandbox.root / "venv" / "lib" / f"python{version}" / "site-packages"
    site_packages.mkdir(parents=True)
    _write_greeting(sandbox.root / "src")
    (site_packages / "greeting.pth").write_text(f"{sandbox.root / 'src'}\n")
    assert ff("run", "greet.py", VIRTUAL_ENV=str(sandbox.root / "venv")) == "HI!\n"


SLEEPY = HEADER + """
import sys, time

def nap(x):
    print("napping", file=sys.stderr, flush=True)
    time.sleep(120)
    return x

flow = Dataflow("sleepy")
op.output("out", op.map("nap", op.input("inp", flow, TestingSource([1])), nap), StdOutSink())
"""


def _interrupted(sandbox: Sandbox, exe: List[str]) -> Tuple[int, str, str, List[str]]:
    """Exit code, stdout and stderr after Ctrl-C, and what TMPDIR held before it."""
    proc = sandbox.start(exe, "run", "sleepy.py")
    assert proc.stderr.readline() == "napping\n"
    in_tmpdir = [path.name for path in sandbox.tmpdir.iterdir()]
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err, in_tmpdir


def test_ctrl_c_exits_like_the_installed_command_and_leaves_no_temporary_files(
    sandbox, fastflow_command
):
    sandbox.write("sleepy.py", SLEEPY)
    *frozen, unpacked = _interrupted(sandbox, sandbox.exe)
    assert [name[:4] for name in unpacked] == ["_MEI"]  # the bundle, unpacked while running
    assert list(sandbox.tmpdir.iterdir()) == []
    assert frozen[0] == 130
    assert frozen == list(_interrupted(sandbox, fastflow_command)[:3])


# A running sum per key over 0..N-1, ten items a batch, with a slow map for many epochs.
# While ./stall exists the source holds back at STALL_AT, and each snapshot it takes there
# adds a line to ./stall-snapshots: after two, the first one's epoch is committed.
STALLING = HEADER + """
import os, time
from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition

N, STALL_AT = 3000, 1200


class Numbers(StatefulSourcePartition):
    def __init__(self, position):
        self.position = position or 0

    def next_batch(self):
        if self.position >= N:
            raise StopIteration()
        if self.position == STALL_AT and os.path.exists("stall"):
            return []
        batch = list(range(self.position, min(self.position + 10, N)))
        self.position += len(batch)
        return batch

    def snapshot(self):
        if self.position == STALL_AT:
            with open("stall-snapshots", "a") as f:
                f.write("x\\n")
        return self.position


class NumberSource(FixedPartitionedSource):
    def list_parts(self):
        return ["numbers"]

    def build_part(self, step_id, for_part, resume_state):
        return Numbers(resume_state)


def slow(batch):
    time.sleep(0.002)
    return batch


def add(total, x):
    total = (total or 0) + x
    return total, total


flow = Dataflow("sums")
nums = op.flat_map_batch("slow", op.input("inp", flow, NumberSource()), slow)
keyed = op.key_on("key", nums, lambda x: f"k{x % 7}")
op.output("out", op.stateful_map("sum", keyed, add), StdOutSink())
"""


def expected_lines(n: int) -> List[str]:
    totals: Dict[str, int] = {}
    lines = []
    for x in range(n):
        key = f"k{x % 7}"
        totals[key] = totals.get(key, 0) + x
        lines.append(str((key, totals[key])))
    return lines


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120  # a guard against hanging, not a timing assertion
    while not (path.exists() and len(path.read_text().splitlines()) >= count):
        assert proc.poll() is None, f"the flow ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "the flow never stalled"
        time.sleep(0.02)


def test_sigkill_mid_stream_then_resume_equals_an_uninterrupted_run(ff, sandbox):
    n, stall_at = 3000, 1200
    expected = expected_lines(n)
    sandbox.write("sums.py", STALLING)
    ff("init-recovery", "db", "1")
    (sandbox.work / "stall").touch()

    proc = sandbox.start(sandbox.exe, "run", "sums.py", "-r", "db", "-s", "0.05")
    killed_run = [proc.stdout.readline().rstrip("\n") for _ in range(stall_at)]
    assert killed_run == expected[:stall_at]
    _wait_for_lines(sandbox.work / "stall-snapshots", 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the bootloader and the Python process under it
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    left_behind = sorted(sandbox.tmpdir.iterdir())  # SIGKILL cannot be cleaned up after

    (sandbox.work / "stall").unlink()
    resumed = ff("run", "sums.py", "-r", "db", "-s", "0.05").splitlines()
    assert resumed == expected[stall_at:]
    assert killed_run + resumed == expected
    assert ff("run", "sums.py", "-r", "db", "-s", "0.05") == ""
    assert sorted(sandbox.tmpdir.iterdir()) == left_behind



def test_the_binary_serves_the_dashboard_page_from_inside_it(ff, sandbox):
    import json
    import re
    import urllib.request

    sandbox.write("numbers.py", HEADER + """
flow = Dataflow("numbers")
op.output("out", op.input("inp", flow, TestingSource(range(3))), StdOutSink())
""")
    ff("init-recovery", "db", "1")
    ff("run", "numbers.py", "-r", "db")
    proc = sandbox.start(sandbox.exe, "dashboard", "db", "--api", "127.0.0.1:0")
    try:
        line = proc.stdout.readline()
        url = re.fullmatch(r"dashboard of db at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops it\)\n",
                           line).group(1)
        with urllib.request.urlopen(url, timeout=60) as page:
            served = page.read()
        assert served == (ROOT / "fastflow" / "_observe" / "dashboard.html").read_bytes()
        with urllib.request.urlopen(url + "status", timeout=60) as status:
            assert json.loads(status.read())["state"] == "at_rest"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 130

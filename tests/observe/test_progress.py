"""Progress bars of the store tools: drawn on a terminal, absent from pipes.

Each command runs as the real `fastflow` command twice on its own copy of a store: once with
standard error on a pseudo-terminal (the bar must appear, counting bytes, and be wiped before
the command's own message), once with standard error piped (it must stay empty).
"""

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path
from typing import List, Tuple

import pytest
from _paths import ROOT, TESTS

EXAMPLES = ROOT / "examples"
FIXTURES = TESTS / "fixtures"


def on_terminal(argv: List[str], cwd: Path) -> Tuple[int, str, str]:
    """Run ``argv`` with standard error on a pseudo-terminal: (exit code, stdout, terminal)."""
    master, slave = os.openpty()
    # A new pseudo-terminal has 0 columns; give it a real terminal's size.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    seen = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not data:
            break
        seen.append(data)
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=120), out, b"".join(seen).decode()


def piped(argv: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def store(tmp_path_factory, fastflow_command) -> Path:
    """A two-partition store holding the recovery example's state, and its export."""
    where = tmp_path_factory.mktemp("progress")
    shutil.copy(EXAMPLES / "recovery.py", where / "recovery.py")
    for args in (["init-recovery", "db", "2"], ["run", "recovery.py", "-r", "db"],
                 ["recovery", "export", "db", "-o", "state.jsonl"]):
        subprocess.run([*fastflow_command, *args], cwd=where, check=True, capture_output=True,
                       timeout=120)
    return where


COMMANDS = {
    "export": (["recovery", "export", "db", "-o", "out.jsonl"], "exporting",
               "exported 2 key(s) of db to out.jsonl\n"),
    "import": (["recovery", "import", "db", "state.jsonl"], "importing",
               "imported 2 state(s) and 0 deletion(s) into db as epoch 2; the next run resumes "
               "at epoch 3\n"),
    "repartition": (["recovery", "repartition", "db", "3"], "repartitioning",
                    "repartitioned db from 2 to 3 partition(s) (2 key(s)); the next run resumes "
                    "at epoch 2\n"),
    "backup": (["recovery", "backup", "db", "copy"], "backing up",
               "backed up 2 partition(s) of db to copy; a run on it resumes at epoch 2\n"),
}


def fresh_copy(store: Path, tmp_path: Path) -> Path:
    for name in ("db", "state.jsonl"):
        copy = shutil.copytree if name == "db" else shutil.copy
        copy(store / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_terminal_shows_a_bar_of_bytes_then_only_the_message(
    name, store, tmp_path, fastflow_command
):
    args, label, message = COMMANDS[name]
    code, out, terminal = on_terminal([*fastflow_command, *args], fresh_copy(store, tmp_path))
    assert code == 0, terminal
    # label, percentage, bytes done of the store's bytes, time spent<left, rate
    bar = rf"\r{label}: +\d+%\|.*\| [\d.]+[kM]?/[\d.]+[kM]? \[\d\d:\d\d<[\d:?]+, .*B/s\]"
    assert re.match(bar, terminal), terminal
    assert re.search(r"\r +\r$", terminal), terminal  # wiped before the command's message
    assert out == message


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_pipe_gets_no_bar(name, store, tmp_path, fastflow_command):
    args, _, message = COMMANDS[name]
    done = piped([*fastflow_command, *args], fresh_copy(store, tmp_path))
    assert done.returncode == 0
    assert done.stderr == ""
    assert done.stdout == message


def test_upgrade_shows_a_bar_on_a_terminal_and_nothing_piped(tmp_path, fastflow_command):
    for run in ("terminal", "pipe"):
        where = tmp_path / run
        shutil.copytree(FIXTURES / "store-v1", where / "db")
        argv = [*fastflow_command, "recovery", "upgrade", "db"]
        if run == "terminal":
            code, out, terminal = on_terminal(argv, where)
            assert code == 0, terminal
            assert re.match(r"\rupgrading: +\d+%\|", terminal), terminal
        else:
            done = piped(argv, where)
            code, out = done.returncode, done.stdout
            assert done.stderr == ""
        assert code == 0
        assert out == "upgraded 2 partition(s) of db to format 2; the next run resumes at epoch 5\n"


DASHBOARD_FLOW = TESTS / "fixtures" / "dashboard_flow.py"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_run_progress_redraws_one_status_line_on_a_terminal(processes, tmp_path,
                                                            fastflow_command):
    """The line shows items/s, the epoch and the last commit; the flow ends when it has."""
    subprocess.run([*fastflow_command, "init-recovery", "db", "1"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    gate = tmp_path / "gate"
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    proc = subprocess.Popen(
        [*fastflow_command, "run", str(DASHBOARD_FLOW), "-r", "db", "-s", "0.2", "--progress",
         "-p", processes],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave,
        env={**os.environ, "DASHBOARD_GATE": str(gate)},
    )
    os.close(slave)
    seen = b""
    line = re.compile(rb"\rdigits: running \| ([\d,]+) items/s \| epoch (\d+) \| committed (\d+)"
                      rb" \| last commit [\d.]+ ms, [\d,]+ B")
    deadline = time.monotonic() + 120  # a hang guard: then the flow is ended, and we fail
    found = []
    while True:  # until a line with items flowing and a commit; the pty ends when the run does
        if (found or time.monotonic() > deadline) and not gate.exists():
            gate.touch()  # seen (or given up): now let the flow end
        if not select.select([master], [], [], 0.5)[0]:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the run is over
            break
        if not data:
            break
        seen += data
        found = [m for m in line.finditer(seen) if int(m.group(1).replace(b",", b"")) > 0]
    os.close(master)
    assert proc.wait(timeout=120) == 0
    assert found, seen
    assert int(found[-1].group(2)) > int(found[-1].group(3))  # the epoch is past the committed
    assert seen.endswith(b"\r")  # the last thing drawn wipes the line


def test_run_progress_prints_nothing_when_stderr_is_a_pipe(tmp_path, fastflow_command):
    (tmp_path / "gate").touch()  # one round, then the flow ends
    done = subprocess.run(
        [*fastflow_command, "run", str(DASHBOARD_FLOW), "--progress"], cwd=tmp_path,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "DASHBOARD_GATE": str(tmp_path / "gate")},
    )
    assert done.returncode == 0
    assert done.stderr == ""

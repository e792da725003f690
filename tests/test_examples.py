"""Every example in examples/ runs with the real `fastflow` command and prints what it should."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import List

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def fastflow(command: List[str], *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [*command, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    return proc.stdout


def test_wordcount(tmp_path: Path, fastflow_command: List[str]) -> None:
    out = fastflow(fastflow_command, "run", str(EXAMPLES / "wordcount.py"), cwd=tmp_path)
    assert out.splitlines() == [
        "and: 2",
        "bread: 2",
        "children: 1",
        "down: 1",
        "for: 1",
        "into: 1",
        "its: 1",
        "mill: 2",
        "past: 1",
        "river: 3",
        "runs: 1",
        "sends: 1",
        "the: 7",
        "to: 1",
        "town: 2",
        "turns: 1",
        "wheel: 1",
    ]


def test_join(tmp_path: Path, fastflow_command: List[str]) -> None:
    out = fastflow(fastflow_command, "run", str(EXAMPLES / "join.py"), cwd=tmp_path)
    assert out == (
        "o2: ben paid 30 for teapot\n"
        "o1: ada paid 45 for kettle\n"
        "o4: ada paid 8 for tea\n"
    )


def test_windowed_average(tmp_path: Path, fastflow_command: List[str]) -> None:
    out = fastflow(fastflow_command, "run", str(EXAMPLES / "windowed_average.py"), cwd=tmp_path)
    assert out == (
        "hall 12:00-12:10: mean 20.83 C (n=3)\n"
        "hall: late reading from 12:03 dropped\n"
        "hall 12:10-12:20: mean 22.00 C (n=1)\n"
        "attic 12:00-12:10: mean 25.00 C (n=1)\n"
        "attic 12:10-12:20: mean 26.50 C (n=2)\n"
        "hall 12:30-12:40: mean 23.00 C (n=1)\n"
    )


EVENTS_OUT = (
    "WARN 1: slow response from database (840 ms)\n"
    "ERROR 1: payment provider unreachable\n"
    "WARN 2: retrying payment provider\n"
    "ERROR 2: disk /var almost full (97%)\n"
)


def test_file_to_file_default_paths(tmp_path: Path, fastflow_command: List[str]) -> None:
    assert fastflow(fastflow_command, "run", str(EXAMPLES / "file_to_file.py"), cwd=tmp_path) == ""
    assert (tmp_path / "file_to_file.out").read_text() == EVENTS_OUT


def test_file_to_file_resumes_with_more_input(
    tmp_path: Path, fastflow_command: List[str]
) -> None:
    log = tmp_path / "in.log"
    log.write_text((EXAMPLES / "data" / "events.log").read_text())
    flow = f"{EXAMPLES / 'file_to_file.py'}:get_flow('in.log', 'out.txt')"
    fastflow(fastflow_command, "init-recovery", "db", "1", cwd=tmp_path)
    fastflow(fastflow_command, "run", flow, "-r", "db", cwd=tmp_path)
    assert (tmp_path / "out.txt").read_text() == EVENTS_OUT

    with log.open("a") as more:
        more.write("2024-06-01T12:01:00 WARN cache miss rate 40%\n")
        more.write("2024-06-01T12:01:05 INFO all good\n")
    fastflow(fastflow_command, "run", flow, "-r", "db", cwd=tmp_path)
    assert (tmp_path / "out.txt").read_text() == EVENTS_OUT + "WARN 3: cache miss rate 40%\n"


# The file-to-file example killed mid-stream. The flow file below patches the
# example's parser so that the first run pauses (a snapshot is taken), runs on
# (writing past that snapshot), then hangs on a given line, where the test
# kills it with SIGKILL. A file `gate` turns the patch off.
GATED = """
import sys
import time
from pathlib import Path

sys.path.insert(0, {examples!r})
import file_to_file as example

GATE = Path("gate")
real_parse = example.parse


def parse(line):
    if not GATE.exists():
        if line.endswith(" event 3500"):
            time.sleep(0.5)  # longer than an epoch: the batch ends with a snapshot
        elif line.endswith(" event 7500"):
            GATE.touch()
            time.sleep(600)  # killed here
    return real_parse(line)


example.parse = parse
flow = example.get_flow("in.log", "out.txt")
"""

LINES = 20_000
EPOCH = "0.2"  # seconds; the gated parser pauses longer than this


def write_input(path: Path) -> None:
    levels = ("INFO", "WARN", "ERROR", "WARN", "INFO")
    path.write_text(
        "".join(f"2024-06-01T12:00:00 {levels[i % 5]} event {i}\n" for i in range(LINES))
    )


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, "the flow ended before reaching the line it hangs on"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_file_to_file_killed_and_resumed_equals_an_uninterrupted_run(
    tmp_path: Path, fastflow_command: List[str]
) -> None:
    (tmp_path / "gated.py").write_text(GATED.format(examples=str(EXAMPLES)))
    write_input(tmp_path / "in.log")
    out, gate = tmp_path / "out.txt", tmp_path / "gate"

    gate.touch()
    fastflow(fastflow_command, "run", "gated.py", cwd=tmp_path)
    uninterrupted = out.read_bytes()
    assert uninterrupted.count(b"\n") == LINES * 3 // 5
    out.unlink()
    gate.unlink()

    fastflow(fastflow_command, "init-recovery", "db", "1", cwd=tmp_path)
    run = [*fastflow_command, "run", "gated.py", "-r", "db", "-s", EPOCH]
    proc = subprocess.Popen(run, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(gate, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(out.read_bytes()) < len(uninterrupted)

    assert fastflow(fastflow_command, "run", "gated.py", "-r", "db", "-s", EPOCH,
                    cwd=tmp_path) == ""
    assert out.read_bytes() == uninterrupted

"""What Ray actors print reaches the `fastflow run` process whole, in order, and batched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from multiprocessing import Pipe
from pathlib import Path

import ray  # noqa: F401 - the extra must be installed, or these tests fail loudly

from fastflow._runtime.distributed.ray_actors import _Output

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))
LINES = 20000

PRINTS = f"""
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource


def show(item):
    print(f"{{item[0]}} line {{item[1]}}")
    return item


flow = Dataflow("prints")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(range({LINES}))), lambda i: str(i % 4))
shown = op.map("show", op.stateful_map("pass", keyed, lambda s, i: (s, i)), show)
op.output("out", op.filter("none", shown, lambda item: False), StdOutSink())
"""


def test_many_printed_lines_come_back_exact_and_in_order_per_key(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(PRINTS)
    instances = tempfile.mkdtemp(prefix="ffo")  # short: Ray's socket paths must fit
    try:
        proc = subprocess.run([FASTFLOW, "run", "flow.py", "--ray", "-p", "2"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TMPDIR": instances, "RAY_ADDRESS": ""})
        assert (proc.returncode, proc.stderr) == (0, "")
        lines = proc.stdout.splitlines()
        assert proc.stdout.endswith("\n")
        assert sorted(lines) == sorted(f"{i % 4} line {i}" for i in range(LINES))
        for key in "0123":  # one key's lines come from one actor, in the order it printed
            assert [line for line in lines if line[0] == key] == [
                f"{key} line {i}" for i in range(int(key), LINES, 4)
            ]
        assert os.listdir(instances) == []  # the local Ray instance's files went with it
    finally:
        shutil.rmtree(instances, ignore_errors=True)


def test_lines_are_held_and_sent_whole_and_the_last_partial_line_on_flush() -> None:
    ours, theirs = Pipe()
    out = _Output(theirs)
    out.write("a")
    out.write("\n")  # within the interval of the start: held
    out.write("b\nc")
    assert not ours.poll()
    out._sent_at -= 1  # the interval passed
    out.write("\n")
    assert ours.recv() == ("output", "a\nb\nc\n")
    out.write("d\ne")
    out.write("x" * (70 << 10) + "\nf")  # over the size: sent up to the last whole line
    assert ours.recv() == ("output", "d\ne" + "x" * (70 << 10) + "\n")
    assert not ours.poll()
    out.flush()
    assert ours.recv() == ("output", "f")
    out.flush()
    assert not ours.poll()

"""A user error deep in recursion: its traceback folds the recursion, as Python does.

Python folds a frame that repeats itself ("[Previous line repeated N more times]") but not
a cycle of frames (f -> g -> f ...): 5,000 frames printed 15,000 lines.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from fastflow._tracebacks import FoldedStack

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))

FLOW = """
import sys
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

sys.setrecursionlimit(20000)


def down(n):
    if n == 0:
        raise ValueError("bottom")
    return across(n - 1)


def across(n):
    return down(n)


flow = Dataflow("deep")
dug = op.map("dig", op.input("inp", flow, TestingSource([2500])), down)
op.output("out", dug, StdOutSink())
"""


def frame(line: int, name: str) -> traceback.FrameSummary:
    return traceback.FrameSummary("flow.py", line, name, lookup_line=False, line="")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_user_error_under_5000_frames_of_recursion_prints_a_short_traceback(
    tmp_path: Path, processes: str
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    proc = subprocess.run([FASTFLOW, "run", "flow.py", "-p", processes], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    where = tmp_path / "flow.py"
    down = (f'  File "{where}", line 14, in down\n    return across(n - 1)\n'
            "           ^^^^^^^^^^^^^\n")
    across = f'  File "{where}", line 18, in across\n    return down(n)\n           ^^^^^^^\n'
    failed = "the flow failed" if processes == "1" else "process 0 of 2 failed"
    assert proc.stderr == (
        "Traceback (most recent call last):\n"
        + (down + across) * 2
        + "  [Previous 2 frames repeated 2498 more times]\n"
        f'  File "{where}", line 13, in down\n    raise ValueError("bottom")\n'
        "ValueError: bottom\n"
        f"fastflow run: error: {failed}: error calling `mapper` in step "
        "'deep.dig.flat_map_batch': ValueError: bottom\n"
    )


def test_a_frame_repeating_itself_is_folded_as_python_folds_it() -> None:
    frames = [frame(1, "top"), *[frame(5, "again")] * 50, frame(9, "bottom")]
    assert FoldedStack(frames).format() == traceback.StackSummary.from_list(frames).format()


def test_a_cycle_of_three_frames_is_shown_once_then_counted() -> None:
    cycle = [frame(2, "a"), frame(3, "b"), frame(4, "c")]
    lines = FoldedStack([frame(1, "top"), *cycle * 40, frame(9, "bottom")]).format()
    assert lines == [
        '  File "flow.py", line 1, in top\n',
        '  File "flow.py", line 2, in a\n',
        '  File "flow.py", line 3, in b\n',
        '  File "flow.py", line 4, in c\n',
        "  [Previous 3 frames repeated 39 more times]\n",
        '  File "flow.py", line 9, in bottom\n',
    ]


def test_a_short_repetition_is_shown_in_full() -> None:
    frames = [frame(2, "a"), frame(3, "b")] * 2 + [frame(9, "bottom")]
    assert len(FoldedStack(frames).format()) == 5


"""Read a log file and write a numbered copy of its warnings and errors, with recovery.

Each ``WARN`` and ``ERROR`` line of the input is written to the output file as
``LEVEL N: message``, where N counts that level's lines so far. The count is
per-level state, so with a recovery directory a run that is killed part way
and started again continues exactly where its last snapshot was: the input
resumes at the byte it had reached, the counts resume, and the output file is
cut back to what it held at that snapshot before anything more is written.
The output file ends up the same as after a run that was never interrupted.

Try it::

    fastflow init-recovery db 1
    fastflow run "examples/file_to_file.py:get_flow('examples/data/events.log', 'out.txt')" -r db

Without arguments (``fastflow run examples/file_to_file.py``) it reads
``examples/data/events.log`` and writes ``file_to_file.out`` in the current
directory.
"""

from pathlib import Path
from typing import Optional, Tuple, Union

import fastflow.operators as op
from fastflow.connectors.files import FileSink, FileSource
from fastflow.dataflow import Dataflow

EVENTS = Path(__file__).parent / "data" / "events.log"
LEVELS = ("WARN", "ERROR")


def parse(line: str) -> Optional[Tuple[str, str]]:
    """``"<time> LEVEL message"`` as ``(LEVEL, message)``, for the levels kept; else None."""
    _time, level, message = line.split(" ", 2)
    return (level, message) if level in LEVELS else None


def number(count: Optional[int], message: str) -> Tuple[int, str]:
    """Count this level's lines; emit the numbered line."""
    count = (count or 0) + 1
    return count, f"{count}: {message}"


def get_flow(in_path: Union[Path, str], out_path: Union[Path, str]) -> Dataflow:
    """Copy the warnings and errors of ``in_path`` to ``out_path``, numbered per level."""
    flow = Dataflow("file_to_file")
    lines = op.input("read", flow, FileSource(in_path))
    kept = op.filter_map("parse", lines, parse)
    numbered = op.stateful_map("number", kept, number)
    labelled = op.map("label", numbered, lambda item: (item[0], f"{item[0]} {item[1]}"))
    op.output("write", labelled, FileSink(out_path))
    return flow


flow = get_flow(EVENTS, "file_to_file.out")

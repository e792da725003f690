"""Console connectors: print output items, read input lines.

>>> import fastflow.operators as op
>>> from fastflow.dataflow import Dataflow
>>> from fastflow.testing import TestingSource, run_main
>>> flow = Dataflow("stdio_eg")
>>> op.output("out", op.input("inp", flow, TestingSource([("ALL", 0), "text"])), StdOutSink())
>>> run_main(flow)
('ALL', 0)
text
"""

from __future__ import annotations

import sys
from typing import Any

from fastflow.inputs import DynamicSource, StatelessSourcePartition
from fastflow.outputs import DynamicSink, StatelessSinkPartition

__all__ = ["StdInSource", "StdOutSink"]


class _PrintPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        out = sys.stdout
        # One write of whole lines: processes sharing stdout (-p N) never split a line.
        out.write("\n".join(map(str, items)) + "\n")
        out.flush()


class StdOutSink(DynamicSink[Any]):
    """Print every item on its own line, as ``print(item)`` would."""

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[Any]:
        """Every worker prints to this process's stdout."""
        return _PrintPartition()


class _LinePartition(StatelessSourcePartition[str]):
    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size

    def next_batch(self) -> list[str]:
        lines: list[str] = []
        for _ in range(self._batch_size):
            line = sys.stdin.readline()
            if not line:
                if lines:
                    return lines
                raise StopIteration()
            lines.append(line.rstrip("\n"))
        return lines


class StdInSource(DynamicSource[str]):
    """Read stdin line by line (without the newline); the input ends with stdin.

    There is nothing to resume from: input read before a restart is gone.
    """

    def __init__(self, batch_size: int = 1) -> None:
        self._batch_size = batch_size

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSourcePartition[str]:
        """Build the reading partition."""
        return _LinePartition(self._batch_size)

"""What the tests of ``-p N`` and ``--ray`` share: the flows to compare, a slow keyed flow."""

from __future__ import annotations

from pathlib import Path

from _paths import ROOT

FLOWS = sorted((ROOT / "tests" / "flows").glob("*.py")) + sorted((ROOT / "examples").glob("*.py"))

# Flows whose output depends on how items are batched or timed, which processes change.
BATCHING_DEPENDENT = {
    "stateful_batch_order": "prints each batch a key receives; processes batch differently",
    "stateful_notify_order": "prints what arrived before a timer fired; that depends on timing",
    "stateful_notify_timing": "the round an item reaches a step decides when it is notified",
    "raising": "its error line names the failed process (runtime/test_processes.py tests it)",
}

SLOW_KEYED = """
import time
import fastflow.operators as op
from fastflow.connectors.files import FileSink
from fastflow.dataflow import Dataflow
from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition

N, DELAY = {n}, {delay}


class Part(StatefulSourcePartition):
    def __init__(self, index, resume):
        self.index, self.at = index, resume or 0

    def next_batch(self):
        if self.at >= N:
            raise StopIteration()
        {fail}
        time.sleep(DELAY)
        batch = [self.index * 1_000_000 + i for i in range(self.at, min(self.at + 10, N))]
        self.at += len(batch)
        return batch

    def snapshot(self):
        return self.at


class Numbers(FixedPartitionedSource):
    def list_parts(self):
        return ["0", "1", "2", "3"]

    def build_part(self, step_id, key, resume):
        return Part(int(key), resume)


flow = Dataflow("slow")
nums = op.input("inp", flow, Numbers())
sums = op.stateful_map("sum", op.key_on("key", nums, lambda i: f"k{{i % 13}}"),
                       lambda acc, i: ((acc or 0) + i, (acc or 0) + i))
op.output("out", op.map("fmt", sums, lambda kv: (kv[0], f"{{kv[0]}} {{kv[1]}}")),
          FileSink("{out}"))
"""


def expected_sums(n: int) -> dict[str, int]:
    sums: dict[str, int] = {}
    for i in (index * 1_000_000 + at for index in range(4) for at in range(n)):
        sums[f"k{i % 13}"] = sums.get(f"k{i % 13}", 0) + i
    return sums


def write_flow(tmp_path: Path, n: int = 300, delay: float = 0.0, fail: str = "") -> None:
    (tmp_path / "flow.py").write_text(SLOW_KEYED.format(
        n=n, delay=delay, fail=fail, out=tmp_path / "sums.out"
    ))


def last_totals(out: Path) -> dict[str, int]:
    last: dict[str, int] = {}
    for line in out.read_text().splitlines():
        key, total = line.split()
        last[key] = int(total)
    return last

# A fold of 5,000 items over 7 keys, printed at the end (the --ray tests' flow).
SUMS = """
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

flow = Dataflow("sums")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(range(5000))), lambda i: str(i % 7))
op.output("out", op.fold_final("sum", keyed, lambda: 0, lambda a, i: a + i), StdOutSink())
"""

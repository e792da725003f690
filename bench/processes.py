"""Several processes: fastflow `-p 1` against `-p 2`, and Bytewax 0.21.1 `-p 2` beside it.

Run through ``scripts/bench --processes`` (Bytewax from ``.bench-venv``), or directly::

    python bench/processes.py [--bytewax-python .bench-venv/bin/python] [--rounds 5]

Each measurement is the wall time of the whole command (``fastflow run flow.py -p N``,
or ``python -m bytewax.testing flow.py -p N``, Bytewax's way to run N local processes),
start-up included, on one flow file written for both engines: a 4-partition source, a
CPU-bound map (some rounds of SHA-256 per item, ~0.4 µs each; none in the cheap case), a
key per item out of 100k keys, a running sum per key, and a sink that drops everything.
Rounds alternate the order of the commands; the table shows medians and the speed-up of
``-p 2`` over ``-p 1``.

With ``--ray``, it also starts a one-node Ray cluster (``ray start --head``, 2 CPUs) and
times ``fastflow run flow.py --ray auto -p 2`` on the same flows, and on an empty flow to
report Ray's start-up (joining the cluster, starting the actors) apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOW = '''
import hashlib
import {engine}.operators as op
from {engine}.dataflow import Dataflow
from {engine}.inputs import FixedPartitionedSource, StatefulSourcePartition
from {engine}.outputs import DynamicSink, StatelessSinkPartition

ITEMS, WORK, KEYS = {items}, {work}, 100_000


class Part(StatefulSourcePartition):
    def __init__(self, index, resume):
        self.index, self.at = index, resume or 0

    def next_batch(self):
        end = min(self.at + 1000, ITEMS // 4)
        if self.at >= end:
            raise StopIteration()
        batch = list(range(self.index * ITEMS + self.at, self.index * ITEMS + end))
        self.at = end
        return batch

    def snapshot(self):
        return self.at


class Numbers(FixedPartitionedSource):
    def list_parts(self):
        return ["0", "1", "2", "3"]

    def build_part(self, step_id, key, resume):
        return Part(int(key), resume)


class Drop(StatelessSinkPartition):
    def write_batch(self, items):
        pass


class Nowhere(DynamicSink):
    def build(self, step_id, worker_index, worker_count):
        return Drop()


def work(x):
    digest = str(x).encode()
    for _ in range(WORK):
        digest = hashlib.sha256(digest).digest()
    return x


flow = Dataflow("procs")
nums = op.map("work", op.input("inp", flow, Numbers()), work)
keyed = op.key_on("key", nums, lambda x: str(x % KEYS))
op.output("out", op.stateful_map("sum", keyed, lambda s, x: ((s or 0) + x, None)), Nowhere())
'''

CASES = [
    ("cheap keyed flow: 1M items, 100k keys", 1_000_000, 0, "-p 2 <= 1.2x the time of -p 1"),
    ("CPU-bound: 100k items, ~12 µs of user work each", 100_000, 30, "-p 2 >= 1.8x faster"),
]


def command(engine: str, python: str, processes: int) -> list[str]:
    fastflow = str(Path(sys.executable).parent / "fastflow")
    if engine == "fastflow":
        return [fastflow, "run", "flow.py", "-p", str(processes)]
    if engine == "fastflow --ray":
        return [fastflow, "run", "flow.py", "--ray", "auto", "-p", str(processes)]
    return [python, "-m", "bytewax.testing", "flow.py", "-p", str(processes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytewax-python", help="an interpreter with bytewax 0.21.1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ray", action="store_true", help="also on a local Ray cluster")
    args = parser.parse_args()
    if args.bytewax_python:  # the runs happen in a temporary directory
        args.bytewax_python = os.path.abspath(args.bytewax_python)
    engines = ["fastflow"] + (["bytewax"] if args.bytewax_python else [])
    cases = list(CASES)
    if args.ray:
        engines.append("fastflow --ray")
        cases.append(("empty flow (start-up alone)", 4, 0, ""))
        ray = str(Path(sys.executable).parent / "ray")
        subprocess.run([ray, "start", "--head", "--num-cpus", "2", "--include-dashboard",
                        "false", "--disable-usage-stats"], check=True, capture_output=True)
    try:
        _table(args, engines, cases)
    finally:
        if args.ray:
            subprocess.run([ray, "stop", "--force"], capture_output=True)


def _table(args: argparse.Namespace, engines: list[str],
           cases: list[tuple[str, int, int, str]]) -> None:
    print("| flow | engine | -p 1 (s) | -p 2 (s) | -p 1 / -p 2 | target |")
    print("|---|---|---:|---:|---:|---|")
    for label, items, work, target in cases:
        for engine in engines:
            with tempfile.TemporaryDirectory() as tmp:
                module = "bytewax" if engine == "bytewax" else "fastflow"
                Path(tmp, "flow.py").write_text(FLOW.format(engine=module, items=items,
                                                            work=work))
                times: dict[int, list[float]] = {1: [], 2: []}
                for r in range(args.rounds):
                    for processes in ((1, 2) if r % 2 == 0 else (2, 1)):
                        start = time.perf_counter()
                        subprocess.run(command(engine, args.bytewax_python, processes),
                                       cwd=tmp, check=True, capture_output=True)
                        times[processes].append(time.perf_counter() - start)
                one, two = statistics.median(times[1]), statistics.median(times[2])
                print(f"| {label} | {engine} | {one:.3f} | {two:.3f} | {one / two:.2f}x "
                      f"| {target if engine == 'fastflow' else ''} |", flush=True)


if __name__ == "__main__":
    main()

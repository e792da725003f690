"""Kafka head-to-head: fastflow, Bytewax 0.21.1, Quix Streams and a plain confluent-kafka loop.

Run through ``scripts/bench --kafka`` (which makes each engine's venv), or directly::

    python bench/kafka.py --bytewax-python .bench-venv/bin/python \\
        --quix-python .bench-quix-venv/bin/python [--rounds 3] [--events 200000]

The cluster is librdkafka's mock cluster (``fastflow.connectors.kafka.testing``), in this
process; every engine reaches it over TCP. The input topic (4 partitions) holds
``--events`` JSON events over ``--users`` users, written once before any timing. Each
measurement is a fresh interpreter running ``bench/kafka_jobs.py`` (see there for the
job) into a fresh output topic (4 partitions), fresh state and a fresh consumer group,
timed from the start of the process to its exit: start-up, imports and connecting
count, as they do for a user. After each run its output topic is read back and must be
exactly the expected one: for every user, its running totals in order, nothing more.
Rounds alternate the order of the rows; the table shows medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from fastflow.connectors.kafka.testing import MockCluster

HERE = Path(__file__).resolve().parent
PARTITIONS = 4


@dataclass
class Row:
    """One row of the table: an engine, with or without recovery."""

    name: str
    label: str
    engine: str
    recovery: bool
    target: str = ""
    times: List[float] = field(default_factory=list)
    cpu: List[float] = field(default_factory=list)
    """CPU time of the engine's process, all threads (the mock cluster's is not in it)."""

    def median(self, metric: str = "times") -> Optional[float]:
        runs = getattr(self, metric)
        return statistics.median(runs) if runs else None


def rows() -> List[Row]:
    return [
        Row("plain", "plain confluent-kafka loop (the floor)", "plain", False),
        Row("fastflow", "fastflow", "fastflow", False),
        Row("fastflow_rec", "fastflow, recovery on (-s 1)", "fastflow", True,
            "<= 1.3x plain; >= 2x Bytewax rec.; >= 3x Quix, commit 1 s"),
        Row("bytewax", "Bytewax 0.21.1", "bytewax", False),
        Row("bytewax_rec", "Bytewax 0.21.1, recovery on (-s 1)", "bytewax", True),
        Row("quix", "Quix Streams (RocksDB state), commit every 5 s", "quix", False),
        Row("quix_rec", "Quix Streams (RocksDB state), commit every 1 s", "quix", True),
    ]


def events(count: int, users: int) -> List[tuple[int, bytes, bytes]]:
    """``(partition, key, value)``: user ``u{i % users}``, a random amount (seeded)."""
    rng = random.Random(7)
    out = []
    for i in range(count):
        user = i % users
        value = json.dumps({"user": f"u{user}", "amount": rng.randrange(100)}).encode()
        out.append((user % PARTITIONS, f"u{user}".encode(), value))
    return out


def expected_totals(records: List[tuple[int, bytes, bytes]]) -> Dict[bytes, List[bytes]]:
    """Per user, the totals an engine must write, in order."""
    totals: Dict[bytes, int] = {}
    out: Dict[bytes, List[bytes]] = {}
    for _partition, key, value in records:
        totals[key] = totals.get(key, 0) + json.loads(value)["amount"]
        out.setdefault(key, []).append(str(totals[key]).encode())
    return out


class Bench:
    """The cluster, its input topic, and one measured run at a time."""

    def __init__(self, cluster: MockCluster, args: argparse.Namespace, workdir: Path) -> None:
        self.cluster = cluster
        self.args = args
        self.workdir = workdir
        self.pythons = {"plain": sys.executable, "fastflow": sys.executable,
                        "bytewax": args.bytewax_python, "quix": args.quix_python}
        self.in_topic = self.new_topic("in")
        records = events(args.events, args.users)
        self.write(self.in_topic, records)
        self.expected = expected_totals(records)

    def new_topic(self, prefix: str) -> str:
        topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.cluster.create_topic(topic, PARTITIONS)
        return topic

    def write(self, topic: str, records: List[tuple[int, bytes, bytes]]) -> None:
        producer = Producer({"bootstrap.servers": self.cluster.bootstrap, "linger.ms": 20,
                             "queue.buffering.max.messages": len(records) + 1})
        for partition, key, value in records:
            producer.produce(topic, value, key, partition=partition)
        if producer.flush(60) != 0:
            sys.exit("writing the input topic timed out")

    def read(self, topic: str) -> Dict[bytes, List[bytes]]:
        """Per key, the values of the topic in offset order."""
        consumer = Consumer({"bootstrap.servers": self.cluster.bootstrap, "group.id": "check",
                             "enable.auto.commit": False, "enable.partition.eof": True,
                             "fetch.wait.max.ms": 10})
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        out: Dict[bytes, List[bytes]] = {}
        ended = 0
        deadline = time.monotonic() + 120
        while ended < PARTITIONS and time.monotonic() < deadline:
            for msg in consumer.consume(10000, 0.1):
                if msg.error() is None:
                    out.setdefault(msg.key(), []).append(msg.value())
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    ended += 1
        consumer.close()
        return out

    def measure(self, row: Row) -> tuple[float, float]:
        out_topic = self.new_topic("out")
        run_dir = self.workdir / uuid.uuid4().hex[:8]
        run_dir.mkdir()
        cmd = [self.pythons[row.engine], str(HERE / "kafka_jobs.py"), row.engine,
               "--brokers", self.cluster.bootstrap, "--in-topic", self.in_topic,
               "--out-topic", out_topic, "--events", str(self.args.events),
               "--group", f"g-{run_dir.name}", "--state-dir", str(run_dir / "state")]
        if row.recovery:
            cmd += ["--recovery-dir", str(run_dir / "db")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.timeout,
                              env=dict(os.environ, PYTHONHASHSEED="0"))
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
        got = self.read(out_topic)
        if got != self.expected:
            wrong = sum(got.get(k) != v for k, v in self.expected.items())
            sys.exit(f"{row.name}: the output topic is not the expected totals "
                     f"({wrong} of {len(self.expected)} users differ; "
                     f"{sum(map(len, got.values()))} messages)")
        shutil.rmtree(run_dir, ignore_errors=True)
        return seconds, cpu


def table(table_rows: List[Row], events_count: int) -> str:
    by = {r.name: r for r in table_rows}
    lines = ["| job | wall (s) | msg/s | CPU (s) | wall / plain | CPU / plain | target |",
             "|---|---:|---:|---:|---:|---:|---|"]
    plain = by["plain"] if "plain" in by else None
    for r in table_rows:
        wall, cpu = r.median(), r.median("cpu")
        if wall is None or cpu is None:
            continue
        vs_wall = vs_cpu = "—"
        if plain is not None:
            vs_wall = f"{wall / plain.median():.2f}x"  # type: ignore[operator]
            vs_cpu = f"{cpu / plain.median('cpu'):.2f}x"  # type: ignore[operator]
        lines.append(f"| {r.label} | {wall:.3f} | {events_count / wall:,.0f} | {cpu:.3f} "
                     f"| {vs_wall} | {vs_cpu} | {r.target} |")
    notes = []

    def ratio(a: str, b: str, metric: str) -> Optional[str]:
        if a in by and b in by and by[a].median(metric) and by[b].median(metric):
            return f"{by[b].median(metric) / by[a].median(metric):.2f}x"  # type: ignore[operator]
        return None

    for a, b, what in (("fastflow_rec", "bytewax_rec", "Bytewax with recovery"),
                       ("fastflow_rec", "quix_rec", "Quix Streams committing every second"),
                       ("fastflow", "bytewax", "Bytewax, recovery off"),
                       ("fastflow", "quix", "Quix Streams, commit every 5 s")):
        wall, cpu = ratio(a, b, "times"), ratio(a, b, "cpu")
        if wall is not None:
            notes.append(f"{by[a].label} against {what}: {wall} the throughput by wall time, "
                         f"{cpu} by CPU time")
    wall, cpu = ratio("plain", "fastflow_rec", "times"), ratio("plain", "fastflow_rec", "cpu")
    if wall is not None:
        notes.append(f"fastflow with recovery takes {wall} the wall time and {cpu} the CPU "
                     "time of the plain loop")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytewax-python", required=True,
                        help="interpreter of a venv with bytewax[kafka]==0.21.1")
    parser.add_argument("--quix-python", required=True,
                        help="interpreter of a venv with quixstreams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--only", help="comma-separated row names (e.g. plain,fastflow_rec)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--output", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    table_rows = rows()
    if args.only:
        table_rows = [r for r in table_rows if r.name in args.only.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="fastflow-kafka-bench-"))
    try:
        with MockCluster(brokers=3) as cluster:
            bench = Bench(cluster, args, workdir)
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
                order = table_rows if r % 2 == 0 else list(reversed(table_rows))
                for row in order:
                    seconds, cpu = bench.measure(row)
                    row.times.append(seconds)
                    row.cpu.append(cpu)
                    print(f"  {row.name:14s} {seconds:.3f} s (cpu {cpu:.3f} s)",
                          file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    used = {row.engine for row in table_rows}
    versions = []
    for engine, package, python in (("bytewax", "bytewax", args.bytewax_python),
                                    ("quix", "quixstreams", args.quix_python),
                                    ("plain", "confluent-kafka", sys.executable)):
        if engine in used:
            code = f"import importlib.metadata as m; print(m.version({package!r}))"
            version = subprocess.run([python, "-c", code], capture_output=True, text=True,
                                     check=True).stdout.strip()
            versions.append(f"{package} {version}")
    report = (
        f"{table(table_rows, args.events)}\n"
        f"- {args.events:,} JSON events over {args.users:,} users, 4-partition topics of a "
        f"3-broker mock cluster; wall time of the whole process (start-up included) until "
        f"every total is acknowledged, and its CPU time (all its threads; the mock brokers "
        f"run in the harness's process, not counted); outputs checked exactly; "
        f"{args.rounds} rounds, medians\n"
        f"- machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, python "
        f"{platform.python_version()}; {', '.join(versions)}\n"
    )
    print(report)
    if args.output:
        args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

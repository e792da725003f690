"""A Kafka cluster for the tests: librdkafka's mock brokers, with topics made to measure.

The cluster is :class:`fastflow.connectors.kafka.testing.MockCluster`: real brokers
speaking the Kafka protocol on local ports, living in the test process as long as the
module-scoped ``cluster`` fixture (import ``cluster_fixture``). Every other client (the
connectors under test, the checking consumers, ``fastflow run`` subprocesses) gets its
broker addresses as ``bootstrap.servers``. ``Cluster.new_topic(partitions=N)`` makes a
fresh topic of N partitions through the mock cluster's own API (its brokers answer no
CreateTopics).

What the mock cluster cannot do from Python: make a broker refuse a message (its error
injection takes a C callback), so a failed delivery is provoked with a partition the
topic does not have.

confluent-kafka is imported unconditionally: it is installed with the venv
(``scripts/_venv.sh``), and a venv without it must fail here, not skip.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import confluent_kafka
import pytest
from _stores import stored_state
from confluent_kafka import Consumer, Producer, TopicPartition

from fastflow.connectors.kafka.testing import MockCluster

PARTITIONS = 4
"""Partitions of a topic from ``new_topic()`` unless asked otherwise."""

FAST = {"fetch.wait.max.ms": "10"}
"""Find the end of a partition in 10 ms instead of librdkafka's default 500 ms."""

Record = Tuple[int, int, Optional[bytes], Optional[bytes]]  # partition, offset, key, value


class Cluster:
    """The mock cluster: its brokers, and helpers to make, fill and read topics."""

    def __init__(self) -> None:
        self.mock = MockCluster(brokers=3)
        self.brokers = self.mock.brokers
        self.producer = Producer({"bootstrap.servers": self.bootstrap, "log_level": 3})

    @property
    def bootstrap(self) -> str:
        return self.mock.bootstrap

    def new_topic(self, partitions: int = PARTITIONS) -> str:
        """A fresh topic of ``partitions`` partitions (checked through the brokers)."""
        topic = f"t-{uuid.uuid4().hex[:12]}"
        self.mock.create_topic(topic, partitions)
        metadata = self.producer.list_topics(topic, timeout=10).topics[topic]
        assert metadata.error is None and len(metadata.partitions) == partitions
        return topic

    def produce(self, topic: str, records: Sequence[Tuple[int, Optional[bytes], bytes]]) -> None:
        """Write ``(partition, key, value)`` records, and wait until all are acknowledged."""
        failed: List[Any] = []
        for partition, key, value in records:
            self.producer.produce(
                topic, value, key, partition=partition,
                on_delivery=lambda err, _msg: err and failed.append(err),
            )
        assert self.producer.flush(10) == 0 and not failed, failed

    def read(self, topic: str) -> List[Record]:
        """Every message of the topic, partition by partition, in offset order."""
        count = len(self.producer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": "checker",
            "enable.auto.commit": False, "enable.partition.eof": True, **FAST,
        })
        consumer.assign([TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                         for p in range(count)])
        records: List[Record] = []
        ended: set[int] = set()
        deadline = time.monotonic() + 20
        while len(ended) < count and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.1):
                if msg.error() is None:
                    records.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
                else:
                    assert msg.error().code() == confluent_kafka.KafkaError._PARTITION_EOF
                    ended.add(msg.partition())
        consumer.close()
        assert len(ended) == count, "the checking consumer timed out"
        return sorted(records)


@pytest.fixture(scope="module", name="cluster")
def cluster_fixture() -> Iterator[Cluster]:
    """The module's mock cluster (import ``cluster_fixture`` to use ``cluster``)."""
    made = Cluster()
    yield made
    made.producer.flush(10)
    del made.producer  # disconnect before the brokers go, so that it logs no failures
    made.mock.close()


# A flow counting each key of a topic, run with `fastflow run -r db -s 0` (kill -9 tests).
COUNT_FLOW = """
import os, time
import fastflow.operators as op
from fastflow.connectors.files import FileSink
from fastflow.connectors.kafka import KafkaSource
from fastflow.dataflow import Dataflow

delay = float(os.environ.get("ITEM_DELAY", "0"))

def slow(batch):
    time.sleep(delay * len(batch))
    return batch

def count(n, msg):
    return n + 1, f"{msg.partition}:{msg.offset}:{msg.value.decode()}:{n + 1}"

flow = Dataflow("kafka_count")
source = KafkaSource(os.environ["BROKERS"].split(","), [os.environ["TOPIC"]], tail=False,
                     batch_size=int(os.environ["BATCH"]), add_config={"fetch.wait.max.ms": "10"})
msgs = op.flat_map_batch("slow", op.input("inp", flow, source), slow)
counts = op.stateful_map("count", op.key_on("key", msgs, lambda m: m.key.decode()),
                         lambda: 0, count)
op.output("out", op.map("line", counts, lambda kv: ("", f"{kv[0]} {kv[1]}")),
          FileSink(os.environ["OUT"]))
"""


def expected_lines(count: int) -> List[str]:
    """The output of an uninterrupted run over records_for(count), per key in order."""
    seen: Counter[str] = Counter()
    lines = []
    for i in range(count):
        key = f"k{i % 8}"
        seen[key] += 1
        lines.append(f"{key} {i % PARTITIONS}:{i // PARTITIONS}:{i}:{seen[key]}")
    return lines


def per_key(lines: List[str]) -> dict[str, List[str]]:
    out: dict[str, List[str]] = {}
    for line in lines:
        out.setdefault(line.split()[0], []).append(line)
    return out


class CountRun:
    """`fastflow run` of COUNT_FLOW on a topic, with a recovery directory."""

    def __init__(self, tmp_path: Path, cluster: Cluster, topic: str, command: List[str]) -> None:
        self.tmp_path, self.command = tmp_path, command
        (tmp_path / "flow.py").write_text(COUNT_FLOW)
        self.out = tmp_path / "out.txt"
        self.env = {**os.environ, "BROKERS": cluster.bootstrap, "TOPIC": topic,
                    "OUT": str(self.out), "BATCH": "1000"}
        subprocess.run([*command, "init-recovery", "db", "1"], cwd=tmp_path, check=True,
                       capture_output=True)

    def args(self, *extra: str) -> List[str]:
        return [*self.command, "run", "flow.py", "-r", "db", "-s", "0", *extra]

    def run(self, *extra: str) -> None:
        proc = subprocess.run(self.args(*extra), cwd=self.tmp_path, env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr

    def lines(self) -> List[str]:
        return self.out.read_text().splitlines() if self.out.exists() else []

    def state(self) -> dict[str, Any]:
        return stored_state(self.tmp_path / "db", "kafka_count.count.stateful_batch")

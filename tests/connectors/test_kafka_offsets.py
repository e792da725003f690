"""Kafka positions you can see: consumer lag per partition, and the offsets in a store."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, List

from _kafka import FAST, Cluster, CountRun, cluster_fixture  # noqa: F401
from _stores import stored_state
from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

import fastflow.operators as op
from fastflow.connectors.kafka import KafkaSource
from fastflow.connectors.kafka import operators as kop
from fastflow.dataflow import Dataflow
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, run_main


def wait_for(what: Callable[[], Any], expected: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what() == expected:
            return
        time.sleep(0.01)
    assert what() == expected


def test_lag_is_the_high_watermark_minus_the_next_offset(cluster: Cluster) -> None:
    topic = cluster.new_topic(partitions=2)
    cluster.produce(topic, [(1, b"k", str(i).encode()) for i in range(10)])
    source = KafkaSource(cluster.brokers, [topic], batch_size=4, add_config=FAST)
    part = source.build_part("s", f"1-{topic}", None)
    other = source.build_part("s", f"0-{topic}", None)  # empty: nothing to lag
    try:
        read: List[Any] = []

        def poll() -> int:
            read.extend(part.next_batch())
            return len(read)

        wait_for(poll, 4)  # one batch of 4; the fetch told the consumer the end is 10
        assert part.snapshot() == 4
        assert part.lag() == 6
        wait_for(poll, 10)
        assert part.lag() == 0
        cluster.produce(topic, [(1, b"k", b"new")] * 3)
        wait_for(part.lag, 3)  # known from the next fetch, before anything is emitted
        assert part.snapshot() == 10
        wait_for(lambda: (other.next_batch(), other.lag())[1], 0)
    finally:
        part.close()
        other.close()
    assert part.lag() is None  # closed


def test_lag_is_unknown_before_the_first_fetch() -> None:
    source = KafkaSource(["127.0.0.1:1"], ["t"])
    part = source.build_part("s", "0-t", None)
    try:
        assert part.lag() is None
    finally:
        part.close()


def test_recovery_status_and_export_show_the_committed_offsets(
    tmp_path: Path, cluster: Cluster, fastflow_command: List[str]
) -> None:
    topic = cluster.new_topic(partitions=3)
    cluster.produce(topic, [(i % 3, f"k{i % 8}".encode(), str(i).encode()) for i in range(31)])
    run = CountRun(tmp_path, cluster, topic, fastflow_command)
    run.run()

    status = subprocess.run([*fastflow_command, "recovery", "status", "db"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    title, *table = status[status.index("Kafka offsets"):].splitlines()
    assert title == "Kafka offsets (where a resume reads on, per topic partition):"
    assert [row.split() for row in table] == [  # the counts' step is not offsets: not here
        ["step", "topic", "partition", "next", "offset"],
        ["kafka_count.inp", topic, "0", "11"],
        ["kafka_count.inp", topic, "1", "10"],
        ["kafka_count.inp", topic, "2", "10"],
    ]

    export = subprocess.run(
        [*fastflow_command, "recovery", "export", "db", "--step", "kafka_count.inp"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout
    assert sorted(map(json.loads, export.splitlines()), key=lambda line: line["key"]) == [
        {"step": "kafka_count.inp", "key": f"{p}-{topic}", "state": offset}
        for p, offset in ((0, 11), (1, 10), (2, 10))
    ]


def committed(cluster: Cluster, group: str, topic: str, partitions: int) -> List[int]:
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)],
                                   timeout=10)
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def group_flow(cluster: Cluster, topic: str, group: str, out: List[Any]) -> Dataflow:
    flow = Dataflow("group_commit")
    kinp = kop.input("inp", flow, brokers=cluster.brokers, topics=[topic], tail=False,
                     add_config=FAST, group_id=group)
    op.output("out", op.map("value", kinp.oks, lambda m: m.value), TestingSink(out))
    return flow


def test_group_id_commits_the_offsets_of_durable_epochs(tmp_path: Path, cluster: Cluster) -> None:
    topic = cluster.new_topic(partitions=3)
    cluster.produce(topic, [(i % 3, b"k", str(i).encode()) for i in range(20)])
    assert committed(cluster, "watchers", topic, 3) == [OFFSET_INVALID] * 3
    init_db_dir(tmp_path, 1)
    out: List[Any] = []
    run_main(group_flow(cluster, topic, "watchers", out), epoch_interval=timedelta(0),
             recovery_config=RecoveryConfig(str(tmp_path)))
    assert len(out) == 20
    assert committed(cluster, "watchers", topic, 3) == [7, 7, 6]  # the next offsets
    assert stored_state(tmp_path, "group_commit.inp.kafka_input") == {
        f"0-{topic}": 7, f"1-{topic}": 7, f"2-{topic}": 6,
    }


def test_group_id_commits_nothing_without_recovery(cluster: Cluster) -> None:
    topic = cluster.new_topic(partitions=2)
    cluster.produce(topic, [(i % 2, b"k", b"v") for i in range(6)])
    out: List[Any] = []
    run_main(group_flow(cluster, topic, "nothing_durable", out))
    assert len(out) == 6
    assert committed(cluster, "nothing_durable", topic, 2) == [OFFSET_INVALID] * 2


GROUP_FLOW = """
import os
import fastflow.operators as op
from fastflow.connectors.kafka import operators as kop
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow

flow = Dataflow("group_p2")
kinp = kop.input("inp", flow, brokers=os.environ["BROKERS"].split(","),
                 topics=[os.environ["TOPIC"]], tail=False,
                 add_config={"fetch.wait.max.ms": "10"}, group_id="p2_watchers")
op.output("out", op.map("value", kinp.oks, lambda m: m.value.decode()), StdOutSink())
"""


def test_group_id_commits_from_every_process_of_a_p2_run(
    tmp_path: Path, cluster: Cluster, fastflow_command: List[str]
) -> None:
    topic = cluster.new_topic(partitions=4)
    cluster.produce(topic, [(i % 4, b"k", str(i).encode()) for i in range(42)])
    (tmp_path / "flow.py").write_text(GROUP_FLOW)
    subprocess.run([*fastflow_command, "init-recovery", "db", "1"], cwd=tmp_path, check=True)
    env = {**os.environ, "BROKERS": cluster.bootstrap, "TOPIC": topic}
    # -s 0.05, not 0: `-p 2 -s 0` hangs on this branch's base (not Kafka's doing)
    proc = subprocess.run([*fastflow_command, "run", "flow.py", "-p", "2", "-r", "db",
                           "-s", "0.05"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(map(int, proc.stdout.split())) == list(range(42))
    # partitions 0 and 2 are read by process 0, 1 and 3 by process 1: both committed
    assert committed(cluster, "p2_watchers", topic, 4) == [11, 11, 10, 10]

"""Kafka positions you can see: consumer lag per partition, and the offsets in a store."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, List

from _kafka import FAST, Cluster, cluster_fixture  # noqa: F401
from test_kafka import CountRun

from fastflow.connectors.kafka import KafkaSource


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

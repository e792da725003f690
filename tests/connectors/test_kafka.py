"""fastflow.connectors.kafka against a Kafka cluster spoken to over TCP.

The cluster is librdkafka's mock cluster, from the ``cluster`` fixture of ``_kafka.py``
(topics of any partition count, on real brokers on local ports).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import confluent_kafka
import pytest
from _kafka import (  # noqa: F401 - cluster_fixture is a fixture
    FAST,
    PARTITIONS,
    Cluster,
    CountRun,
    Record,
    cluster_fixture,
    expected_lines,
    per_key,
)
from _stores import stored_state
from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from confluent_kafka.serialization import (
    IntegerDeserializer,
    IntegerSerializer,
    StringDeserializer,
    StringSerializer,
)

import fastflow.operators as op
from fastflow.connectors.kafka import (
    KafkaError,
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from fastflow.connectors.kafka import operators as kop
from fastflow.dataflow import Dataflow
from fastflow.errors import ConnectorError, FastflowRuntimeError
from fastflow.testing import TestingSink, TestingSource, run_main


def by_partition(records: List[Record]) -> dict[int, List[Record]]:
    out: dict[int, List[Record]] = {}
    for record in records:
        out.setdefault(record[0], []).append(record)
    return out


# --- the package without confluent-kafka ------------------------------------------------

HIDE_CONFLUENT = "import sys; sys.modules['confluent_kafka'] = None\n"
MISSING = (
    "fastflow.connectors.kafka needs the confluent-kafka package, which is missing: install "
    "it with `pip install 'fastflow[kafka]'` (or `pip install confluent-kafka`)"
)


def test_importing_it_without_confluent_kafka_says_what_to_install() -> None:
    code = HIDE_CONFLUENT + textwrap.dedent("""
        import fastflow.connectors, fastflow.connectors.files  # fine without it
        try:
            import fastflow.connectors.kafka
        except ImportError as ex:
            print(type(ex).__name__, ex.name, ex, sep="|")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr == ""
    assert proc.stdout == f"ImportError|confluent_kafka|{MISSING}\n"


def test_fastflow_does_not_import_confluent_kafka_unless_asked() -> None:
    code = "import sys, fastflow.cli, fastflow.operators, fastflow.connectors.files\n" \
           "print('confluent_kafka' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout == "False\n", proc.stderr


def test_fastflow_run_of_a_kafka_flow_without_confluent_kafka_is_one_line(
    tmp_path: Path, fastflow_command: List[str]
) -> None:
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_CONFLUENT)
    (tmp_path / "flow.py").write_text(
        "from fastflow.connectors.kafka import KafkaSource\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hide")}
    proc = subprocess.run(
        [*fastflow_command, "run", "flow.py"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=60,
    )
    # The command shows where the flow failed (its traceback, as for any import error of
    # a flow), then one line; neither goes into confluent-kafka or fastflow internals.
    assert proc.returncode == 2
    *traceback, error, last = proc.stderr.splitlines()
    assert last == f"fastflow run: error: importing 'flow.py' raised ImportError: {MISSING}"
    assert error == f"ImportError: {MISSING}"
    assert len(traceback) == 3 and "flow.py" in traceback[1], proc.stderr


# --- KafkaSource ------------------------------------------------------------------------


def records_for(count: int, first: int = 0) -> List[Tuple[int, bytes, bytes]]:
    """Message i goes to partition i % 4, with key k{i % 8} and value i."""
    return [(i % PARTITIONS, f"k{i % 8}".encode(), str(i).encode())
            for i in range(first, first + count)]


def test_source_reads_every_partition_in_order_then_ends(cluster: Cluster) -> None:
    topic = cluster.new_topic()
    cluster.produce(topic, records_for(40))
    out: List[Any] = []
    flow = Dataflow("kafka_in")
    source = KafkaSource(cluster.brokers, [topic], tail=False, batch_size=3, add_config=FAST)
    assert source.list_parts() == [f"{p}-{topic}" for p in range(PARTITIONS)]
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    run_main(flow)

    assert all(type(m) is KafkaSourceMessage for m in out)
    got = [(m.partition, m.offset, m.key, m.value) for m in out]
    assert sorted(got) == cluster.read(topic)
    assert len(got) == 40
    for partition, records in by_partition(got).items():
        # each partition's messages in offset order, from 0, and the right values
        assert [r[1] for r in records] == list(range(10))
        assert [int(r[3]) for r in records] == list(range(partition, 40, PARTITIONS))
    first = next(m for m in out if m.partition == 1 and m.offset == 0)
    assert (first.topic, first.key, first.value, first.headers) == (topic, b"k1", b"1", [])
    assert first.timestamp is not None and first.timestamp[1] > 0


def test_source_deals_partitions_over_workers_and_snapshots_next_offsets(
    cluster: Cluster,
) -> None:
    topic = cluster.new_topic()
    cluster.produce(topic, records_for(10))  # 3, 3, 2, 2 messages per partition
    source = KafkaSource(cluster.brokers, [topic], tail=False, add_config=FAST)
    part = source.build_part("s", f"2-{topic}", None)
    items: List[Any] = []
    try:
        assert part.snapshot() == confluent_kafka.OFFSET_BEGINNING  # nothing read yet
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                items += part.next_batch()
            except StopIteration:
                break
        assert [(m.partition, m.offset, m.value) for m in items] == [(2, 0, b"2"), (2, 1, b"6")]
        assert part.snapshot() == 2
    finally:
        part.close()
    resumed = source.build_part("s", f"2-{topic}", 1)  # resume at offset 1
    try:
        assert drain(resumed) == [b"6"]
    finally:
        resumed.close()


def drain(part: Any, timeout: float = 10) -> List[Optional[bytes]]:
    """The values a tail=False partition emits until it ends."""
    values: List[Optional[bytes]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            values += [m.value for m in part.next_batch()]
        except StopIteration:
            return values
        time.sleep(0.005)
    raise AssertionError(f"the partition did not end; read {values}")


def test_starting_offset_end_is_fixed_when_the_partition_is_built(cluster: Cluster) -> None:
    topic = cluster.new_topic()
    cluster.produce(topic, [(0, b"k", b"old1"), (0, b"k", b"old2")])
    source = KafkaSource(cluster.brokers, [topic], starting_offset=OFFSET_END, add_config=FAST)
    part = source.build_part("s", f"0-{topic}", None)
    try:
        # Before anything is read, the snapshot is the concrete end, not "the end":
        # a resume from it reads what was written in between.
        assert part.snapshot() == 2
        cluster.produce(topic, [(0, b"k", b"new")])
        assert [m.value for m in poll_until_something(part)] == [b"new"]
        assert part.snapshot() == 3
    finally:
        part.close()
    resumed = source.build_part("s", f"0-{topic}", 2)
    try:
        assert [m.value for m in poll_until_something(resumed)] == [b"new"]
    finally:
        resumed.close()


def test_source_validates_its_arguments() -> None:
    # Bytewax's wording first.
    with pytest.raises(TypeError, match="^brokers must be an iterable and not a string; got "):
        KafkaSource("localhost:9092", ["t"])
    with pytest.raises(TypeError, match="^topics must be an iterable and not a string; got 't'$"):
        KafkaSource(["localhost:9092"], "t")
    with pytest.raises(TypeError, match="^brokers must be an iterable and not a string; got "):
        KafkaSink("localhost:9092", "t")
    with pytest.raises(ValueError, match="batch_size must be at least 1, not 0"):
        KafkaSource(["localhost:9092"], ["t"], batch_size=0)
    source = KafkaSource(["localhost:9092"], ["t"])
    with pytest.raises(ValueError, match="partition '0-other' is of Kafka topic 'other'"):
        source.build_part("s", "0-other", None)


def out_of_range_partition(cluster: Cluster, raise_on_errors: bool) -> Any:
    """A partition asked to start past its end, with librdkafka told to report that."""
    topic = cluster.new_topic()
    cluster.produce(topic, [(0, b"k", b"v")])
    source = KafkaSource(
        cluster.brokers, [topic], starting_offset=50, raise_on_errors=raise_on_errors,
        add_config={**FAST, "auto.offset.reset": "error"},
    )
    return topic, source, source.build_part("s", f"0-{topic}", None)


def poll_until_something(part: Any) -> List[Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        batch = part.next_batch()
        if batch:
            return batch
        time.sleep(0.005)
    raise AssertionError("nothing came")


def test_consumer_error_raises_with_raise_on_errors(cluster: Cluster) -> None:
    topic, _source, part = out_of_range_partition(cluster, raise_on_errors=True)
    try:
        with pytest.raises(RuntimeError) as caught:
            poll_until_something(part)
        assert str(caught.value).startswith(
            f"error consuming from Kafka topic `{topic!r}`: fetch failed due to requested "
            "offset not available on the broker: Broker: Offset out of range"
        )
    finally:
        part.close()


def test_consumer_error_is_an_item_without_raise_on_errors(cluster: Cluster) -> None:
    topic, _source, part = out_of_range_partition(cluster, raise_on_errors=False)
    try:
        (item,) = poll_until_something(part)
        assert type(item) is KafkaError
        assert item.err.code() == confluent_kafka.KafkaError._AUTO_OFFSET_RESET
        assert (item.msg.topic, item.msg.partition, item.msg.offset) == (topic, 0, 50)
        assert part.snapshot() == 50  # an error does not move the resume offset
    finally:
        part.close()


def test_kop_input_sends_consumer_errors_to_errs(cluster: Cluster) -> None:
    topic = cluster.new_topic()
    cluster.produce(topic, [(0, b"k", b"v")])
    flow = Dataflow("kop_errs")
    kinp = kop.input("kin", flow, brokers=cluster.brokers, topics=[topic], starting_offset=50,
                     add_config={**FAST, "auto.offset.reset": "error"})
    op.output("oks", kinp.oks, TestingSink([]))
    op.raises("crash_on_err", op.map("what", kinp.errs, lambda e: e.err.code()))
    with pytest.raises(FastflowRuntimeError) as caught:
        run_main(flow)
    assert "kop_errs.crash_on_err" in str(caught.value)
    assert str(confluent_kafka.KafkaError._AUTO_OFFSET_RESET) in str(caught.value)


def test_unknown_brokers_fail_listing_partitions_naming_the_topic() -> None:
    source = KafkaSource(["127.0.0.1:1"], ["nowhere"],
                         add_config={"socket.connection.setup.timeout.ms": "1000"})
    import fastflow.connectors.kafka._source as src

    old, src.METADATA_TIMEOUT = src.METADATA_TIMEOUT, 1.0
    try:
        with pytest.raises(RuntimeError) as caught:
            source.list_parts()
    finally:
        src.METADATA_TIMEOUT = old
    assert str(caught.value).startswith(
        "could not list the partitions of Kafka topic 'nowhere' from brokers 127.0.0.1:1: "
    )


UNREACHABLE_FLOW = """
import fastflow.connectors.kafka._source as source_module
import fastflow.operators as op
from fastflow.connectors.kafka import KafkaSource
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow

source_module.METADATA_TIMEOUT = 2.0  # instead of 30 s, to keep the test short
flow = Dataflow("unreachable")
op.output("out", op.input("inp", flow, KafkaSource(["127.0.0.1:1"], ["t"])), StdOutSink())
"""


def test_unreachable_brokers_fail_the_run_with_one_line(
    tmp_path: Path, fastflow_command: List[str]
) -> None:
    (tmp_path / "flow.py").write_text(UNREACHABLE_FLOW)
    proc = subprocess.run([*fastflow_command, "run", "flow.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    # librdkafka's logs go to the fastflow.kafka logger, which prints nothing unless the
    # application configures logging; the connector's error has no traceback to show.
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        "fastflow run: error: the flow failed: error calling `list_parts` in step "
        "'unreachable.inp': ConnectorError: could not list the partitions of Kafka topic 't' "
        "from brokers 127.0.0.1:1: Failed to get metadata: Local: Broker transport failure\n"
    )


def test_librdkafka_logs_go_to_the_fastflow_kafka_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import fastflow.connectors.kafka._source as src

    source = KafkaSource(["127.0.0.1:1"], ["nowhere"])
    old, src.METADATA_TIMEOUT = src.METADATA_TIMEOUT, 1.0
    try:
        with caplog.at_level(logging.DEBUG, logger="fastflow.kafka"):
            with pytest.raises(ConnectorError):
                source.list_parts()
    finally:
        src.METADATA_TIMEOUT = old
    assert caplog.records, "librdkafka logged nothing to fastflow.kafka"
    assert {r.name for r in caplog.records} == {"fastflow.kafka"}
    assert any("127.0.0.1:1" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records)


# --- KafkaSink --------------------------------------------------------------------------


def test_sink_writes_messages_and_they_read_back(cluster: Cluster) -> None:
    topic, other = cluster.new_topic(), cluster.new_topic()
    messages = [
        KafkaSinkMessage(b"a", b"1", partition=3, headers=[("h", b"x")]),
        KafkaSinkMessage(None, b"2", partition=3),
        KafkaSinkMessage(b"b", "3", topic=other, partition=1),  # str values are fine too
        KafkaSinkMessage(b"c", None, partition=0, timestamp=1_700_000_000_000),
    ]
    flow = Dataflow("kafka_out")
    op.output("out", op.input("inp", flow, TestingSource(messages, 2)),
              KafkaSink(cluster.brokers, topic))
    run_main(flow)
    assert cluster.read(topic) == [(0, 0, b"c", None), (3, 0, b"a", b"1"), (3, 1, None, b"2")]
    assert cluster.read(other) == [(1, 0, b"b", b"3")]
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "h", **FAST})
    consumer.assign([TopicPartition(topic, 3, 0), TopicPartition(topic, 0, 0)])
    got = {}
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        for msg in consumer.consume(10, 0.1):
            got[msg.value()] = (msg.headers(), msg.timestamp()[1])
    consumer.close()
    assert got[b"1"][0] == [("h", b"x")]
    assert got[None] == (None, 1_700_000_000_000)


def test_sink_routes_by_key_without_a_partition(cluster: Cluster) -> None:
    topic = cluster.new_topic()
    messages = [KafkaSinkMessage(f"key{i % 5}".encode(), str(i).encode()) for i in range(50)]
    flow = Dataflow("kafka_keys")
    op.output("out", op.input("inp", flow, TestingSource(messages, 7)),
              KafkaSink(cluster.brokers, topic))
    run_main(flow)
    records = cluster.read(topic)
    assert len(records) == 50
    partitions_of = {}
    for partition, _offset, key, _value in records:
        partitions_of.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partitions_of.values())  # one partition per key
    for key, parts in partitions_of.items():  # and each key's values in the order written
        (partition,) = parts
        values = [int(v) for p, _o, k, v in records if p == partition and k == key]
        assert values == sorted(values)


def test_sink_waits_for_room_when_the_producer_queue_is_full(cluster: Cluster) -> None:
    topic = cluster.new_topic()
    messages = [KafkaSinkMessage(b"k", str(i).encode(), partition=i % 2) for i in range(30)]
    flow = Dataflow("kafka_full")
    # A queue of one message: every produce() after the first finds it full.
    sink = KafkaSink(cluster.brokers, topic, add_config={"queue.buffering.max.messages": "1"})
    op.output("out", op.input("inp", flow, TestingSource(messages, 30)), sink)
    run_main(flow)
    values = [(p, int(v)) for p, _o, _k, v in cluster.read(topic)]
    assert values == sorted((i % 2, i) for i in range(30))


def test_sink_fails_the_run_when_a_message_is_not_delivered(cluster: Cluster) -> None:
    topic = cluster.new_topic()
    flow = Dataflow("kafka_lost")
    messages = [
        KafkaSinkMessage(b"k", b"ok", partition=0), KafkaSinkMessage(b"k", b"x", partition=99)
    ]
    op.output("out", op.input("inp", flow, TestingSource(messages, 2)),
              KafkaSink(cluster.brokers, topic))
    with pytest.raises(FastflowRuntimeError) as caught:
        run_main(flow)
    cause = caught.value.__cause__
    assert isinstance(cause, RuntimeError)
    # librdkafka refuses it at once when it knows the topic, else in the delivery report
    assert str(cause) in (
        f"Kafka sink of step 'kafka_lost.out' could not deliver 1 message(s); the first: "
        f"topic {topic!r} partition 99: Local: Unknown partition",
        f"Kafka sink of step 'kafka_lost.out' could not write to topic {topic!r} partition 99: "
        "Unable to produce message: Local: Unknown partition",
    )
    assert "kafka_lost.out" in str(caught.value)
    assert cluster.read(topic) == [(0, 0, b"k", b"ok")]


def test_sink_refuses_items_that_are_not_sink_messages(cluster: Cluster) -> None:
    flow = Dataflow("kafka_bad")
    source_message = KafkaSourceMessage(b"k", b"v", topic="t")
    op.output("out", op.input("inp", flow, TestingSource([source_message])),
              KafkaSink(cluster.brokers, None))
    with pytest.raises(FastflowRuntimeError) as caught:
        run_main(flow)
    assert str(caught.value.__cause__).startswith(
        "KafkaSink takes KafkaSinkMessage items; got KafkaSourceMessage KafkaSourceMessage(key=b'k'"
    )
    flow = Dataflow("kafka_no_topic")
    op.output("out", op.input("inp", flow, TestingSource([KafkaSinkMessage(b"k", b"v")])),
              KafkaSink(cluster.brokers, None))
    with pytest.raises(FastflowRuntimeError) as caught:
        run_main(flow)
    assert "the sink has topic=None, so every KafkaSinkMessage must name its topic" in str(
        caught.value.__cause__
    )


# --- the operators ----------------------------------------------------------------------


def test_kop_round_trip_with_serializers_and_errors(cluster: Cluster) -> None:
    source_topic, dest_topic = cluster.new_topic(), cluster.new_topic()
    ints, strs = IntegerSerializer(), StringSerializer()
    cluster.produce(source_topic, [
        (0, strs("a"), ints(1)), (0, strs("b"), ints(2)),
        (1, b"\xff", ints(3)),  # key is not UTF-8
        (1, strs("c"), b"bad"),  # value is not a 4-byte int
        (2, strs("d"), ints(4)),
    ])
    flow = Dataflow("kop")
    kinp = kop.input("kin", flow, brokers=cluster.brokers, topics=[source_topic], tail=False,
                     add_config=FAST)
    decoded = kop.deserialize("decode", kinp.oks, key_deserializer=StringDeserializer(),
                              val_deserializer=IntegerDeserializer())
    errors: List[Any] = []
    op.output("errs", decoded.errs, TestingSink(errors))
    doubled = op.map("double", decoded.oks, lambda m: m._with_value(m.value * 2))
    encoded = kop.serialize("encode", doubled, key_serializer=strs, val_serializer=ints)
    kop.output("kout", encoded, brokers=cluster.brokers, topic=dest_topic)
    run_main(flow)

    assert sorted((e.msg.partition, e.msg.offset, e.err.code()) for e in errors) == [
        (1, 0, confluent_kafka.KafkaError._KEY_DESERIALIZATION),
        (1, 1, confluent_kafka.KafkaError._VALUE_DESERIALIZATION),
    ]
    assert all(e.msg.value in (ints(3), b"bad") for e in errors)  # the message as read
    ids = [s.step_id for s in flow.substeps]
    assert ids == ["kop.kin", "kop.decode", "kop.errs", "kop.double", "kop.encode", "kop.kout"]
    written = sorted((k.decode(), IntegerDeserializer()(v, None))
                     for _p, _o, k, v in cluster.read(dest_topic))
    assert written == [("a", 2), ("b", 4), ("d", 8)]


def test_kop_single_field_serde_and_source_messages_to_output(cluster: Cluster) -> None:
    source_topic, dest_topic = cluster.new_topic(), cluster.new_topic()
    cluster.produce(source_topic, [(0, b"x", b"hello"), (0, b"y", b"\xfe")])
    flow = Dataflow("kop1")
    kinp = kop.input("kin", flow, brokers=cluster.brokers, topics=[source_topic], tail=False,
                     add_config=FAST)
    keys = kop.deserialize_key("dkey", kinp.oks, StringDeserializer())
    values = kop.deserialize_value("dval", keys.oks, StringDeserializer())
    bad: List[Any] = []
    op.output("bad", values.errs, TestingSink(bad))
    upper = op.map("upper", values.oks, lambda m: m._with_key_and_value(m.key.upper(),
                                                                          m.value.upper()))
    kop.output("kout", kop.serialize_value("sval", kop.serialize_key(
        "skey", upper, StringSerializer()), StringSerializer()),
        brokers=cluster.brokers, topic=dest_topic)
    kop.output("copy", kinp.oks, brokers=cluster.brokers, topic=dest_topic)  # as read
    run_main(flow)
    assert [(e.msg.key, e.msg.value) for e in bad] == [("y", b"\xfe")]
    assert sorted((k, v) for _p, _o, k, v in cluster.read(dest_topic)) == [
        (b"X", b"HELLO"), (b"x", b"hello"), (b"y", b"\xfe"),
    ]


# --- recovery through `fastflow run` -----------------------------------------------------

def test_kill_9_mid_run_then_resume_has_no_gap_and_no_double_count(
    tmp_path: Path, cluster: Cluster, fastflow_command: List[str]
) -> None:
    topic = cluster.new_topic()
    total = 2000
    cluster.produce(topic, records_for(total))
    run = CountRun(tmp_path, cluster, topic, fastflow_command)
    env = {**run.env, "BATCH": "10", "ITEM_DELAY": "0.002"}  # ~4 s for the whole topic
    proc = subprocess.Popen(run.args(), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(run.lines()) < 300 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, stderr
    killed_at = len(run.lines())
    assert 300 <= killed_at < total  # it was killed mid-run

    run.run()  # resume, at full speed, to the end
    lines = run.lines()
    # FileSink is exactly-once: the file is what one uninterrupted run writes. Each key
    # (all of whose messages are in one partition) counts 1, 2, ... with no gap or repeat.
    assert len(lines) == total
    assert per_key(lines) == per_key(expected_lines(total))
    assert run.state() == {f"k{k}": total // 8 for k in range(8)}
    assert stored_state(tmp_path / "db", "kafka_count.inp") == {
        f"{p}-{topic}": total // PARTITIONS for p in range(PARTITIONS)
    }


def test_resume_with_another_worker_count_keeps_every_partitions_offset(
    tmp_path: Path, cluster: Cluster, fastflow_command: List[str]
) -> None:
    topic = cluster.new_topic()
    cluster.produce(topic, records_for(40))
    run = CountRun(tmp_path, cluster, topic, fastflow_command)
    run.run("-w", "1")
    first = run.lines()
    assert per_key(first) == per_key(expected_lines(40))  # partitions interleave freely
    assert stored_state(tmp_path / "db", "kafka_count.inp") == {
        f"{p}-{topic}": 10 for p in range(PARTITIONS)
    }

    cluster.produce(topic, records_for(24, first=40))
    run.run("-w", "3")  # partitions 0 and 3 on worker 0, 1 on worker 1, 2 on worker 2
    lines = run.lines()
    assert lines[:40] == first
    assert sorted(lines[40:]) == sorted(expected_lines(64)[40:])  # only the new messages
    assert per_key(lines) == per_key(expected_lines(64))
    assert run.state() == {f"k{k}": 8 for k in range(8)}
    assert stored_state(tmp_path / "db", "kafka_count.inp") == {
        f"{p}-{topic}": 16 for p in range(PARTITIONS)
    }

    run.run("-w", "2")  # nothing new: nothing read, nothing written
    assert run.lines() == lines


BYTEWAX_FLOW = """
import os
import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow

brokers = os.environ["BROKERS"].split(",")
flow = Dataflow("bytewax_kafka")
kinp = kop.input("inp", flow, brokers=brokers, topics=[os.environ["TOPIC"]], tail=False,
                 add_config={"fetch.wait.max.ms": "10"})
op.raises("stop_on_error", kinp.errs)
op.output("print", op.map("text", kinp.oks, lambda m: m.value.decode()), StdOutSink())
upper = op.map("upper", kinp.oks, lambda m: KafkaSinkMessage(m.key, m.value.upper()))
kop.output("write", upper, brokers=brokers, topic=os.environ["OUT_TOPIC"])
"""


def test_a_bytewax_kafka_flow_runs_unchanged(
    tmp_path: Path, cluster: Cluster, fastflow_command: List[str]
) -> None:
    topic, out_topic = cluster.new_topic(), cluster.new_topic()
    cluster.produce(topic, [(i % PARTITIONS, b"k", f"m{i}".encode()) for i in range(8)])
    (tmp_path / "flow.py").write_text(BYTEWAX_FLOW)
    env = {**os.environ, "BROKERS": cluster.bootstrap, "TOPIC": topic, "OUT_TOPIC": out_topic}
    proc = subprocess.run([*fastflow_command, "run", "flow.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [f"m{i}" for i in range(8)]
    assert sorted(v for _p, _o, _k, v in cluster.read(out_topic)) == [
        f"M{i}".encode() for i in range(8)
    ]

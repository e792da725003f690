"""Avro and Schema Registry formats through the Kafka operators, on the mock cluster.

Plain Avro comes from ``fastflow.connectors.kafka.serde``; the Schema Registry formats
(Avro, JSON Schema, Protobuf) from confluent-kafka's own serializers, against its
in-process mock registry (``SchemaRegistryClient.new_client({"url": "mock://"})``).
Every test writes through a flow to a real topic and reads it back through a flow, so
what is checked is the bytes on the wire as the operators make and take them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any, List

import confluent_kafka
import pytest
from _kafka import FAST, Cluster, cluster_fixture  # noqa: F401
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import StringDeserializer, StringSerializer
from google.protobuf.timestamp_pb2 import Timestamp

import fastflow.operators as op
from fastflow.connectors.kafka import KafkaSinkMessage
from fastflow.connectors.kafka import operators as kop
from fastflow.connectors.kafka.serde import PlainAvroDeserializer, PlainAvroSerializer
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.testing import TestingSink, TestingSource, run_main

CLICK_V1 = json.dumps({
    "type": "record", "name": "Click", "namespace": "shop",
    "fields": [{"name": "user", "type": "string"}, {"name": "page", "type": "string"},
               {"name": "ms", "type": "long"}],
})
# v2: a new field with a default, as a reader of v1 records sees them.
CLICK_V2 = json.dumps({
    "type": "record", "name": "Click", "namespace": "shop",
    "fields": [{"name": "user", "type": "string"}, {"name": "page", "type": "string"},
               {"name": "ms", "type": "long"},
               {"name": "country", "type": "string", "default": "unknown"}],
})
CLICKS = [
    {"user": "ann", "page": "/home", "ms": 1},
    {"user": "bo", "page": "/cart", "ms": 2},
    {"user": "ann", "page": "/pay", "ms": 3},
]


def write(cluster: Cluster, topic: str, values: List[Any], serializer: Any,
          keys: bool = True) -> None:
    """Write ``values`` with a flow: key = the value's user (a string), value serialized."""
    flow = Dataflow("write")
    msgs = op.map("msg", op.input("inp", flow, TestingSource(values)),
                  lambda v: KafkaSinkMessage(v["user"] if keys else None, v, topic=topic))
    encoded = kop.serialize("encode", msgs, key_serializer=StringSerializer(),
                            val_serializer=serializer)
    kop.output("out", encoded, brokers=cluster.brokers, topic=topic)
    run_main(flow)


def read(cluster: Cluster, topic: str, deserializer: Any) -> tuple[List[Any], List[Any]]:
    """Read the topic with a flow: ``(decoded messages, errors)``, by offset."""
    flow = Dataflow("read")
    kinp = kop.input("inp", flow, brokers=cluster.brokers, topics=[topic], tail=False,
                     add_config=FAST)
    op.raises("no_read_errors", kinp.errs)
    decoded = kop.deserialize("decode", kinp.oks, key_deserializer=StringDeserializer(),
                              val_deserializer=deserializer)
    oks: List[Any] = []
    errs: List[Any] = []
    op.output("oks", decoded.oks, TestingSink(oks))
    op.output("errs", decoded.errs, TestingSink(errs))
    run_main(flow)
    return sorted(oks, key=lambda m: m.offset), sorted(errs, key=lambda e: e.msg.offset)


# --- plain Avro ---------------------------------------------------------------------


def test_plain_avro_round_trip(cluster: Cluster) -> None:
    topic = cluster.new_topic(partitions=1)
    write(cluster, topic, CLICKS, PlainAvroSerializer(CLICK_V1))
    raw = [value for _p, _o, _k, value in cluster.read(topic)]
    # plain Avro: the record's fields and nothing else (zig-zag long 1 is 0x02)
    assert raw[0] == b"\x06ann\x0a/home\x02"
    oks, errs = read(cluster, topic, PlainAvroDeserializer(CLICK_V1))
    assert errs == []
    assert [(m.key, m.value) for m in oks] == [(c["user"], c) for c in CLICKS]


def test_plain_avro_reader_schema_fills_a_new_defaulted_field(cluster: Cluster) -> None:
    topic = cluster.new_topic(partitions=1)
    write(cluster, topic, CLICKS, PlainAvroSerializer(CLICK_V1))
    oks, errs = read(cluster, topic, PlainAvroDeserializer(CLICK_V1, reader_schema=CLICK_V2))
    assert errs == []
    assert [m.value for m in oks] == [{**c, "country": "unknown"} for c in CLICKS]


def test_plain_avro_bad_records_go_to_the_error_stream(cluster: Cluster) -> None:
    topic = cluster.new_topic(partitions=1)
    good = PlainAvroSerializer(CLICK_V1)(CLICKS[0])
    cluster.produce(topic, [
        (0, b"ann", good),
        (0, b"bo", good + b"\x00"),  # a byte too many: not one record of this schema
        (0, b"cy", b"\x06an"),  # cut short
        (0, b"di", good),
    ])
    oks, errs = read(cluster, topic, PlainAvroDeserializer(CLICK_V1))
    assert [(m.offset, m.key) for m in oks] == [(0, "ann"), (3, "di")]
    assert [(e.msg.offset, e.err.code()) for e in errs] == [
        (1, confluent_kafka.KafkaError._VALUE_DESERIALIZATION),
        (2, confluent_kafka.KafkaError._VALUE_DESERIALIZATION),
    ]
    assert "1 byte(s) left over after the Avro record" in errs[0].err.str()
    assert errs[0].msg.value == good + b"\x00"  # the message as it was read


def test_plain_avro_serializer_refuses_a_record_that_does_not_fit() -> None:
    flow = Dataflow("bad_record")
    msgs = op.input("inp", flow, TestingSource([KafkaSinkMessage(None, {"user": "ann"})]))
    op.output("out", kop.serialize_value("encode", msgs, PlainAvroSerializer(CLICK_V1)),
              TestingSink([]))
    with pytest.raises(FastflowRuntimeError) as caught:
        run_main(flow)
    assert "bad_record.encode" in str(caught.value)


def test_serde_without_fastavro_says_what_to_install() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["fastavro"] = None
        try:
            import fastflow.connectors.kafka.serde
        except ImportError as ex:
            print(ex.name, ex, sep="|")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr == ""
    assert proc.stdout == (
        "fastavro|fastflow.connectors.kafka.serde needs the fastavro package, which is missing: "
        "install it with `pip install 'fastflow[kafka-avro]'` (or `pip install fastavro`)\n"
    )


# --- Confluent's Schema Registry formats --------------------------------------------


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://"})


def test_registry_avro_round_trip_and_evolution(cluster: Cluster,
                                                registry: SchemaRegistryClient) -> None:
    topic = cluster.new_topic(partitions=2)
    write(cluster, topic, CLICKS, AvroSerializer(registry, CLICK_V1))
    raw = [value for _p, _o, _k, value in cluster.read(topic)]
    schema_id = registry.get_latest_version(f"{topic}-value").schema_id
    assert all(v[:5] == b"\x00" + schema_id.to_bytes(4, "big") for v in raw)  # the framing

    oks, errs = read(cluster, topic, AvroDeserializer(registry))
    assert errs == []
    assert sorted((m.key, m.value["ms"]) for m in oks) == [("ann", 1), ("ann", 3), ("bo", 2)]
    assert all(m.value == CLICKS[m.value["ms"] - 1] for m in oks)

    # A reader on schema v2 gets v1 records with the new field's default.
    oks, errs = read(cluster, topic, AvroDeserializer(registry, CLICK_V2))
    assert errs == []
    assert sorted(m.value["ms"] for m in oks) == [1, 2, 3]
    assert all(m.value == {**CLICKS[m.value["ms"] - 1], "country": "unknown"} for m in oks)


def test_registry_avro_wrong_magic_byte_goes_to_the_error_stream(
    cluster: Cluster, registry: SchemaRegistryClient
) -> None:
    topic = cluster.new_topic(partitions=1)
    write(cluster, topic, CLICKS[:1], AvroSerializer(registry, CLICK_V1))
    framed = cluster.read(topic)[0][3]
    assert framed is not None
    cluster.produce(topic, [
        (0, b"bo", b"\x07" + framed[1:]),  # wrong magic byte
        (0, b"cy", PlainAvroSerializer(CLICK_V1)(CLICKS[1])),  # unframed
        (0, b"di", framed),
    ])
    oks, errs = read(cluster, topic, AvroDeserializer(registry))
    assert [(m.offset, m.value) for m in oks] == [(0, CLICKS[0]), (3, CLICKS[0])]
    assert [(e.msg.offset, e.msg.key, e.err.code()) for e in errs] == [
        (1, b"bo", confluent_kafka.KafkaError._VALUE_DESERIALIZATION),  # as read: undecoded
        (2, b"cy", confluent_kafka.KafkaError._VALUE_DESERIALIZATION),
    ]
    assert errs[0].err.str() == "SerializationError: Invalid magic byte"


def test_registry_json_schema_round_trip(cluster: Cluster, registry: SchemaRegistryClient) -> None:
    schema = json.dumps({
        "title": "Click", "type": "object",
        "properties": {"user": {"type": "string"}, "page": {"type": "string"},
                       "ms": {"type": "integer"}},
        "required": ["user", "page", "ms"],
    })
    topic = cluster.new_topic(partitions=1)
    write(cluster, topic, CLICKS, JSONSerializer(schema, registry))
    cluster.produce(topic, [(0, b"x", b"\x00\x00\x00\x00\x01{not json")])
    oks, errs = read(cluster, topic, JSONDeserializer(schema))
    assert [m.value for m in oks] == CLICKS
    assert [(e.msg.offset, e.err.code()) for e in errs] == [
        (3, confluent_kafka.KafkaError._VALUE_DESERIALIZATION)
    ]


def test_registry_protobuf_round_trip(cluster: Cluster, registry: SchemaRegistryClient) -> None:
    topic = cluster.new_topic(partitions=1)
    conf = {"use.deprecated.format": False}
    stamps = [Timestamp(seconds=s, nanos=7) for s in (1, 2, 3)]
    flow = Dataflow("write_pb")
    msgs = op.map("msg", op.input("inp", flow, TestingSource(stamps)),
                  lambda t: KafkaSinkMessage(None, t, topic=topic))
    kop.output("out", kop.serialize_value("encode", msgs, ProtobufSerializer(
        Timestamp, registry, conf)), brokers=cluster.brokers, topic=topic)
    run_main(flow)

    flow = Dataflow("read_pb")
    kinp = kop.input("inp", flow, brokers=cluster.brokers, topics=[topic], tail=False,
                     add_config=FAST)
    decoded = kop.deserialize_value("decode", kinp.oks, ProtobufDeserializer(Timestamp, conf))
    out: List[Any] = []
    op.output("out", decoded.oks, TestingSink(out))
    run_main(flow)
    assert [m.value for m in out] == stamps


def test_serializer_that_needs_a_topic_on_a_message_without_one_says_so(
    registry: SchemaRegistryClient,
) -> None:
    flow = Dataflow("no_topic")
    msgs = op.input("inp", flow, TestingSource([KafkaSinkMessage(None, CLICKS[0])]))
    serializer = AvroSerializer(registry, CLICK_V1,
                                conf={"subject.name.strategy": topic_subject_name_strategy})
    op.output("out", kop.serialize_value("encode", msgs, serializer), TestingSink([]))
    with pytest.raises(FastflowRuntimeError) as caught:
        run_main(flow)
    assert "the message has topic=None; if the value serializer needs a topic" in str(
        caught.value.__cause__
    )

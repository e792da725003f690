"""One engine's run of the Kafka benchmark job; run by ``kafka.py`` in that engine's venv.

    python bench/kafka_jobs.py ENGINE --brokers B --in-topic T --out-topic O [--recovery-dir D]
                               [--group G] [--state-dir S]

The job: JSON events ``{"user": "u123", "amount": 7}`` (key: the user) are read from
the input topic; a running sum of ``amount`` per user is kept; each event's new total
is written to the output topic (key: the user, value: the total as text). The run ends
at the end of the input (all four engines read to the end they find), once every total
is acknowledged by the brokers.

ENGINE is ``fastflow`` or ``bytewax`` (the same flow code, written once against
``engines.load``), ``quix`` (Quix Streams' ``Application`` with a ``StreamingDataFrame``
and its RocksDB state), or ``plain`` (a confluent-kafka consume-sum-produce loop: the
floor). With ``--recovery-dir``, fastflow and Bytewax snapshot every second (``-s 1``);
Quix commits (offsets and state) every second; without it, Quix commits every 5 s (its
default) and the others keep nothing.

This file imports only the standard library and what the engine's venv has.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

EOF_CONFIG = {"enable.partition.eof": True, "fetch.wait.max.ms": 10}


def running_sum(total: Optional[int], amount: int) -> Tuple[int, int]:
    total = amount if total is None else total + amount
    return total, total


def parse(msg: Any) -> Tuple[str, int]:
    return msg.key.decode(), json.loads(msg.value)["amount"]


def run_dataflow(engine: str, args: argparse.Namespace) -> None:
    """The flow of fastflow and Bytewax: kop.input, parse, stateful_map, kop.output."""
    import importlib

    from engines import load

    api = load(engine)
    kafka = importlib.import_module(f"{engine}.connectors.kafka")
    kop = importlib.import_module(f"{engine}.connectors.kafka.operators")
    brokers = args.brokers.split(",")
    flow = api.Dataflow("kafka_bench")
    kinp = kop.input("in", flow, brokers=brokers, topics=[args.in_topic], tail=False,
                     add_config={"fetch.wait.max.ms": "10"})
    api.op.raises("read_errors", kinp.errs)
    totals = api.op.stateful_map("sum", api.op.map("parse", kinp.oks, parse), running_sum)
    out = api.op.map("msg", totals,
                     lambda kv: kafka.KafkaSinkMessage(kv[0].encode(), str(kv[1]).encode()))
    kop.output("out", out, brokers=brokers, topic=args.out_topic)
    config = None
    if args.recovery_dir is not None:
        args.recovery_dir.mkdir(parents=True, exist_ok=True)
        api.init_db_dir(args.recovery_dir, 1)
        config = api.RecoveryConfig(str(args.recovery_dir))
    api.run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=config)


def run_quix(args: argparse.Namespace) -> None:
    """Quix Streams: Application + StreamingDataFrame with RocksDB state."""
    from confluent_kafka import Producer
    from quixstreams import Application
    from quixstreams.models.topics import Topic, TopicConfig, TopicManager
    from quixstreams.models.topics.exceptions import TopicNotFoundError

    metadata = Producer({"bootstrap.servers": args.brokers})

    class AutoCreatingTopicManager(TopicManager):
        """Topics made by the cluster on first use: the mock cluster has no CreateTopics."""

        def _fetch_topic(self, topic: Topic) -> Topic:
            found = metadata.list_topics(topic.name, timeout=30).topics[topic.name]
            if found.error is not None:
                raise TopicNotFoundError(f"topic {topic.name!r}: {found.error.str()}")
            fetched = Topic(name=topic.name)
            fetched.broker_config = TopicConfig(
                num_partitions=len(found.partitions), replication_factor=1,
                extra_config={"retention.ms": "-1", "retention.bytes": "-1"},  # unlimited
            )
            return fetched

        def _create_topic(self, topic: Topic, timeout: float, create_timeout: float) -> None:
            self._fetch_topic(topic)  # a metadata request creates it

    recovery = args.recovery_dir is not None
    app = Application(
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=1.0 if recovery else 5.0,
        state_dir=args.state_dir,
        consumer_extra_config={"fetch.wait.max.ms": 10},
        loglevel="WARNING",
        topic_manager=AutoCreatingTopicManager(
            topic_admin=None,  # never used: both methods that would use it are replaced
            consumer_group=args.group,
        ),
    )
    source = app.topic(args.in_topic, key_deserializer="str", value_deserializer="json")
    sink = app.topic(args.out_topic, key_serializer="str", value_serializer="str")

    def add(value: Dict[str, Any], state: Any) -> str:
        total = state.get("total", 0) + value["amount"]
        state.set("total", total)
        return str(total)

    app.dataframe(source).apply(add, stateful=True).to_topic(sink)
    app.run(count=args.events, collect=False)


def run_plain(args: argparse.Namespace) -> None:
    """The floor: one consumer, a dict of totals, one producer, no state kept."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": "plain",
                         "enable.auto.commit": False, **EOF_CONFIG})
    partitions = consumer.list_topics(args.in_topic, timeout=30).topics[args.in_topic].partitions
    consumer.assign([TopicPartition(args.in_topic, p, OFFSET_BEGINNING) for p in partitions])
    producer = Producer({"bootstrap.servers": args.brokers})
    failed: List[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    totals: Dict[bytes, int] = {}
    loads, out_topic, produce = json.loads, args.out_topic, producer.produce
    ended = 0
    while ended < len(partitions):
        for msg in consumer.consume(1000, 0.1):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    sys.exit(f"consumer error: {msg.error()}")
                ended += 1
                continue
            user = msg.key()
            total = totals.get(user, 0) + loads(msg.value())["amount"]
            totals[user] = total
            while True:
                try:
                    produce(out_topic, str(total).encode(), user, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    producer.flush()
    consumer.close()
    if failed:
        sys.exit(f"{len(failed)} deliveries failed: {failed[0]}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["fastflow", "bytewax", "quix", "plain"])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--in-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--recovery-dir", type=Path)
    parser.add_argument("--group", default="bench")
    parser.add_argument("--state-dir")
    args = parser.parse_args(argv)
    if args.engine in ("fastflow", "bytewax"):
        run_dataflow(args.engine, args)
    elif args.engine == "quix":
        run_quix(args)
    else:
        run_plain(args)


if __name__ == "__main__":
    main()

"""KafkaSink: every worker produces its items, and waits for their delivery."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn, cast

from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka import KafkaException, Message, Producer

from fastflow._cext.kafka import produce_plain
from fastflow.connectors.kafka._config import brokers_list, client_config
from fastflow.connectors.kafka._messages import KafkaSinkMessage, describe
from fastflow.errors import ConnectorError
from fastflow.outputs import DynamicSink, StatelessSinkPartition

RawSinkMessage = KafkaSinkMessage[Any, Any]

# Seconds to let librdkafka send (and free room in its queue) when produce() finds the
# queue full, before trying again.
_QUEUE_FULL_WAIT = 0.05


def _at(partition: int | None) -> str:
    return "" if partition is None else f" partition {partition}"


PRODUCER_DEFAULTS: dict[str, object] = {
    # Only failed deliveries call back into Python: success is the rule, and a Python
    # call per acknowledged message would cost more than producing it.
    "delivery.report.only.error": True,
}
"""librdkafka producer settings fastflow starts from (``add_config`` overrides them)."""


class _KafkaSinkPartition(StatelessSinkPartition[RawSinkMessage]):
    """One producer; a batch is written when every message of it is acknowledged."""

    def __init__(self, step_id: str, config: dict[str, Any], topic: str | None) -> None:
        self._step_id = step_id
        self._topic = topic
        self._failed = 0
        self._first_failure = ""
        self._producer = Producer({**config, "on_delivery": self._delivered})

    def _delivered(self, err: ConfluentKafkaError | None, message: Message) -> None:
        if err is not None:
            if not self._failed:
                self._first_failure = (
                    f"topic {message.topic()!r} partition {message.partition()}: {err.str()}"
                )
            self._failed += 1

    def write_batch(self, items: list[RawSinkMessage]) -> None:
        """Produce every item, then wait until the brokers have acknowledged all of them.

        The wait is what makes the sink at-least-once: the engine commits an epoch
        only after its items went through the sink, so an item the brokers never got
        cannot be behind a committed source offset. A full local queue waits for room
        instead of failing; a message the brokers refuse fails the run.
        """
        produce = self._producer.produce
        done, count = 0, len(items)
        while done < count:
            # Compiled: every message that needs no more than produce(topic, value, key).
            done = produce_plain(items, done, KafkaSinkMessage, self._topic, produce)
            if done < count:  # one that needs more, or a full queue: in Python
                self._produce_one(items[done])
                done += 1
        self._settle()

    def _produce_one(self, item: RawSinkMessage) -> None:
        if not isinstance(item, KafkaSinkMessage):
            raise TypeError(
                f"KafkaSink takes KafkaSinkMessage items; got {describe(item)} (turn a "
                "KafkaSourceMessage into one with .to_sink())"
            )
        topic = self._topic if item.topic is None else item.topic
        if topic is None:
            raise ValueError(
                f"no topic to write {describe(item)} to: the sink has topic=None, so "
                "every KafkaSinkMessage must name its topic"
            )
        args: dict[str, Any] = {}
        if item.partition is not None:
            args["partition"] = item.partition
        while True:
            try:
                self._producer.produce(
                    topic,
                    item.value,
                    item.key,
                    # (str, bytes) pairs are valid headers; list invariance hides it.
                    headers=cast("list[tuple[str, str | bytes | None]]", item.headers),
                    timestamp=item.timestamp,
                    **args,
                )
                return
            except BufferError:  # queue.buffering.max.messages/kbytes reached
                self._producer.poll(_QUEUE_FULL_WAIT)  # librdkafka sends, freeing room
            except KafkaException as ex:  # refused at once: unknown partition, too large
                self._refused(topic, item, ex)

    def _refused(self, topic: str, item: RawSinkMessage, ex: KafkaException) -> NoReturn:
        raise ConnectorError(
            f"Kafka sink of step {self._step_id!r} could not write to topic "
            f"{topic!r}{_at(item.partition)}: {ex.args[0].str()}"
        ) from None

    def _settle(self) -> None:
        """Wait for every delivery report; fail if any message was not delivered."""
        self._producer.flush()
        if self._failed:
            failed, first = self._failed, self._first_failure
            self._failed, self._first_failure = 0, ""
            raise ConnectorError(
                f"Kafka sink of step {self._step_id!r} could not deliver {failed} message(s); "
                f"the first: {first}"
            )

    def close(self) -> None:
        self._settle()


class KafkaSink(DynamicSink[RawSinkMessage]):
    """Write :class:`~fastflow.connectors.kafka.KafkaSinkMessage` items to Kafka.

    Every worker has its own producer. Each batch is flushed before the flow goes on,
    so what the flow committed has reached the brokers: output is at-least-once (the
    items of the epoch a resume starts from are written again). A message the brokers
    refuse (unknown partition, too large, timed out) stops the run with an error
    naming its topic and the reason; a full producer queue is waited out, never
    raised (unlike Bytewax's, which lets ``BufferError`` through).

    :arg brokers: ``host:port`` of some brokers of the cluster.
    :arg topic: The topic to write to; ``None`` (to be given explicitly) means every
        message names its own ``topic``, which also overrides a topic given here.
    :arg add_config: More librdkafka producer settings (``acks``, ``linger.ms``,
        ``compression.type``, security, ...).
    """

    def __init__(
        self,
        brokers: Iterable[str],
        topic: str | None,
        add_config: dict[str, str] | None = None,
    ) -> None:
        self._brokers = brokers_list(brokers, "brokers")
        self._topic = topic
        self._add_config = dict(add_config or {})

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> _KafkaSinkPartition:
        """Every worker gets a producer of its own."""
        config = client_config(self._brokers, PRODUCER_DEFAULTS, self._add_config)
        return _KafkaSinkPartition(step_id, config, self._topic)

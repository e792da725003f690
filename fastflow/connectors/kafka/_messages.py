"""The items Kafka steps emit and take: messages read, messages to write, errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import KafkaError as ConfluentKafkaError

K = TypeVar("K")
V = TypeVar("V")
K2 = TypeVar("K2")
V2 = TypeVar("V2")


@dataclass(frozen=True, init=False)
class KafkaSourceMessage(Generic[K, V]):
    """A message read from Kafka, with where it came from.

    :class:`~fastflow.connectors.kafka.KafkaSource` emits ``key`` and ``value`` as the
    bytes on the wire (``None`` when absent); the deserialize operators replace them.
    ``timestamp`` is librdkafka's ``(timestamp type, milliseconds since the epoch)``.
    It is frozen, so a message can be passed on and kept in state without copies.
    """

    key: K
    value: V
    topic: str | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    latency: float | None = None
    offset: int | None = None
    partition: int | None = None
    timestamp: tuple[int, int] | None = None

    def __init__(
        self,
        key: K,
        value: V,
        topic: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        latency: float | None = None,
        offset: int | None = None,
        partition: int | None = None,
        timestamp: tuple[int, int] | None = None,
    ) -> None:
        # Straight into the instance dict instead of a frozen dataclass's setattr per
        # field: a quarter of the cost, paid per message.
        fields = self.__dict__
        fields["key"] = key
        fields["value"] = value
        fields["topic"] = topic
        fields["headers"] = [] if headers is None else headers
        fields["latency"] = latency
        fields["offset"] = offset
        fields["partition"] = partition
        fields["timestamp"] = timestamp

    def to_sink(self) -> KafkaSinkMessage[K, V]:
        """Turn it into a message to write, keeping key, value and headers.

        Topic and partition are left unset on purpose: the sink's topic and the
        producer's partitioner decide where it goes, as in Bytewax.
        """
        return KafkaSinkMessage(key=self.key, value=self.value, headers=self.headers)

    def _with_key(self, key: K2) -> KafkaSourceMessage[K2, V]:
        return self._with_key_and_value(key, self.value)

    def _with_value(self, value: V2) -> KafkaSourceMessage[K, V2]:
        return self._with_key_and_value(self.key, value)

    def _with_key_and_value(self, key: K2, value: V2) -> KafkaSourceMessage[K2, V2]:
        return KafkaSourceMessage(
            key=key, value=value, topic=self.topic, headers=self.headers, latency=self.latency,
            offset=self.offset, partition=self.partition, timestamp=self.timestamp,
        )


@dataclass(frozen=True, init=False)
class KafkaSinkMessage(Generic[K, V]):
    """A message for :class:`~fastflow.connectors.kafka.KafkaSink` to write.

    ``key`` and ``value`` must be bytes, str or ``None`` by the time they reach the
    sink (the serialize operators make them so). ``topic``, when set, overrides the
    sink's topic; ``partition``, when set, picks the partition (else the producer's
    partitioner hashes the key); ``timestamp`` is in milliseconds since the epoch,
    ``0`` meaning "now".
    """

    key: K
    value: V
    topic: str | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None
    timestamp: int = 0

    def __init__(
        self,
        key: K,
        value: V,
        topic: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp: int = 0,
    ) -> None:
        fields = self.__dict__  # see KafkaSourceMessage.__init__
        fields["key"] = key
        fields["value"] = value
        fields["topic"] = topic
        fields["headers"] = [] if headers is None else headers
        fields["partition"] = partition
        fields["timestamp"] = timestamp

    def _with_key(self, key: K2) -> KafkaSinkMessage[K2, V]:
        return self._with_key_and_value(key, self.value)

    def _with_value(self, value: V2) -> KafkaSinkMessage[K, V2]:
        return self._with_key_and_value(self.key, value)

    def _with_key_and_value(self, key: K2, value: V2) -> KafkaSinkMessage[K2, V2]:
        return KafkaSinkMessage(
            key=key, value=value, topic=self.topic, headers=self.headers,
            partition=self.partition, timestamp=self.timestamp,
        )


@dataclass(frozen=True)
class KafkaError(Generic[K, V]):
    """An error met while reading or deserializing a message, as an item of the flow.

    Emitted instead of raising when the source has ``raise_on_errors=False`` (the
    ``errs`` stream of :func:`fastflow.connectors.kafka.operators.input`), so a flow can
    log, count or dead-letter bad input and go on.
    """

    err: ConfluentKafkaError
    """What went wrong, as librdkafka reports it (``err.code()``, ``err.str()``)."""

    msg: KafkaSourceMessage[K, V]
    """The message the error is about (for a consumer error: what librdkafka knew)."""


def describe(item: Any) -> str:
    """A short description of an item of the wrong type, for error messages."""
    text = repr(item)
    return f"{type(item).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"

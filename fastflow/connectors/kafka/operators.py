"""Kafka as operators: input with an error stream, output, and (de)serialization steps.

Import them as Bytewax's docs do, ``from fastflow.connectors.kafka import operators as
kop``. :func:`input` never stops the run on a consumer error: errors go to the ``errs``
stream of the :class:`KafkaOpOut` it returns, so the flow decides (``op.raises`` to
stop, ``op.inspect`` to log, an output to dead-letter them). The deserialize steps
split the same way; the serialize steps raise, since a message the flow made and
cannot encode is a bug in the flow.

The (de)serializers are those of :mod:`fastflow.connectors.kafka.serde` (Bytewax's
``PlainAvroSerializer``, ``ConfluentAvroDeserializer``, ...), confluent-kafka's own
``Serializer``/``Deserializer`` objects (``StringSerializer``, the Schema Registry's
``AvroSerializer``, ``JSONDeserializer``, ``ProtobufSerializer``, ...), or any callable
taking ``(data, SerializationContext)``: each is called with the message's topic,
field and headers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka import KafkaError as ConfluentKafkaError
from confluent_kafka.serialization import MessageField, SerializationContext

import fastflow.operators as op
from fastflow.connectors.kafka._messages import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from fastflow.connectors.kafka._sink import KafkaSink
from fastflow.connectors.kafka._source import KafkaSource
from fastflow.dataflow import Dataflow, Stream, operator

__all__ = [
    "KafkaOpOut",
    "deserialize",
    "deserialize_key",
    "deserialize_value",
    "input",
    "output",
    "serialize",
    "serialize_key",
    "serialize_value",
]

X = TypeVar("X")
E = TypeVar("E")
K = TypeVar("K")
V = TypeVar("V")

Bytes: TypeAlias = bytes | None
# A confluent_kafka.serialization.Serializer or Deserializer, or any such callable.
Serde: TypeAlias = Callable[[Any, SerializationContext], Any]


@dataclass(frozen=True)
class KafkaOpOut(Generic[X, E]):
    """The two streams out of a Kafka step: what worked and what did not."""

    oks: Stream[X]
    """Messages read (or decoded)."""

    errs: Stream[E]
    """:class:`~fastflow.connectors.kafka.KafkaError` items, each with its message."""


# isinstance(item, KafkaSourceMessage) as a built-in method: the branch calls it per
# item without a Python frame. The streams split hold messages and KafkaErrors only.
_is_message = KafkaSourceMessage.__instancecheck__


@operator
def _split_errors(step_id: str, up: Stream[Any]) -> KafkaOpOut[Any, Any]:
    """Split messages from errors, keeping each stream in order."""
    split = op.branch("branch", up, _is_message)
    return KafkaOpOut(split.trues, split.falses)


def _as_sink_messages(batch: list[Any]) -> list[KafkaSinkMessage[Any, Any]]:
    return [item.to_sink() if _is_message(item) else item for item in batch]


@operator
def _to_sink(step_id: str, up: Stream[Any]) -> Stream[KafkaSinkMessage[Any, Any]]:
    """Turn read messages into messages to write; messages to write pass as they are."""
    return op.flat_map_batch("map", up, _as_sink_messages)


@operator
def input(  # noqa: A001 - Bytewax's name
    step_id: str,
    flow: Dataflow,
    *,
    brokers: list[str],
    topics: list[str],
    tail: bool = True,
    starting_offset: int = OFFSET_BEGINNING,
    add_config: dict[str, str] | None = None,
    batch_size: int = 1000,
    group_id: str | None = None,
) -> KafkaOpOut[KafkaSourceMessage[Bytes, Bytes], KafkaError[Bytes, Bytes]]:
    """Read Kafka topics, with consumer errors on a stream of their own.

    The arguments are :class:`~fastflow.connectors.kafka.KafkaSource`'s (``group_id``
    is fastflow's, not Bytewax's); errors never stop the run here
    (``raise_on_errors=False``): handle ``errs``.
    """
    source = KafkaSource(
        brokers,
        topics,
        tail=tail,
        starting_offset=starting_offset,
        add_config=add_config,
        batch_size=batch_size,
        raise_on_errors=False,
        group_id=group_id,
    )
    return _split_errors("split_err", op.input("kafka_input", flow, source))


@operator
def output(
    step_id: str,
    up: Stream[KafkaSourceMessage[Bytes, Bytes] | KafkaSinkMessage[Bytes, Bytes]],
    *,
    brokers: list[str],
    topic: str,
    add_config: dict[str, str] | None = None,
) -> None:
    """Write messages to a Kafka topic; read messages are written as ``to_sink()`` makes them.

    See :class:`~fastflow.connectors.kafka.KafkaSink`: delivery is checked batch by
    batch, and a message's own ``topic`` overrides ``topic``.
    """
    op.output("kafka_output", _to_sink("to_sink", up), KafkaSink(brokers, topic, add_config))


def _context(message: Any, part: MessageField) -> SerializationContext:
    return SerializationContext(message.topic, part, message.headers)


def _decode_error(code: int, ex: Exception, message: Any) -> KafkaError[Any, Any]:
    return KafkaError(ConfluentKafkaError(code, f"{type(ex).__name__}: {ex}"), message)


@operator
def deserialize_key(
    step_id: str, up: Stream[KafkaSourceMessage[Bytes, V]], deserializer: Serde
) -> KafkaOpOut[KafkaSourceMessage[Any, V], KafkaError[Bytes, V]]:
    """Decode every message's key; a key that fails becomes an error with its message."""

    def decode(message: KafkaSourceMessage[Bytes, V]) -> Any:
        try:
            key = deserializer(message.key, _context(message, MessageField.KEY))
        except Exception as ex:
            return _decode_error(ConfluentKafkaError._KEY_DESERIALIZATION, ex, message)
        return message._with_key(key)

    return _split_errors("split", op.map("map", up, decode))


@operator
def deserialize_value(
    step_id: str, up: Stream[KafkaSourceMessage[K, Bytes]], deserializer: Serde
) -> KafkaOpOut[KafkaSourceMessage[K, Any], KafkaError[K, Bytes]]:
    """Decode every message's value; a value that fails becomes an error with its message."""

    def decode(message: KafkaSourceMessage[K, Bytes]) -> Any:
        try:
            value = deserializer(message.value, _context(message, MessageField.VALUE))
        except Exception as ex:
            return _decode_error(ConfluentKafkaError._VALUE_DESERIALIZATION, ex, message)
        return message._with_value(value)

    return _split_errors("split_err", op.map("map", up, decode))


@operator
def deserialize(
    step_id: str,
    up: Stream[KafkaSourceMessage[Bytes, Bytes]],
    *,
    key_deserializer: Serde,
    val_deserializer: Serde,
) -> KafkaOpOut[KafkaSourceMessage[Any, Any], KafkaError[Bytes, Bytes]]:
    """Decode keys and values in one step; a failure keeps the message undecoded.

    One step rather than :func:`deserialize_key` then :func:`deserialize_value`, so
    that the error carries the message as it was read, not half decoded.
    """

    def decode(message: KafkaSourceMessage[Bytes, Bytes]) -> Any:
        try:
            key = key_deserializer(message.key, _context(message, MessageField.KEY))
        except Exception as ex:
            return _decode_error(ConfluentKafkaError._KEY_DESERIALIZATION, ex, message)
        try:
            value = val_deserializer(message.value, _context(message, MessageField.VALUE))
        except Exception as ex:
            return _decode_error(ConfluentKafkaError._VALUE_DESERIALIZATION, ex, message)
        return message._with_key_and_value(key, value)

    return _split_errors("split_err", op.map("map", up, decode))


def _encode(serializer: Serde, message: Any, part: MessageField) -> Any:
    """Encode the message's key or value (``part``); ``None`` from a serializer is a bug."""
    what = "key" if part == MessageField.KEY else "value"
    field = getattr(message, what)
    try:
        data = serializer(field, _context(message, part))
    except Exception as ex:
        if message.topic is None:  # the sink's topic is not known yet
            raise ValueError(
                f"{type(ex).__name__}: {ex} (the message has topic=None; if the {what} "
                "serializer needs a topic, as confluent-kafka's default "
                "topic_subject_name_strategy does, set KafkaSinkMessage.topic or use "
                "record_subject_name_strategy)"
            ) from ex
        raise
    if data is None and field is not None:
        raise ValueError(f"the {what} serializer returned None for {message!r}")
    return data


@operator
def serialize_key(
    step_id: str,
    up: Stream[KafkaSourceMessage[Any, V] | KafkaSinkMessage[Any, V]],
    serializer: Serde,
) -> Stream[KafkaSinkMessage[bytes, V]]:
    """Encode every message's key, as messages to write; an error stops the run."""

    def encode(message: KafkaSinkMessage[Any, V]) -> KafkaSinkMessage[bytes, V]:
        return message._with_key(_encode(serializer, message, MessageField.KEY))

    return op.map("map", _to_sink("to_sink", up), encode)


@operator
def serialize_value(
    step_id: str,
    up: Stream[KafkaSourceMessage[K, Any] | KafkaSinkMessage[K, Any]],
    serializer: Serde,
) -> Stream[KafkaSinkMessage[K, bytes]]:
    """Encode every message's value, as messages to write; an error stops the run."""

    def encode(message: KafkaSinkMessage[K, Any]) -> KafkaSinkMessage[K, bytes]:
        return message._with_value(_encode(serializer, message, MessageField.VALUE))

    return op.map("map", _to_sink("to_sink", up), encode)


@operator
def serialize(
    step_id: str,
    up: Stream[KafkaSourceMessage[Any, Any] | KafkaSinkMessage[Any, Any]],
    *,
    key_serializer: Serde,
    val_serializer: Serde,
) -> Stream[KafkaSinkMessage[bytes, bytes]]:
    """Encode keys and values, as messages to write; an error stops the run."""

    def encode(message: KafkaSinkMessage[Any, Any]) -> KafkaSinkMessage[bytes, bytes]:
        return message._with_key_and_value(
            _encode(key_serializer, message, MessageField.KEY),
            _encode(val_serializer, message, MessageField.VALUE),
        )

    return op.map("map", _to_sink("to_sink", up), encode)

"""Plain Avro (de)serializers for the Kafka operators, as Bytewax 0.21 names them.

Why here: a Bytewax flow passes ``PlainAvroSerializer(schema)`` and
``PlainAvroDeserializer(schema)`` to ``kop.serialize``/``kop.deserialize``; it must run
unchanged. Both are confluent-kafka ``Serializer``/``Deserializer`` objects, called with
``(data, SerializationContext)`` like every (de)serializer the operators take.

*Plain* Avro is the Avro binary encoding of one record and nothing else: no magic byte,
no schema id, so both sides must be given the writer's schema. For Confluent's Schema
Registry wire format (magic byte 0, a 4-byte schema id, then the record), pass
confluent-kafka's own ``confluent_kafka.schema_registry.avro.AvroSerializer`` /
``AvroDeserializer`` (or its JSON Schema and Protobuf ones) to the operators directly.

Needs ``pip install 'fastflow[kafka-avro]'`` (fastavro); importing this module without
it fails with one line saying so.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from confluent_kafka.serialization import Deserializer, SerializationContext, Serializer

try:
    from fastavro import parse_schema, schemaless_reader, schemaless_writer
except ImportError as _missing:
    if _missing.name != "fastavro":
        raise
    raise ImportError(
        "fastflow.connectors.kafka.serde needs the fastavro package, which is missing: "
        "install it with `pip install 'fastflow[kafka-avro]'` (or `pip install fastavro`)",
        name="fastavro",
    ) from None

__all__ = ["PlainAvroDeserializer", "PlainAvroSerializer"]


def _parse(schema: Any, named_schemas: dict[str, Any] | None) -> Any:
    """A fastavro schema from JSON text or a Schema Registry ``Schema`` (its ``schema_str``)."""
    text = getattr(schema, "schema_str", schema)
    return parse_schema(orjson.loads(text), named_schemas=named_schemas)


class PlainAvroSerializer(Serializer):
    """Encode a record (a dict) as plain Avro of ``schema``, with fastavro.

    :arg schema: The Avro schema, as JSON text or a Schema Registry ``Schema``.
    :arg named_schemas: Schemas it refers to by name (fastavro's ``named_schemas``).
    """

    def __init__(self, schema: Any, named_schemas: dict[str, Any] | None = None) -> None:
        self.schema = _parse(schema, named_schemas)

    def __call__(self, obj: Any, ctx: SerializationContext | None = None) -> bytes:
        """Encode ``obj``; a missing field or one of the wrong type raises."""
        out = io.BytesIO()
        schemaless_writer(out, self.schema, obj)
        return out.getvalue()


class PlainAvroDeserializer(Deserializer):
    """Decode one plain Avro record written with ``schema``, with fastavro.

    :arg schema: The schema the records were written with (JSON text or a ``Schema``).
    :arg named_schemas: Schemas it refers to by name.
    :arg reader_schema: The schema to read them as, when it has evolved since they were
        written (a new field with a default, a dropped field, a promoted type); by
        default the writer's. A fastflow addition: Bytewax has no such argument.
    """

    def __init__(
        self,
        schema: Any,
        named_schemas: dict[str, Any] | None = None,
        reader_schema: Any = None,
    ) -> None:
        self.schema = _parse(schema, named_schemas)
        self.reader_schema = (
            None if reader_schema is None else _parse(reader_schema, named_schemas)
        )

    def __call__(self, value: bytes | str | None, ctx: SerializationContext | None = None) -> Any:
        """Decode ``value``; ``None``, or bytes that are not one such record, raise."""
        if value is None:
            raise ValueError("cannot deserialize None: the message has no such field")
        data = value.encode() if isinstance(value, str) else value
        payload = io.BytesIO(data)
        record = schemaless_reader(payload, self.schema, self.reader_schema)
        if payload.tell() != len(data):
            raise ValueError(
                f"{len(data) - payload.tell()} byte(s) left over after the Avro record: the "
                "data was not written with this schema (or is framed, e.g. by a Schema Registry "
                "serializer)"
            )
        return record

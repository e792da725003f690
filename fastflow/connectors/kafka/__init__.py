"""Kafka (and Redpanda) connectors, with the names and parameters of Bytewax 0.21's.

Kafka is where most production streams come from, and a Bytewax flow that imports
``bytewax.connectors.kafka`` should run on fastflow unchanged. The client is
`confluent-kafka <https://pypi.org/project/confluent-kafka/>`_, an optional extra
(``pip install 'fastflow[kafka]'``): it is imported only when this package is, so a
flow without Kafka never pays for it, and a flow that uses Kafka without it installed
fails at once with one line saying what to install.

- :class:`KafkaSource` reads topics; each Kafka partition is a source partition whose
  resume state is the offset of its next message, so a resumed run continues exactly
  after the last committed epoch. It emits :class:`KafkaSourceMessage` items (and
  :class:`KafkaError` items when ``raise_on_errors=False``).
- :class:`KafkaSink` writes :class:`KafkaSinkMessage` items; every batch is delivered
  (acknowledged by the brokers) before the flow goes on, and a failed delivery stops
  the run.
- :mod:`fastflow.connectors.kafka.operators` wraps both as operators, with an error
  stream and (de)serialization steps.
"""

from __future__ import annotations

import sys
from typing import TypeVar

try:
    import confluent_kafka  # noqa: F401 - imported here to fail early, with the message below
except ImportError as _missing:
    if not (_missing.name or "").startswith("confluent_kafka"):
        raise  # confluent-kafka is there but broken: its own error says more
    if getattr(sys, "frozen", False):  # the standalone binary (packaging/fastflow.spec)
        _HOW = (
            "this fastflow executable was built without it; rebuild it with confluent-kafka "
            "installed in the build venv (see docs/connectors.md), or use the Python package"
        )
    else:
        _HOW = "install it with `pip install 'fastflow[kafka]'` (or `pip install confluent-kafka`)"
    raise ImportError(
        f"fastflow.connectors.kafka needs the confluent-kafka package, which is missing: {_HOW}",
        name="confluent_kafka",
    ) from None

from fastflow.connectors.kafka._messages import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from fastflow.connectors.kafka._sink import KafkaSink
from fastflow.connectors.kafka._source import KafkaSource

__all__ = [
    "K",
    "K2",
    "KafkaError",
    "KafkaSink",
    "KafkaSinkMessage",
    "KafkaSource",
    "KafkaSourceMessage",
    "V",
    "V2",
]

K = TypeVar("K")
"""Type of a message's key (Bytewax exports these type variables too)."""

V = TypeVar("V")
"""Type of a message's value."""

K2 = TypeVar("K2")
"""Type of a message's key after a (de)serialization step."""

V2 = TypeVar("V2")
"""Type of a message's value after a (de)serialization step."""

"""The librdkafka settings every fastflow Kafka client starts from.

Why one place: the source, the sink and the metadata client must agree on where
librdkafka's logs go. By default librdkafka writes them to stderr itself, hundreds of
lines when brokers are unreachable, ahead of the one line that says what went wrong.
fastflow hands them to Python's ``logging`` instead, on the ``fastflow.kafka`` logger:
silent unless the application configures logging (a ``NullHandler`` keeps Python's
last-resort handler from printing them), and then filtered and formatted like the rest
of its logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

LOGGER = logging.getLogger("fastflow.kafka")
"""Where librdkafka's logs go (``logging.getLogger("fastflow.kafka")``)."""
LOGGER.addHandler(logging.NullHandler())


def brokers_list(brokers: Iterable[str], what: str) -> list[str]:
    """``brokers`` (or topics) as a list; a plain string is a mistake, not a list of letters."""
    if isinstance(brokers, str):
        raise TypeError(f"{what} must be an iterable and not a string; got {brokers!r}")
    return list(brokers)


def client_config(
    brokers: list[str], defaults: Mapping[str, Any], add_config: Mapping[str, Any]
) -> dict[str, Any]:
    """``bootstrap.servers``, the logger, fastflow's ``defaults``, then the user's settings."""
    return {
        "bootstrap.servers": ",".join(brokers),
        "logger": LOGGER,
        **defaults,
        **add_config,
    }

"""Kafka offsets in a store: which steps' states are a Kafka source's, for ``recovery status``.

Why a module: the store knows steps by id only, not by what they are, so the Kafka input
steps are recognised by their state alone: every key is a Kafka source partition's name,
``"{partition}-{topic}"``, and every state an integer, the offset of the next message to
read (what ``fastflow.connectors.kafka.KafkaSource`` snapshots). Works on the change sets'
typed JSON (an int state is a plain JSON integer), so nothing is decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PARTITION_NAME = re.compile(r"(0|[1-9][0-9]*)-(.+)", re.DOTALL)


@dataclass(frozen=True)
class KafkaOffset:
    """Where a resume would continue reading one Kafka topic partition."""

    step_id: str
    topic: str
    partition: int
    next_offset: int
    """Offset of the next message to read (negative: a logical start, nothing read yet)."""


class OffsetCollector:
    """Keeps, per step, the states that look like Kafka offsets, as change sets are merged."""

    def __init__(self) -> None:
        self._offsets: dict[str, dict[str, int]] = {}
        self._other: set[str] = set()  # steps with a key or state that is not an offset

    def apply(self, step_id: str, changes: dict[str, Any]) -> None:
        """Merge one change set (``{"set": {key: state}, "del": [keys]}``) of ``step_id``."""
        if step_id in self._other:
            return
        offsets = self._offsets.setdefault(step_id, {})
        for key, state in changes["set"].items():
            if type(state) is not int or _PARTITION_NAME.fullmatch(key) is None:
                self._other.add(step_id)
                del self._offsets[step_id]
                return
            offsets[key] = state
        for key in changes["del"]:
            offsets.pop(key, None)

    def offsets(self) -> list[KafkaOffset]:
        """Every Kafka step's offsets, by step, topic and partition."""
        found = []
        for step_id, offsets in self._offsets.items():
            for key, offset in offsets.items():
                match = _PARTITION_NAME.fullmatch(key)
                assert match is not None
                found.append(KafkaOffset(step_id, match[2], int(match[1]), offset))
        return sorted(found, key=lambda o: (o.step_id, o.topic, o.partition))

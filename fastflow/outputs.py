"""Sinks: where a dataflow's items go.

Subclass :class:`FixedPartitionedSink` for output split into a fixed set of
named partitions that snapshot their progress (so a resumed file sink can
truncate what it wrote after the snapshot), or :class:`DynamicSink` for output
written independently from every worker.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

__all__ = [
    "DynamicSink",
    "FixedPartitionedSink",
    "Sink",
    "StatefulSinkPartition",
    "StatelessSinkPartition",
]

X = TypeVar("X")
V = TypeVar("V")
S = TypeVar("S")


class Sink(ABC, Generic[X]):  # noqa: B024 - a marker base, like Bytewax's
    """Base of all sinks; subclass one of the two kinds below instead."""


class StatefulSinkPartition(ABC, Generic[V, S]):
    """One partition of a :class:`FixedPartitionedSink`, able to resume."""

    @abstractmethod
    def write_batch(self, values: list[V]) -> None:
        """Write the values routed to this partition, in order."""

    @abstractmethod
    def snapshot(self) -> S:
        """Return the state to resume from: it is passed to ``build_part`` after a restart."""

    def close(self) -> None:
        """Release resources once the flow is done."""


class FixedPartitionedSink(Sink[tuple[str, V]], Generic[V, S]):
    """Output split into a fixed set of named partitions; items are ``(key, value)``.

    The key picks the partition (:meth:`part_fn`); the partition gets the value.
    """

    @abstractmethod
    def list_parts(self) -> list[str]:
        """Return the names of the partitions this sink is made of."""

    def part_fn(self, item_key: str) -> int:
        """Map an item's key to a partition index (taken modulo the partition count)."""
        return zlib.adler32(item_key.encode())

    @abstractmethod
    def build_part(
        self, step_id: str, for_part: str, resume_state: S | None
    ) -> StatefulSinkPartition[V, S]:
        """Build partition ``for_part``, resuming from ``resume_state`` if not ``None``."""


class StatelessSinkPartition(ABC, Generic[X]):
    """A worker's share of a :class:`DynamicSink`."""

    @abstractmethod
    def write_batch(self, items: list[X]) -> None:
        """Write the items, in order."""

    def close(self) -> None:
        """Release resources once the flow is done."""


class DynamicSink(Sink[X]):
    """Output written by every worker on its own."""

    @abstractmethod
    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[X]:
        """Build this worker's partition."""

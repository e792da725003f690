"""One librdkafka consumer for all the partitions a process reads of a source.

Why shared: a consumer per Kafka partition (Bytewax's way) costs a set of librdkafka
threads and a fetch pipeline each, and one fetch request per partition where a single
consumer asks each broker for all its partitions at once. The engine runs every worker
of a process in one thread, so the partitions of a source in this process can share one
consumer: a poll of any of them consumes a batch for all and sorts it into
per-partition buffers, from which each partition hands out its own messages, in order.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition


class SharedConsumer:
    """A consumer whose messages are sorted into one buffer per assigned partition."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.consumer = Consumer(config)
        self.closed = False
        self._buffers: dict[tuple[str, int], list[Message]] = {}
        self._orphans: list[Message] = []  # errors about no partition of ours

    def assign(self, topic: str, index: int, offset: int) -> list[Message]:
        """Start reading a partition at ``offset``; return the buffer its messages go to."""
        buffer: list[Message] = []
        self._buffers[(topic, index)] = buffer
        self.consumer.incremental_assign([TopicPartition(topic, index, offset)])
        return buffer

    def fill(self, most: int) -> None:
        """Consume up to ``most`` messages now (never waiting) into their partitions' buffers."""
        buffers = self._buffers
        key: tuple[str | None, int | None] | None = None
        buffer = self._orphans
        # librdkafka hands out runs of one partition's messages: look a buffer up per run.
        for message in self.consumer.consume(most, 0):
            at = (message.topic(), message.partition())
            if at != key:
                key = at
                buffer = buffers.get(at, self._orphans)  # type: ignore[arg-type] # None: orphan
            buffer.append(message)

    def take_orphans(self) -> list[Message]:
        """Errors naming no partition of ours (a broker down, ...), for any partition to report."""
        orphans, self._orphans = self._orphans, []
        return orphans

    def release(self, topic: str, index: int) -> None:
        """Stop reading a partition; close the consumer with the last one."""
        if self._buffers.pop((topic, index), None) is None or self.closed:
            return
        if self._buffers:
            self.consumer.incremental_unassign([TopicPartition(topic, index)])
        else:
            self.close()

    def close(self) -> None:
        """Close the consumer (a second call does nothing)."""
        if not self.closed:
            self.closed = True
            self.consumer.close()

"""KafkaSource: every Kafka partition of the topics is a resumable source partition."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeAlias, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka import KafkaError as ConfluentKafkaError

from fastflow._cext.kafka import read_messages
from fastflow.connectors.kafka._config import brokers_list, client_config
from fastflow.connectors.kafka._consumer import SharedConsumer
from fastflow.connectors.kafka._messages import KafkaError, KafkaSourceMessage
from fastflow.errors import ConnectorError
from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition

RawMessage: TypeAlias = KafkaSourceMessage[bytes | None, bytes | None]
RawError: TypeAlias = KafkaError[bytes | None, bytes | None]
RawItem: TypeAlias = RawMessage | RawError

# Seconds to wait for the brokers' answer about a topic's partitions or a partition's
# end offset before giving up (librdkafka retries within it).
METADATA_TIMEOUT = 30.0

# The consumers never join a consumer group: partitions are assigned by hand and their
# offsets live in the recovery store. librdkafka still wants a group id.
_IGNORED_GROUP = "FASTFLOW_IGNORED"

CONSUMER_DEFAULTS: dict[str, object] = {}
"""librdkafka consumer settings fastflow starts from (``add_config`` overrides them)."""



def _partition_name(topic: str, index: int) -> str:
    return f"{index}-{topic}"


class _KafkaSourcePartition(StatefulSourcePartition[RawItem, int]):
    """One Kafka partition, read through the process's shared consumer from ``offset`` on."""

    def __init__(
        self,
        shared: SharedConsumer,
        topic: str,
        index: int,
        offset: int,
        batch_size: int,
        raise_on_errors: bool,
        commit_to_group: bool,
    ) -> None:
        self._shared = shared
        self._commit_to_group = commit_to_group
        self._consumer = shared.consumer
        self._topic = topic
        self._index = index
        self._offset = offset  # of the next message to emit, or a logical OFFSET_*
        self._batch_size = batch_size
        self._raise_on_errors = raise_on_errors
        self._ended = False
        self._closed = False
        self._where = TopicPartition(topic, index)
        self._buffer = shared.assign(topic, index, offset)

    def next_batch(self) -> list[RawItem]:
        if self._ended:
            raise StopIteration()
        buffer = self._buffer
        size = self._batch_size
        if not buffer:
            # Never block: the engine polls every partition of every worker in one
            # thread, and sleeps by itself when none of them had anything.
            self._shared.fill(size * 4)
            if not buffer:
                return self._orphan_errors()
        messages = buffer[:size]
        del buffer[:size]
        batch: list[RawItem] = []
        at, count = 0, len(messages)
        while at < count:
            # Compiled: messages into KafkaSourceMessage items, up to the first error.
            at = read_messages(messages, at, KafkaSourceMessage, self._topic, self._index, batch)
            if at < count:
                if self._error(messages[at], batch):
                    break
                at += 1
        for done in reversed(batch):  # errors do not move the resume offset
            if type(done) is KafkaSourceMessage:
                self._offset = cast(int, done.offset) + 1
                break
        return batch

    def _orphan_errors(self) -> list[RawItem]:
        """Report consumer errors that name no partition (this one's poll found them)."""
        batch: list[RawItem] = []
        for message in self._shared.take_orphans():
            self._error(message, batch)
        return batch

    def _error(self, message: Message, batch: list[RawItem]) -> bool:
        """Handle a consumer error; return whether the batch ends here (end of partition)."""
        error = message.error()
        assert error is not None
        if error.code() == ConfluentKafkaError._PARTITION_EOF:
            self._ended = True  # emit this batch; the next call ends the partition
            return True
        if self._raise_on_errors:
            raise ConnectorError(  # Bytewax's words
                f"error consuming from Kafka topic `{self._topic!r}`: {error.str()} "
                f"(partition {self._index})"
            )
        # A consumed message's headers are (name, bytes) pairs or None; confluent-kafka
        # types the getter as the producer's argument, which may also be a dict.
        headers = cast("list[tuple[str, bytes]] | None", message.headers())
        item = KafkaSourceMessage(
            key=message.key(),
            value=message.value(),
            topic=message.topic(),
            headers=headers or [],
            latency=message.latency(),
            offset=message.offset(),
            partition=message.partition(),
            timestamp=message.timestamp(),
        )
        # An error does not move the resume offset: a resume meets it again.
        batch.append(KafkaError(error, item))
        return False

    def snapshot(self) -> int:
        return self._offset

    def snapshot_committed(self, offset: int) -> None:
        """The epoch that read up to ``offset`` is durable: commit it to the consumer group.

        Only with ``group_id``; asynchronous (a failed commit only delays what tools
        watching the group see: the recovery store, not the group, is where a resume
        starts).
        """
        if self._commit_to_group and offset >= 0 and not self._closed:
            self._consumer.commit(
                offsets=[TopicPartition(self._topic, self._index, offset)], asynchronous=True
            )

    def lag(self) -> int | None:
        """Messages of the partition after the position: its high watermark minus the next offset.

        fastflow's monitoring reads it (from any thread, at any time) as the consumer
        lag of this topic partition. It never waits for the brokers: the high
        watermark is the one the last fetch response carried. ``None`` until a fetch
        has told it, or once the partition is closed.
        """
        if self._closed:
            return None
        try:
            low, high = self._consumer.get_watermark_offsets(self._where, cached=True)
        except (KafkaException, RuntimeError):  # RuntimeError: closed meanwhile
            return None
        if high < 0:
            return None
        position = self._offset if self._offset >= 0 else low
        return None if position < 0 else max(int(high) - position, 0)

    def close(self) -> None:
        self._closed = True
        self._shared.release(self._topic, self._index)


class KafkaSource(FixedPartitionedSource[RawItem, int]):
    """Read Kafka topics; every Kafka partition is a partition of the source.

    The engine deals the partitions out over the workers, and each resumes from the
    offset after the last message it emitted in the last committed epoch, so the state
    of a resumed flow holds every message exactly once. Offsets live in the recovery
    store, not in a consumer group (``group_id`` also commits them to one).

    Items are :class:`~fastflow.connectors.kafka.KafkaSourceMessage` with ``key`` and
    ``value`` as bytes (or ``None``). A consumer error stops the run
    (``raise_on_errors=True``) or is emitted as a
    :class:`~fastflow.connectors.kafka.KafkaError` item for the flow to handle.

    :arg brokers: ``host:port`` of some brokers of the cluster.
    :arg topics: The topics to read, all their partitions.
    :arg tail: Wait for new messages at the end of a partition (the flow never ends);
        with ``False``, a partition ends at the end it finds, and the flow with the last.
    :arg starting_offset: Where a partition starts when it has no resume state:
        ``confluent_kafka.OFFSET_BEGINNING`` (default), ``OFFSET_END`` (only messages
        written after the start; that end is fixed when the partition is built, so a
        resume misses none written in between), or an offset.
    :arg add_config: More librdkafka settings, for the consumers and the metadata
        client (security, timeouts, ``fetch.wait.max.ms``, ...).
    :arg batch_size: The most messages one poll of a partition hands to the flow.
    :arg raise_on_errors: Stop the run on a consumer error (default), or emit
        :class:`~fastflow.connectors.kafka.KafkaError` items instead.
    :arg group_id: Also commit every partition's offset to this consumer group, once
        the epoch that read up to it is durable in the recovery store (so tools that
        watch a group's lag see the flow's). Resumes still start from the recovery
        store; without recovery nothing is committed.
    """

    def __init__(
        self,
        brokers: Iterable[str],
        topics: Iterable[str],
        tail: bool = True,
        starting_offset: int = OFFSET_BEGINNING,
        add_config: dict[str, str] | None = None,
        batch_size: int = 1000,
        raise_on_errors: bool = True,
        group_id: str | None = None,
    ) -> None:
        self._brokers = brokers_list(brokers, "brokers")
        self._group_id = group_id
        self._topics = brokers_list(topics, "topics")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        self._tail = tail
        self._starting_offset = starting_offset
        self._add_config = dict(add_config or {})
        self._batch_size = batch_size
        self._raise_on_errors = raise_on_errors
        self._shared: SharedConsumer | None = None
        self._shared_pid: int | None = None

    def _consumer_config(self) -> dict[str, object]:
        return client_config(self._brokers, {
            **CONSUMER_DEFAULTS,
            "group.id": self._group_id or _IGNORED_GROUP,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": not self._tail,
        }, self._add_config)

    def list_parts(self) -> list[str]:
        """One partition per Kafka partition, named ``"{index}-{topic}"``, in topic order.

        Topics are asked about one by one, so that a cluster that creates topics on
        first use creates them. A topic the cluster does not know (or refuses) fails
        the run, naming it.
        """
        # The consumer the partitions will share, not an AdminClient: add_config holds
        # consumer settings, which would make an AdminClient warn; and it is connected
        # by the time the partitions are built.
        shared = self._shared_consumer()
        try:
            return [name for topic in self._topics for name in self._names(shared, topic)]
        except ConnectorError:
            shared.close()  # which also hands librdkafka's last logs to the logger
            raise

    def _names(self, shared: SharedConsumer, topic: str) -> list[str]:
        try:
            metadata = shared.consumer.list_topics(topic, timeout=METADATA_TIMEOUT)
        except KafkaException as ex:
            raise ConnectorError(
                f"could not list the partitions of Kafka topic {topic!r} from brokers "
                f"{','.join(self._brokers)}: {ex.args[0].str()}"
            ) from None
        found = metadata.topics[topic]
        if found.error is not None:
            raise ConnectorError(  # Bytewax's words
                f"error listing partitions for Kafka topic `{topic!r}`: {found.error.str()}"
            )
        return [_partition_name(topic, index) for index in sorted(found.partitions)]

    def _shared_consumer(self) -> SharedConsumer:
        """The consumer of the source in this process (a forked process makes its own)."""
        pid = os.getpid()
        if self._shared is None or self._shared.closed or self._shared_pid != pid:
            self._shared, self._shared_pid = SharedConsumer(self._consumer_config()), pid
        return self._shared

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the consumer, which is this process's (Ray ships sources)."""
        return {**self.__dict__, "_shared": None, "_shared_pid": None}

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _KafkaSourcePartition:
        """Start a consumer at the resume offset, or at ``starting_offset`` without one."""
        index_text, _, topic = for_part.partition("-")
        if topic not in self._topics:
            raise ValueError(
                f"partition {for_part!r} is of Kafka topic {topic!r}, which this source "
                f"does not read (topics {self._topics!r})"
            )
        index = int(index_text)
        shared = self._shared_consumer()
        offset = self._starting_offset if resume_state is None else resume_state
        if offset == OFFSET_END:
            offset = self._end_offset(shared.consumer, topic, index)
        return _KafkaSourcePartition(
            shared, topic, index, offset, self._batch_size, self._raise_on_errors,
            commit_to_group=self._group_id is not None,
        )

    def _end_offset(self, consumer: Consumer, topic: str, index: int) -> int:
        """The partition's current end offset, fixed now.

        So a snapshot taken before the first message still means "from here" on
        resume, not "from wherever the end is then".
        """
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, index), timeout=METADATA_TIMEOUT
            )
        except KafkaException as ex:
            raise ConnectorError(
                f"could not find the end of Kafka topic {topic!r} partition {index}: "
                f"{ex.args[0].str()}"
            ) from None
        return int(high)

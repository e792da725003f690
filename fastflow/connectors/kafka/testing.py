"""A Kafka cluster in this process, for trying flows and for tests: no broker to install.

Why a module: librdkafka (inside confluent-kafka) has a mock cluster, real brokers
speaking the Kafka protocol on local ports, but confluent-kafka reaches it only through
``test.mock.num.brokers``, whose topics are created on first use with 4 partitions: the
mock brokers answer no CreateTopics request. Its C API can create a topic with any
partition count, so :class:`MockCluster` calls that API (through ``ctypes``, on the very
librdkafka that confluent-kafka loaded).

The cluster lives in this process, as long as the :class:`MockCluster` object (or until
:meth:`MockCluster.close`); other processes reach it at :attr:`MockCluster.bootstrap`.
Not for production: it keeps everything in memory and loses it on close.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import confluent_kafka

__all__ = ["MockCluster"]

_ERRSTR_SIZE = 512


def _load_librdkafka() -> ctypes.CDLL:
    """The librdkafka confluent-kafka uses: its wheel's copy, else the system's."""
    package = Path(confluent_kafka.__file__).parent
    bundled = sorted(package.parent.glob("confluent_kafka.libs/librdkafka*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("rdkafka")
    if name is None:
        raise RuntimeError("cannot find the librdkafka library that confluent-kafka uses")
    lib = ctypes.CDLL(name)
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int
    ]
    lib.rd_kafka_err2str.restype = ctypes.c_char_p
    lib.rd_kafka_err2str.argtypes = [ctypes.c_int]
    return lib


class MockCluster:
    """librdkafka's mock Kafka cluster, with topics of any partition count.

    >>> cluster = MockCluster()
    >>> cluster.create_topic("clicks", partitions=3)
    >>> from confluent_kafka import Consumer
    >>> consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "g"})
    >>> len(consumer.list_topics("clicks", timeout=10).topics["clicks"].partitions)
    3
    >>> consumer.close(); cluster.close()

    :arg brokers: How many brokers it has (partition leaders are spread over them).
    """

    def __init__(self, brokers: int = 1) -> None:
        if brokers < 1:
            raise ValueError(f"a cluster needs at least one broker, not {brokers}")
        self._lib = _load_librdkafka()
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        conf = self._lib.rd_kafka_conf_new()
        # The handle that owns the cluster only hosts it: keep its own logs quiet.
        self._lib.rd_kafka_conf_set(conf, b"log_level", b"0", errstr, _ERRSTR_SIZE)
        handle = self._lib.rd_kafka_new(0, conf, errstr, _ERRSTR_SIZE)  # 0: a producer
        if not handle:
            raise RuntimeError(f"librdkafka could not start: {errstr.value.decode()}")
        self._handle: int | None = handle
        self._cluster: int | None = self._lib.rd_kafka_mock_cluster_new(handle, brokers)
        if not self._cluster:
            self.close()
            raise RuntimeError("librdkafka could not start a mock cluster")
        self.bootstrap: str = self._lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()
        """The brokers' ``host:port`` list, comma-separated (``bootstrap.servers``)."""

    @property
    def brokers(self) -> list[str]:
        """The brokers' ``host:port`` addresses, as ``KafkaSource``/``KafkaSink`` take them."""
        return self.bootstrap.split(",")

    def create_topic(self, topic: str, partitions: int = 1, replication_factor: int = 1) -> None:
        """Create ``topic`` with ``partitions`` partitions; an existing topic is an error."""
        if self._cluster is None:
            raise RuntimeError("the mock cluster is closed")
        err = self._lib.rd_kafka_mock_topic_create(
            self._cluster, topic.encode(), partitions, replication_factor
        )
        if err:
            reason = self._lib.rd_kafka_err2str(err).decode()
            raise ValueError(
                f"cannot create topic {topic!r} with {partitions} partitions: {reason}"
            )

    def close(self) -> None:
        """Stop the brokers (clients connected to them lose them); a second call does nothing."""
        if self._cluster is not None:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._cluster = None
        if self._handle is not None:
            self._lib.rd_kafka_destroy(self._handle)
            self._handle = None

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

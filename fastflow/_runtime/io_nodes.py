"""Input and output steps at run time: source and sink partitions."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from fastflow._cext.routing import check_keyed
from fastflow._runtime.meter import SIZE_BOUNDS, Buckets, Meter
from fastflow._runtime.nodes import Changes, Clock, End, Node, Push, call_user, user_error
from fastflow._runtime.repeats import SnapshotChanges
from fastflow.inputs import (
    AbortExecution,
    DynamicSource,
    FixedPartitionedSource,
    Source,
)
from fastflow.outputs import DynamicSink, FixedPartitionedSink, Sink


class _Part:
    """One source partition and when to poll it next."""

    __slots__ = ("key", "part", "awake")

    def __init__(self, key: str | None, part: Any) -> None:
        self.key = key  # None for a stateless partition
        self.part = part
        self.awake: datetime | None = None


class InputNode:
    """Polls this worker's partitions of a source and pushes what they return."""

    def __init__(
        self,
        step_id: str,
        source: Source[Any],
        clock: Clock,
        resume: dict[str, Any],
        down: Push,
        end: End,
    ) -> None:
        self.step_id = step_id
        self._down = down
        self._end = end
        self.meter = Meter()  # durations of ``next_batch`` calls; items out
        self.sizes = Buckets(SIZE_BOUNDS)  # items per ``next_batch`` call
        self.metered = False  # whether to time ``next_batch`` (the worker says: meter.py)
        self.parts: list[_Part] = []
        if isinstance(source, FixedPartitionedSource):
            keys = call_user(step_id, "list_parts", source.list_parts)
            mine = [k for i, k in enumerate(keys) if i % clock.worker_count == clock.worker_index]
            for key in mine:
                part = call_user(
                    step_id, "build_part", source.build_part, step_id, key, resume.get(key)
                )
                self.parts.append(_Part(key, part))
        elif isinstance(source, DynamicSource):
            part = call_user(
                step_id, "build", source.build, step_id, clock.worker_index, clock.worker_count
            )
            self.parts.append(_Part(None, part))
        else:
            raise TypeError(
                f"source of step {step_id!r} must be a FixedPartitionedSource or a "
                f"DynamicSource; got {type(source).__name__!r}"
            )
        self._done: list[_Part] = []
        self._snapshots = SnapshotChanges()
        self.idle_poll = False  # a partition returned nothing and asked for no wait
        # Snapshots handed to the store and not yet durable, oldest first (see ``confirm``).
        # Each epoch is confirmed once the next one is handed to the committer (which
        # waits for the one before), so no more than two are ever pending.
        self._unconfirmed: deque[dict[str, Any]] = deque(maxlen=2)
        self._confirms = [p for p in self.parts if hasattr(p.part, "snapshot_committed")]
        if not self.parts:
            self._end()

    @property
    def live(self) -> bool:
        """Whether any partition may still produce items."""
        return bool(self.parts)

    def poll(self, now: datetime | None) -> bool:
        """Poll every awake partition once; return whether any produced items or ended.

        ``now`` is needed only when a partition asked to be woken later; it
        is ``None`` when no partition did (see :meth:`next_wake`).
        """
        worked = False
        self.idle_poll = False
        metered = self.metered
        for entry in list(self.parts):
            if entry.awake is not None:
                now = now or datetime.now(timezone.utc)
                if entry.awake > now:
                    continue
            part, what = entry.part, "next_batch"
            try:
                if metered:
                    started = time.perf_counter()
                batch = part.next_batch()
                if type(batch) is not list:
                    batch = list(batch)
                if metered:
                    self.meter.durations.add(time.perf_counter() - started)
                    self.sizes.add(len(batch))
                what = "next_awake"
                entry.awake = part.next_awake()
            except StopIteration:  # from either: the partition has ended
                self._retire(entry)
                worked = True  # its end flushes the steps after it
                continue
            except AbortExecution:
                raise
            except Exception as ex:
                raise user_error(self.step_id, what, ex) from ex
            if batch:
                worked = True
                self._down(batch)
            elif entry.awake is None:
                self.idle_poll = True
        return worked

    def _retire(self, entry: _Part) -> None:
        self.parts.remove(entry)
        self._done.append(entry)
        if not self.parts:
            self._end()

    def next_wake(self) -> datetime | None:
        """The earliest time a partition asked to be polled at."""
        times = [p.awake for p in self.parts if p.awake is not None]
        return min(times) if times else None

    def changes(self) -> Changes:
        """The resume state of every partition whose snapshot changed, finished ones too."""
        step_id = self.step_id
        values = {
            entry.key: call_user(step_id, "snapshot", entry.part.snapshot)
            for entry in self.parts + self._done
            if entry.key is not None
        }
        if self._confirms:
            self._unconfirmed.append(values)
        return self._snapshots(values)

    def confirm(self) -> None:
        """The oldest snapshot handed out by :meth:`changes` is durable: tell the partitions.

        A partition with a ``snapshot_committed(state)`` method (optional; e.g. the Kafka
        source, to commit offsets to a consumer group) gets the state of that snapshot.
        """
        if not self._unconfirmed:
            return
        values = self._unconfirmed.popleft()
        step_id = self.step_id
        for entry in self._confirms:
            if entry.key in values:
                call_user(step_id, "snapshot_committed", entry.part.snapshot_committed,
                          values[entry.key])

    def close(self) -> None:
        """Close every partition."""
        for entry in self.parts + self._done:
            call_user(self.step_id, "close", entry.part.close)


def output_node(
    step_id: str, sink: Sink[Any], clock: Clock, resume: dict[str, Any], end: End
) -> OutputNode:
    """The node writing to ``sink`` on this worker: by kind of sink, and worker count."""
    if isinstance(sink, FixedPartitionedSink):
        if clock.worker_count == 1:
            return SelfRoutingOutputNode(step_id, sink, clock, resume, end)
        return RoutedOutputNode(step_id, sink, clock, resume, end)
    if isinstance(sink, DynamicSink):
        return DynamicOutputNode(step_id, sink, clock, end)
    raise TypeError(
        f"sink of step {step_id!r} must be a FixedPartitionedSink or a DynamicSink; "
        f"got {type(sink).__name__!r}"
    )


class OutputNode(Node):
    """Base of the output nodes: the sink partitions this worker has built."""

    def __init__(self, step_id: str, end: End) -> None:
        super().__init__(step_id, 1, end)
        self._parts: dict[str, Any] = {}

    def changes(self) -> Changes:
        """The resume state of every stateful sink partition built so far."""
        raise NotImplementedError

    def close(self) -> None:
        """Close every partition."""
        for part in self._parts.values():
            call_user(self.step_id, "close", part.close)


class DynamicOutputNode(OutputNode):
    """A ``DynamicSink``: one stateless partition per worker, written as batches come."""

    def __init__(self, step_id: str, sink: DynamicSink[Any], clock: Clock, end: End) -> None:
        super().__init__(step_id, end)
        part = call_user(
            step_id, "build", sink.build, step_id, clock.worker_index, clock.worker_count
        )
        self._parts[""] = part
        self._write = part.write_batch

    def push(self, batch: list[Any]) -> None:
        try:
            self._write(batch)
        except Exception as ex:
            raise user_error(self.step_id, "write_batch", ex) from ex

    def changes(self) -> Changes:
        """Nothing: a dynamic sink's partitions have no resume state."""
        return {}, {}


class PartitionedOutputNode(OutputNode):
    """What the two nodes of a ``FixedPartitionedSink`` share: its partitions, built on use.

    Each ``(key, value)`` goes to partition ``part_fn(key) % len(parts)``, whose
    owner is worker ``index % worker_count``. Who routes depends on the worker
    count: :class:`SelfRoutingOutputNode` and :class:`RoutedOutputNode`.
    """

    def __init__(
        self, step_id: str, sink: FixedPartitionedSink[Any, Any], clock: Clock,
        resume: dict[str, Any], end: End,
    ) -> None:
        super().__init__(step_id, end)
        self._sink = sink
        self._resume = resume
        self._keys: list[str] = call_user(step_id, "list_parts", sink.list_parts)
        self._snapshots = SnapshotChanges()
        # A partition with a snapshot is built right away, so it can undo what it
        # wrote after that snapshot even if no new item is routed to it.
        count = clock.worker_count
        for index, key in enumerate(self._keys):
            if key in resume and index % count == clock.worker_index:
                self._part(key)

    def _route(self, batch: list[Any]) -> dict[int, list[Any]]:
        """Group the values of ``(key, value)`` items by partition index (``part_fn``)."""
        check_keyed(batch, self.step_id)
        part_fn, count = self._sink.part_fn, len(self._keys)
        routed: dict[int, list[Any]] = {}
        try:
            for key, value in batch:
                routed.setdefault(part_fn(key) % count, []).append(value)
        except Exception as ex:
            raise user_error(self.step_id, "part_fn", ex) from ex
        return routed

    def _write_parts(self, routed: Iterable[tuple[int, list[Any]]]) -> None:
        keys, step_id = self._keys, self.step_id
        for index, values in routed:
            call_user(step_id, "write_batch", self._part(keys[index]).write_batch, values)

    def _part(self, key: str) -> Any:
        """The partition ``key``, built on first use."""
        part = self._parts.get(key)
        if part is None:
            part = call_user(
                self.step_id, "build_part", self._sink.build_part, self.step_id, key,
                self._resume.get(key),
            )
            self._parts[key] = part
        return part

    def changes(self) -> Changes:
        step_id = self.step_id
        values = {key: call_user(step_id, "snapshot", p.snapshot) for key, p in self._parts.items()}
        return self._snapshots(values)


class SelfRoutingOutputNode(PartitionedOutputNode):
    """One worker: each batch is routed to the partitions here (no exchange)."""

    def push(self, batch: list[Any]) -> None:
        self._write_parts(self._route(batch).items())


class RoutedOutputNode(PartitionedOutputNode):
    """Several workers: the exchange has routed each value to its partition's owner.

    Every worker's producers emit into an exchange that splits batches with
    :meth:`split_by_owner`, so this node receives ``(partition index, values)``.
    """

    def __init__(
        self, step_id: str, sink: FixedPartitionedSink[Any, Any], clock: Clock,
        resume: dict[str, Any], end: End,
    ) -> None:
        super().__init__(step_id, sink, clock, resume, end)
        self._worker_count = clock.worker_count

    def split_by_owner(self, batch: list[Any]) -> list[list[tuple[int, list[Any]]]]:
        """The exchange's split: ``(partition index, values)`` groups for each worker."""
        count = self._worker_count
        owned: list[list[tuple[int, list[Any]]]] = [[] for _ in range(count)]
        for index, values in self._route(batch).items():
            owned[index % count].append((index, values))
        return owned

    def push(self, batch: list[Any]) -> None:
        """Write ``batch``: the ``(partition index, values)`` groups of this worker."""
        merged: dict[int, list[Any]] = {}
        for index, values in batch:
            merged.setdefault(index, []).extend(values)
        # A metered ``push`` counted the groups as items: count the values instead.
        self.meter.items_in += sum(map(len, merged.values())) - len(batch)
        self._write_parts(merged.items())

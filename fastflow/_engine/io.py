"""Input and output steps at run time: source and sink partitions."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Tuple

from fastflow._cext.routing import check_keyed
from fastflow._engine.nodes import Clock, End, Node, Push, user_error
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

    def __init__(self, key: Optional[str], part: Any) -> None:
        self.key = key  # None for a stateless partition
        self.part = part
        self.awake: Optional[datetime] = None


class InputNode:
    """Polls this worker's partitions of a source and pushes what they return."""

    def __init__(
        self,
        step_id: str,
        source: Source[Any],
        clock: Clock,
        resume: Dict[str, Any],
        down: Push,
        end: End,
    ) -> None:
        self.step_id = step_id
        self._down = down
        self._end = end
        self.parts: List[_Part] = []
        if isinstance(source, FixedPartitionedSource):
            keys = self._call("list_parts", source.list_parts)
            mine = [k for i, k in enumerate(keys) if i % clock.worker_count == clock.worker_index]
            for key in mine:
                part = self._call(
                    "build_part", source.build_part, step_id, key, resume.get(key)
                )
                self.parts.append(_Part(key, part))
        elif isinstance(source, DynamicSource):
            part = self._call(
                "build", source.build, step_id, clock.worker_index, clock.worker_count
            )
            self.parts.append(_Part(None, part))
        else:
            raise TypeError(
                f"source of step {step_id!r} must be a FixedPartitionedSource or a "
                f"DynamicSource; got {type(source).__name__!r}"
            )
        self._done: List[_Part] = []
        self.idle_poll = False  # a partition returned nothing and asked for no wait
        if not self.parts:
            self._end()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (AbortExecution, StopIteration):
            raise
        except Exception as ex:
            raise user_error(self.step_id, what, ex) from ex

    @property
    def live(self) -> bool:
        """Whether any partition may still produce items."""
        return bool(self.parts)

    def poll(self, now: Optional[datetime]) -> bool:
        """Poll every awake partition once; return whether any produced items.

        ``now`` is needed only when a partition asked to be woken later; it
        is ``None`` when no partition did (see :meth:`next_wake`).
        """
        worked = False
        self.idle_poll = False
        for entry in list(self.parts):
            if entry.awake is not None:
                now = now or datetime.now(timezone.utc)
                if entry.awake > now:
                    continue
            try:
                batch = self._call("next_batch", entry.part.next_batch)
                if type(batch) is not list:
                    batch = self._call("next_batch", list, batch)
                entry.awake = self._call("next_awake", entry.part.next_awake)
            except StopIteration:
                self._retire(entry)
                continue
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

    def next_wake(self) -> Optional[datetime]:
        """The earliest time a partition asked to be polled at."""
        times = [p.awake for p in self.parts if p.awake is not None]
        return min(times) if times else None

    def changes(self) -> Tuple[Dict[str, Any], Dict[str, bool]]:
        """Every partition's resume state, finished ones included (see ``StatefulNode``)."""
        values = {
            entry.key: self._call("snapshot", entry.part.snapshot)
            for entry in self.parts + self._done
            if entry.key is not None
        }
        return values, dict.fromkeys(values, True)

    def close(self) -> None:
        """Close every partition."""
        for entry in self.parts + self._done:
            self._call("close", entry.part.close)


class OutputNode(Node):
    """Writes batches to this worker's sink partitions."""

    def __init__(
        self, step_id: str, sink: Sink[Any], clock: Clock, resume: Dict[str, Any], end: End
    ) -> None:
        super().__init__(step_id, 1, end)
        self._sink = sink
        self._resume = resume
        self._parts: Dict[str, Any] = {}
        if isinstance(sink, FixedPartitionedSink):
            keys = self._call("list_parts", sink.list_parts)
            self._keys: List[str] = keys
            self._worker_count = count = clock.worker_count
            # With several workers, the exchange into this step has already routed
            # the items (split_by_owner): this worker gets its own partitions' values.
            self.push = (  # type: ignore[method-assign]
                self._push_partitioned if count == 1 else self._push_routed
            )
            # A partition with a snapshot is built right away, so it can undo what it
            # wrote after that snapshot even if no new item is routed to it.
            for index, key in enumerate(keys):
                if key in resume and index % count == clock.worker_index:
                    self._part(key)
        elif isinstance(sink, DynamicSink):
            part = self._call("build", sink.build, step_id, clock.worker_index, clock.worker_count)
            self._parts[""] = part
            self._write = part.write_batch
            self.push = self._push_dynamic  # type: ignore[method-assign]
        else:
            raise TypeError(
                f"sink of step {step_id!r} must be a FixedPartitionedSink or a DynamicSink; "
                f"got {type(sink).__name__!r}"
            )

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as ex:
            raise user_error(self.step_id, what, ex) from ex

    def _push_dynamic(self, batch: List[Any]) -> None:
        try:
            self._write(batch)
        except Exception as ex:
            raise user_error(self.step_id, "write_batch", ex) from ex

    def _route(self, batch: List[Any]) -> Dict[int, List[Any]]:
        """Group the values of ``(key, value)`` items by partition index (``part_fn``)."""
        check_keyed(batch, self.step_id)
        part_fn = self._sink.part_fn  # type: ignore[attr-defined]
        count = len(self._keys)
        routed: Dict[int, List[Any]] = {}
        for key, value in batch:
            index = self._call("part_fn", part_fn, key) % count
            routed.setdefault(index, []).append(value)
        return routed

    def _push_partitioned(self, batch: List[Any]) -> None:
        self._write_parts(self._route(batch).items())

    def split_by_owner(self, batch: List[Any]) -> List[List[Tuple[int, List[Any]]]]:
        """Exchange split (several workers): ``(partition index, values)`` groups.

        Each group goes to the worker owning that partition (``index % worker_count``).
        """
        count = self._worker_count
        owned: List[List[Tuple[int, List[Any]]]] = [[] for _ in range(count)]
        for index, values in self._route(batch).items():
            owned[index % count].append((index, values))
        return owned

    def _push_routed(self, batch: List[Tuple[int, List[Any]]]) -> None:
        merged: Dict[int, List[Any]] = {}
        for index, values in batch:
            merged.setdefault(index, []).extend(values)
        self._write_parts(merged.items())

    def _write_parts(self, routed: Iterable[Tuple[int, List[Any]]]) -> None:
        keys = self._keys
        for index, values in routed:
            self._call("write_batch", self._part(keys[index]).write_batch, values)

    def _part(self, key: str) -> Any:
        """The partition ``key`` of a partitioned sink, built on first use."""
        part = self._parts.get(key)
        if part is None:
            sink: FixedPartitionedSink[Any, Any] = self._sink  # type: ignore[assignment]
            part = self._call(
                "build_part", sink.build_part, self.step_id, key, self._resume.get(key)
            )
            self._parts[key] = part
        return part

    def changes(self) -> Tuple[Dict[str, Any], Dict[str, bool]]:
        """The resume state of every partitioned sink's partition built so far."""
        if not isinstance(self._sink, FixedPartitionedSink):
            return {}, {}
        values = {key: self._call("snapshot", p.snapshot) for key, p in self._parts.items()}
        return values, dict.fromkeys(values, True)

    def close(self) -> None:
        """Close every partition."""
        for part in self._parts.values():
            self._call("close", part.close)


"""One key's windows: the logic ``window`` runs per key, and the window logic it runs per window."""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from fastflow.operators._logic import StatefulBatchLogic
from fastflow.operators._time import UTC_MIN
from fastflow.operators.windowing._clocks import Clock
from fastflow.operators.windowing._windowers import Windower

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")


class WindowLogic(ABC, Generic[V, W, S]):
    """What one window of one key does with its values (see :func:`window`).

    Every method returns the values to emit; they come out of ``down`` as
    ``(key, (window_id, value))``.
    """

    @abstractmethod
    def on_value(self, value: V) -> Iterable[W]:
        """Take a value of this window (in timestamp order when the operator is ``ordered``)."""

    @abstractmethod
    def on_merge(self, original: Any) -> Iterable[W]:
        """Absorb the state of ``original``, a window merged into this one and then dropped."""

    @abstractmethod
    def on_close(self) -> Iterable[W]:
        """The window has closed; this logic is dropped afterwards."""

    @abstractmethod
    def snapshot(self) -> S:
        """Return the state the operator's ``builder`` gets back on resume."""



class KeyWindowsState(NamedTuple):
    """All of one key's windowing state; stored as a dict (see docs/snapshot-format.md)."""

    clock: Any
    """What the clock's ``snapshot()`` returned."""
    windower: Any
    """What the windower's ``snapshot()`` returned."""
    windows: list[tuple[int, Any]]
    """``(window_id, what the window logic's snapshot() returned)`` per open window."""
    queue: list[tuple[Any, datetime]]
    """``(value, timestamp)`` of the values waiting for the watermark, in timestamp order."""

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> KeyWindowsState:
        """Read the stored layout."""
        return cls(
            snapshot["clock"],
            snapshot["windower"],
            [(window_id, held) for window_id, held in snapshot["windows"]],
            [(value, timestamp) for value, timestamp in snapshot["queue"]],
        )

    def to_snapshot(self) -> dict[str, Any]:
        """The stored layout: a dict of plain lists."""
        return {
            "clock": self.clock,
            "windower": self.windower,
            "windows": [[window_id, held] for window_id, held in self.windows],
            "queue": [[value, timestamp] for value, timestamp in self.queue],
        }


# What a key's logic emits: ``(window_id, kind, payload)``, split into the
# three output streams afterwards.
DOWN, LATE, META = 0, 1, 2
Event = tuple[int, int, Any]
WindowBuilder = Callable[[S | None], WindowLogic[V, W, S]]


def _timestamp(entry: tuple[Any, datetime]) -> datetime:
    return entry[1]


class KeyWindows(StatefulBatchLogic[V, Event, dict[str, Any]]):
    """One key's clock, windower, open windows and (when ordered) values waiting for the watermark.

    An on-time value waits in the queue until the watermark reaches its
    timestamp, so that windows get values in timestamp order; unordered, the
    queue only holds the values of the batch being handled. Late values are
    reported right away.
    """

    def __init__(
        self,
        clock: Clock[V, Any],
        windower: Windower[Any],
        builder: WindowBuilder[Any, V, W],
        ordered: bool,
        resume: dict[str, Any] | None,
    ) -> None:
        state = (
            KeyWindowsState(None, None, [], [])
            if resume is None
            else KeyWindowsState.from_snapshot(resume)
        )
        self._builder = builder
        self._ordered = ordered
        self._clock = clock.build(state.clock)
        self._windower = windower.build(state.windower)
        self._windows = {window_id: builder(held) for window_id, held in state.windows}
        self._queue: list[tuple[V, datetime]] = state.queue

    def on_batch(self, values: list[V]) -> tuple[list[Event], bool]:
        events: list[Event] = []
        self._clock.before_batch()
        watermark = UTC_MIN
        for value in values:
            timestamp, watermark = self._clock.on_item(value)
            if timestamp < watermark:
                events.extend((i, LATE, value) for i in self._windower.late_for(timestamp))
            elif self._ordered:
                insort(self._queue, (value, timestamp), key=_timestamp)
            else:
                self._queue.append((value, timestamp))
        return self._advance(watermark, events)

    def on_notify(self) -> tuple[list[Event], bool]:
        return self._advance(self._clock.on_notify(), [])

    def on_eof(self) -> tuple[list[Event], bool]:
        return self._advance(self._clock.on_eof(), [])

    def _due(self, watermark: datetime) -> list[tuple[V, datetime]]:
        """Take the queued values the windows can have now."""
        cut = bisect_right(self._queue, watermark, key=_timestamp) if self._ordered else None
        due = self._queue[:cut]
        del self._queue[:cut]
        return due

    def _advance(self, watermark: datetime, events: list[Event]) -> tuple[list[Event], bool]:
        """Hand due values to their windows, then merge and close windows; emit what they say."""
        windows, windower, emit = self._windows, self._windower, events.append
        for value, timestamp in self._due(watermark):
            for window_id in windower.open_for(timestamp):
                logic = windows.get(window_id)
                if logic is None:
                    logic = windows[window_id] = self._builder(None)
                for out in logic.on_value(value):
                    emit((window_id, DOWN, out))
        for original, target in windower.merged():
            absorbed = windows.pop(original)
            for out in windows[target].on_merge(absorbed):
                emit((target, DOWN, out))
        for window_id, meta in windower.close_for(watermark):
            for out in windows.pop(window_id).on_close():
                emit((window_id, DOWN, out))
            emit((window_id, META, meta))
        return events, not self._queue and windower.is_empty()

    def notify_at(self) -> datetime | None:
        at = self._windower.notify_at()
        if self._queue:
            first = self._queue[0][1]
            at = first if at is None else min(at, first)
        return None if at is None else self._clock.to_system_utc(at)

    def snapshot(self) -> dict[str, Any]:
        return KeyWindowsState(
            self._clock.snapshot(),
            self._windower.snapshot(),
            [(window_id, logic.snapshot()) for window_id, logic in self._windows.items()],
            self._queue,
        ).to_snapshot()


def unwrap(kind: int) -> Callable[[Event], tuple[int, Any] | None]:
    def unwrap(event: Event) -> tuple[int, Any] | None:
        window_id, event_kind, payload = event
        return (window_id, payload) if event_kind == kind else None

    return unwrap



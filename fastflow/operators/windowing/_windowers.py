"""Windowers: which windows a timestamp falls in, and which windows a watermark closes.

The classes' examples run in (and are listed by) :mod:`fastflow.operators.windowing`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from fastflow.operators._time import MICROSECOND, UTC_MAX, ZERO_TD, after, shift

S = TypeVar("S")

LATE_SESSION_ID = -1
"""The window id of late values in session windows (the session they missed is unknown)."""


@dataclass
class WindowMetadata:
    """A window's bounds, and the ids of the windows merged into it.

    For sliding and tumbling windows ``close_time`` is exclusive; for sessions
    it is the timestamp of the session's last value (inclusive).
    """

    open_time: datetime
    close_time: datetime
    merged_ids: set[int] = field(default_factory=set)

class WindowerLogic(ABC, Generic[S]):
    """One key's windows: which are open, which a timestamp belongs to, which have closed."""

    @abstractmethod
    def open_for(self, timestamp: datetime) -> Iterable[int]:
        """Open (if needed) and return the ids of the windows an on-time value belongs to."""

    @abstractmethod
    def late_for(self, timestamp: datetime) -> Iterable[int]:
        """Return the ids of the windows a late value would have belonged to; changes nothing."""

    @abstractmethod
    def merged(self) -> Iterable[tuple[int, int]]:
        """Return, once, the ``(original_id, target_id)`` merges since the last call."""

    @abstractmethod
    def close_for(self, watermark: datetime) -> Iterable[tuple[int, WindowMetadata]]:
        """Close and return the windows the watermark has passed, with their metadata."""

    @abstractmethod
    def notify_at(self) -> datetime | None:
        """The timestamp at which the next window could close, if any is open."""

    @abstractmethod
    def is_empty(self) -> bool:
        """Whether there is no state worth keeping (the key is then forgotten)."""

    @abstractmethod
    def snapshot(self) -> S:
        """Return the state to resume from (a value that no later call mutates)."""


class Windower(ABC, Generic[S]):
    """Configuration of a kind of window; builds a :class:`WindowerLogic` for each key."""

    @abstractmethod
    def build(self, resume_state: S | None) -> WindowerLogic[S]:
        """Build a key's windower from its snapshot, or afresh when ``resume_state`` is ``None``."""



class SlidingWindowerState(NamedTuple):
    """A key's sliding (or tumbling) windows; stored as the list of open window ids."""

    opened: list[int]
    """The ids of the open windows, oldest first."""

    @classmethod
    def from_snapshot(cls, snapshot: Sequence[int]) -> SlidingWindowerState:
        """Read the stored layout (runs before this order stored the ids sorted)."""
        return cls(list(snapshot))

    def to_snapshot(self) -> list[int]:
        """The stored layout."""
        return list(self.opened)


class SessionWindowerState(NamedTuple):
    """A key's sessions; stored as ``{"last_id", "sessions", "merges"}`` (see the docs)."""

    last_id: int
    """The last session id given out (ids are never reused)."""
    sessions: dict[int, WindowMetadata]
    """The open sessions by id, in creation order."""
    merges: list[tuple[int, int]]
    """``(original_id, target_id)`` merges not yet handed to the window logics."""

    @classmethod
    def from_snapshot(cls, snapshot: dict[str, Any]) -> SessionWindowerState:
        """Read the stored layout."""
        return cls(
            snapshot["last_id"],
            {
                session_id: WindowMetadata(open_time, close_time, set(merged_ids))
                for session_id, open_time, close_time, merged_ids in snapshot["sessions"]
            },
            [(original, target) for original, target in snapshot["merges"]],
        )

    def to_snapshot(self) -> dict[str, Any]:
        """The stored layout: plain lists, merged ids sorted."""
        return {
            "last_id": self.last_id,
            "sessions": [
                [session_id, meta.open_time, meta.close_time, sorted(meta.merged_ids)]
                for session_id, meta in self.sessions.items()
            ],
            "merges": [list(pair) for pair in self.merges],
        }


class _SlidingWindowerLogic(WindowerLogic[list[int]]):
    """Window ``i`` spans ``[align_to + i * offset, ... + length)``; state: ids, oldest first."""

    def __init__(
        self, length: timedelta, offset: timedelta, align_to: datetime, opened: list[int] | None
    ) -> None:
        # In microseconds: ints never overflow, and bounds saturate at the ends of time.
        self._length = length // MICROSECOND
        self._offset = offset // MICROSECOND
        self._align_to = align_to
        ids = () if opened is None else SlidingWindowerState.from_snapshot(opened).opened
        self._opened = {window_id: self._metadata(window_id) for window_id in ids}

    def _metadata(self, window_id: int) -> WindowMetadata:
        start = self._offset * window_id
        return WindowMetadata(
            after(self._align_to, start), after(self._align_to, start + self._length)
        )

    def _ids_for(self, timestamp: datetime) -> list[int]:
        since = (timestamp - self._align_to) // MICROSECOND
        first = (since - self._length) // self._offset + 1
        return list(range(first, since // self._offset + 1))

    def open_for(self, timestamp: datetime) -> list[int]:
        ids = self._ids_for(timestamp)
        for window_id in ids:
            if window_id not in self._opened:
                self._opened[window_id] = self._metadata(window_id)
        return ids

    def late_for(self, timestamp: datetime) -> list[int]:
        return self._ids_for(timestamp)

    def merged(self) -> Iterable[tuple[int, int]]:
        return ()

    def close_for(self, watermark: datetime) -> list[tuple[int, WindowMetadata]]:
        # In opening order, as Bytewax closes them (not always by id, when unordered).
        ids = [i for i, meta in self._opened.items() if meta.close_time <= watermark]
        return [(window_id, self._opened.pop(window_id)) for window_id in ids]

    def notify_at(self) -> datetime | None:
        return min((meta.close_time for meta in self._opened.values()), default=None)

    def is_empty(self) -> bool:
        return not self._opened

    def snapshot(self) -> list[int]:
        return SlidingWindowerState(list(self._opened)).to_snapshot()


@dataclass
class SlidingWindower(Windower[list[int]]):
    """Windows of ``length``, one starting every ``offset`` (at most ``length``), from ``align_to``.

    Windows overlap when ``offset < length``, so a value can be in several;
    a window includes its open time and excludes its close time. Window ``0``
    opens at ``align_to``, window ``n`` ``n * offset`` later (``n`` may be
    negative). Changing these parameters between runs garbles the windows
    open at the time of the snapshot.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
    >>> every_five = SlidingWindower(timedelta(minutes=10), timedelta(minutes=5), noon)
    >>> flow = Dataflow("sliding_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 3), ("a", 7)]))
    >>> _ = op.inspect("show", collect_window("collect", s, clock, every_five).down)
    >>> run_main(flow)
    sliding_eg.show: ('a', (-1, [3]))
    sliding_eg.show: ('a', (0, [3, 7]))
    sliding_eg.show: ('a', (1, [7]))
    """

    length: timedelta
    offset: timedelta
    align_to: datetime

    def __post_init__(self) -> None:
        if self.offset <= ZERO_TD:
            raise ValueError(f"sliding window `offset` must be positive; got {self.offset}")
        if self.offset > self.length:
            raise ValueError(
                "sliding window `offset` can't be longer than `length`; "
                "there would be undefined gaps between windows"
            )

    def build(self, resume_state: list[int] | None) -> WindowerLogic[list[int]]:
        """Build a key's windower; its state is the list of open window ids."""
        return _SlidingWindowerLogic(self.length, self.offset, self.align_to, resume_state)


@dataclass
class TumblingWindower(Windower[list[int]]):
    """Back-to-back windows of ``length`` from ``align_to``: every value is in exactly one.

    A window includes its open time and excludes its close time; window ``n``
    opens ``n * length`` after ``align_to``.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("tumbling_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 3), ("a", 10)]))
    >>> _ = op.inspect("show", collect_window("collect", s, clock, ten_minutes).down)
    >>> run_main(flow)
    tumbling_eg.show: ('a', (0, [3]))
    tumbling_eg.show: ('a', (1, [10]))
    """

    length: timedelta
    align_to: datetime

    def __post_init__(self) -> None:
        if self.length <= ZERO_TD:
            raise ValueError(f"tumbling window `length` must be positive; got {self.length}")

    def build(self, resume_state: list[int] | None) -> WindowerLogic[list[int]]:
        """Build a key's windower; its state is the list of open window ids."""
        return _SlidingWindowerLogic(self.length, self.length, self.align_to, resume_state)


class _SessionWindowerLogic(WindowerLogic[dict[str, Any]]):
    """Sessions in creation order; ids count up from 0 and are never reused."""

    def __init__(self, gap: timedelta, state: dict[str, Any] | None) -> None:
        self._gap = gap
        restored = (
            SessionWindowerState(LATE_SESSION_ID, {}, [])
            if state is None
            else SessionWindowerState.from_snapshot(state)
        )
        self._last_id, self._sessions, self._merges = restored

    def open_for(self, timestamp: datetime) -> tuple[int]:
        gap = self._gap
        joined = next(
            (
                (session_id, meta)
                for session_id, meta in self._sessions.items()
                # Differences of datetimes never overflow; sums with ``gap`` could.
                if meta.open_time - timestamp <= gap and timestamp - meta.close_time <= gap
            ),
            None,
        )
        if joined is None:
            self._last_id += 1
            session_id = self._last_id
            self._sessions[session_id] = WindowMetadata(timestamp, timestamp)
        else:
            session_id, meta = joined
            meta.open_time = min(meta.open_time, timestamp)
            meta.close_time = max(meta.close_time, timestamp)
        self._merge_close_sessions()
        return (session_id,)

    def _merge_close_sessions(self) -> None:
        """Merge every session that now starts within ``gap`` of the one before it."""
        by_start = sorted(self._sessions.items(), key=lambda item: item[1].open_time)
        target_id, target = by_start[0]
        for session_id, meta in by_start[1:]:
            if meta.open_time - target.close_time <= self._gap:
                target.close_time = max(target.close_time, meta.close_time)
                target.merged_ids.add(session_id)
                del self._sessions[session_id]
                self._merges.append((session_id, target_id))
            else:
                target_id, target = session_id, meta

    def late_for(self, timestamp: datetime) -> tuple[int]:
        return (LATE_SESSION_ID,)

    def merged(self) -> list[tuple[int, int]]:
        merges, self._merges = self._merges, []
        return merges

    def close_for(self, watermark: datetime) -> list[tuple[int, WindowMetadata]]:
        # The end of time closes every session, even one whose gap reaches past it.
        ids = [
            i
            for i, meta in self._sessions.items()
            if watermark - meta.close_time > self._gap or watermark == UTC_MAX
        ]
        return [(session_id, self._sessions.pop(session_id)) for session_id in ids]

    def notify_at(self) -> datetime | None:
        if not self._sessions:
            return None
        return shift(min(meta.close_time for meta in self._sessions.values()), self._gap)

    def is_empty(self) -> bool:
        # The id counter must survive, so that ids are never reused.
        return False

    def snapshot(self) -> dict[str, Any]:
        return SessionWindowerState(self._last_id, self._sessions, self._merges).to_snapshot()


@dataclass
class SessionWindower(Windower[dict[str, Any]]):
    """Sessions: a window lasts while values keep coming less than ``gap`` apart.

    A value within ``gap`` of a session joins it; a value that bridges two
    sessions merges the later-starting one into the earlier (``merged_ids``
    of the survivor records it). A session closes once the watermark is more
    than ``gap`` past its last value. Late values get the window id
    :data:`LATE_SESSION_ID`.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
    >>> flow = Dataflow("session_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 3), ("a", 9)]))
    >>> out = collect_window("collect", s, clock, SessionWindower(gap=timedelta(minutes=5)))
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    session_eg.show: ('a', (0, [1, 3]))
    session_eg.show: ('a', (1, [9]))
    """

    gap: timedelta

    def __post_init__(self) -> None:
        if self.gap < ZERO_TD:
            raise ValueError("session window `gap` must not be negative")

    def build(self, resume_state: dict[str, Any] | None) -> WindowerLogic[dict[str, Any]]:
        """Build a key's windower; its state holds the sessions and the last id given out."""
        return _SessionWindowerLogic(self.gap, resume_state)



"""Windowing: gather each key's values into windows of time, and act when a window closes.

A windowing operator is made of three parts:

* a **clock** (:class:`EventClock` or :class:`SystemClock`) gives every value a
  timestamp and keeps the key's *watermark*: the time before which no more
  values are expected. A value older than the watermark is *late*;
* a **windower** (:class:`TumblingWindower`, :class:`SlidingWindower` or
  :class:`SessionWindower`) says which windows a timestamp falls in, and which
  windows the watermark has closed;
* what to do with the values of a window: :func:`fold_window`,
  :func:`collect_window`, :func:`join_window` and friends, or any
  :class:`WindowLogic` with the general :func:`window` operator.

Every operator returns a :class:`WindowOut` of three keyed streams: ``down``
carries ``(key, (window_id, result))``, ``late`` carries ``(key, (window_id,
value))`` for every late value (``window_id`` is the window it would have been
in), and ``meta`` carries ``(key, (window_id, WindowMetadata))`` once per
closed window. At end of input every open window closes.

Each key has its own clock, windower and windows, and all three are part of
the key's snapshot: a resumed flow continues its open windows with the
watermark it had.

In the examples, the values are the minutes after noon at which they happened:

>>> from datetime import datetime, timedelta, timezone
>>> from fastflow.operators.windowing import EventClock, TumblingWindower, collect_window
>>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
>>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
>>> ten_minutes = TumblingWindower(length=timedelta(minutes=10), align_to=noon)
>>> flow = Dataflow("windowing_eg")
>>> s = op.input("inp", flow, TestingSource([("a", 1), ("b", 4), ("a", 12), ("a", 3)]))
>>> out = collect_window("collect", s, clock, ten_minutes)
>>> _ = op.inspect("down", out.down)
>>> _ = op.inspect("late", out.late)
>>> run_main(flow)
windowing_eg.down: ('a', (0, [1]))
windowing_eg.late: ('a', (0, 3))
windowing_eg.down: ('a', (1, [12]))
windowing_eg.down: ('b', (0, [4]))
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_right, insort
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Iterable,
    List,
    Optional,
    Set,
    Tuple,
    Type,
    TypeVar,
)

from fastflow.dataflow import KeyedStream, Stream, operator
from fastflow.operators import (
    JoinEmitMode,
    JoinInsertMode,
    StatefulBatchLogic,
    filter_map_value,
    key_on,
    stateful_batch,
)
from fastflow.operators._join import JoinState, check_join, tag_and_merge
from fastflow.operators._util import add, identity, utc_now, zero

__all__ = [
    "LATE_SESSION_ID",
    "UTC_MAX",
    "UTC_MIN",
    "ZERO_TD",
    "Clock",
    "ClockLogic",
    "EventClock",
    "SessionWindower",
    "SlidingWindower",
    "SystemClock",
    "TumblingWindower",
    "WindowLogic",
    "WindowMetadata",
    "WindowOut",
    "Windower",
    "WindowerLogic",
    "collect_window",
    "count_window",
    "fold_window",
    "join_window",
    "max_window",
    "min_window",
    "reduce_window",
    "window",
]

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")
X = TypeVar("X")

UTC_MIN = datetime.min.replace(tzinfo=timezone.utc)
"""The earliest UTC time: the watermark of a clock that has seen nothing yet."""

UTC_MAX = datetime.max.replace(tzinfo=timezone.utc)
"""The latest UTC time: the watermark at end of input, which closes every window."""

ZERO_TD = timedelta(0)
"""A zero duration."""

LATE_SESSION_ID = -1
"""The window id of late values in session windows (the session they missed is unknown)."""


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturating at :data:`UTC_MIN` / :data:`UTC_MAX`."""
    try:
        return moment + delta
    except OverflowError:
        return UTC_MAX if delta > ZERO_TD else UTC_MIN


def _shift_back(moment: datetime, delta: timedelta) -> datetime:
    """``moment - delta``, saturating (``-timedelta.max`` itself would overflow)."""
    try:
        return moment - delta
    except OverflowError:
        return UTC_MIN if delta > ZERO_TD else UTC_MAX


_MICROSECOND = timedelta(microseconds=1)


def _after(origin: datetime, micros: int) -> datetime:
    """``micros`` microseconds after ``origin`` (any int), saturating."""
    try:
        return origin + timedelta(microseconds=micros)
    except OverflowError:
        return UTC_MAX if micros > 0 else UTC_MIN


@dataclass
class WindowMetadata:
    """A window's bounds, and the ids of the windows merged into it.

    For sliding and tumbling windows ``close_time`` is exclusive; for sessions
    it is the timestamp of the session's last value (inclusive).
    """

    open_time: datetime
    close_time: datetime
    merged_ids: Set[int] = field(default_factory=set)


@dataclass(frozen=True)
class WindowOut(Generic[V, W]):
    """The streams of a windowing operator: results, late values and window metadata."""

    down: KeyedStream[Tuple[int, W]]
    late: KeyedStream[Tuple[int, V]]
    meta: KeyedStream[Tuple[int, WindowMetadata]]


# The extension points: a clock, a windower and a window logic, each a pair of
# a configuration class (what the user passes) and the per-key logic it builds.


class ClockLogic(ABC, Generic[V, S]):
    """One key's sense of time: timestamps for its values, and its watermark."""

    @abstractmethod
    def before_batch(self) -> None:
        """Called before the :meth:`on_item` calls of one batch (e.g. to read the time once)."""

    @abstractmethod
    def on_item(self, value: V) -> Tuple[datetime, datetime]:
        """Return ``(timestamp of value, watermark after it)``."""

    @abstractmethod
    def on_notify(self) -> datetime:
        """Return the watermark when woken up without a value."""

    @abstractmethod
    def on_eof(self) -> datetime:
        """Return the watermark at end of input; must not change the snapshotted state."""

    @abstractmethod
    def to_system_utc(self, timestamp: datetime) -> Optional[datetime]:
        """The system time (UTC) to wake up at for ``timestamp``; ``None``: do not wake."""

    @abstractmethod
    def snapshot(self) -> S:
        """Return the state to resume from (a value that no later call mutates)."""


class Clock(ABC, Generic[V, S]):
    """Configuration of a clock; builds a :class:`ClockLogic` for each key."""

    @abstractmethod
    def build(self, resume_state: Optional[S]) -> ClockLogic[V, S]:
        """Build a key's clock from its snapshot, or afresh when ``resume_state`` is ``None``."""


class WindowerLogic(ABC, Generic[S]):
    """One key's windows: which are open, which a timestamp belongs to, which have closed."""

    @abstractmethod
    def open_for(self, timestamp: datetime) -> Iterable[int]:
        """Open (if needed) and return the ids of the windows an on-time value belongs to."""

    @abstractmethod
    def late_for(self, timestamp: datetime) -> Iterable[int]:
        """Return the ids of the windows a late value would have belonged to; changes nothing."""

    @abstractmethod
    def merged(self) -> Iterable[Tuple[int, int]]:
        """Return, once, the ``(original_id, target_id)`` merges since the last call."""

    @abstractmethod
    def close_for(self, watermark: datetime) -> Iterable[Tuple[int, WindowMetadata]]:
        """Close and return the windows the watermark has passed, with their metadata."""

    @abstractmethod
    def notify_at(self) -> Optional[datetime]:
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
    def build(self, resume_state: Optional[S]) -> WindowerLogic[S]:
        """Build a key's windower from its snapshot, or afresh when ``resume_state`` is ``None``."""


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


# Clocks.


class _SystemClockLogic(ClockLogic[Any, None]):
    def __init__(self) -> None:
        self._now = utc_now()

    def before_batch(self) -> None:
        self._now = utc_now()

    def on_item(self, value: Any) -> Tuple[datetime, datetime]:
        return self._now, self._now

    def on_notify(self) -> datetime:
        return utc_now()

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> Optional[datetime]:
        return timestamp

    def snapshot(self) -> None:
        return None


@dataclass
class SystemClock(Clock[Any, None]):
    """Time is the system's (UTC): a value's timestamp and the watermark are when it arrives.

    No value is ever late; windows close as the system time passes them, and
    all at end of input.

    >>> half_an_hour_ago = datetime.now(timezone.utc) - timedelta(minutes=30)
    >>> hour = TumblingWindower(timedelta(hours=1), align_to=half_an_hour_ago)
    >>> flow = Dataflow("sys_clock_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2)]))
    >>> out = collect_window("collect", s, SystemClock(), hour)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    sys_clock_eg.show: ('a', (0, [1, 2]))
    """

    def build(self, resume_state: None) -> ClockLogic[Any, None]:
        """Build a key's clock (it has no state)."""
        return _SystemClockLogic()


class _EventClockLogic(ClockLogic[V, List[datetime]]):
    """Watermark: the latest timestamp minus the wait, plus the system time since it came."""

    def __init__(self, config: EventClock[V], state: Optional[List[datetime]]) -> None:
        self._config = config
        if state is None:
            self._seen_at, self._base = config.now_getter(), UTC_MIN
        else:
            self._seen_at, self._base = state
        self._now = self._seen_at

    def _watermark(self, now: datetime) -> datetime:
        return _shift(self._base, now - self._seen_at)

    def before_batch(self) -> None:
        self._now = self._config.now_getter()

    def on_item(self, value: V) -> Tuple[datetime, datetime]:
        timestamp = self._config.ts_getter(value)
        watermark = self._watermark(self._now)
        candidate = _shift_back(timestamp, self._config.wait_for_system_duration)
        if candidate > watermark:
            self._base, self._seen_at = candidate, self._now
            watermark = candidate
        return timestamp, watermark

    def on_notify(self) -> datetime:
        return self._watermark(self._config.now_getter())

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> Optional[datetime]:
        at = self._config.to_system_utc(timestamp)
        if at is None or self._config.now_getter is not utc_now:
            return at
        # The watermark follows the system clock, so it cannot reach
        # ``timestamp`` before this: waking earlier would change nothing.
        return max(at, _shift(self._seen_at, timestamp - self._base))

    def snapshot(self) -> List[datetime]:
        return [self._seen_at, self._base]


@dataclass
class EventClock(Clock[V, List[datetime]]):
    """Time is read from the values: ``ts_getter(value)`` returns an aware UTC datetime.

    The watermark is the largest timestamp seen, minus
    ``wait_for_system_duration``, plus the system time (``now_getter()``) passed
    since that timestamp was seen: values may arrive out of order by up to the
    wait without being late. ``to_system_utc`` maps a window's close time to
    the system time at which to check it again (``None``: only check when a
    value or the end of input comes); by default the two are taken as equal.
    With the default ``now_getter``, a key is never woken before its
    watermark can have reached that close time, so old timestamps cost no
    wake-ups.

    Here values are ``(name, minutes after noon)``, and may come up to 5
    minutes late:

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(minutes=5))
    >>> flow = Dataflow("event_clock_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", ("x", 1)), ("a", ("y", 12)),
    ...                                          ("a", ("z", 8)), ("a", ("w", 2))]))
    >>> out = collect_window("collect", s, clock, TumblingWindower(timedelta(minutes=10), noon))
    >>> _ = op.inspect("down", out.down)
    >>> _ = op.inspect("late", out.late)
    >>> run_main(flow)
    event_clock_eg.late: ('a', (0, ('w', 2)))
    event_clock_eg.down: ('a', (0, [('x', 1), ('z', 8)]))
    event_clock_eg.down: ('a', (1, [('y', 12)]))
    """

    ts_getter: Callable[[V], datetime]
    wait_for_system_duration: timedelta
    now_getter: Callable[[], datetime] = utc_now
    to_system_utc: Callable[[datetime], Optional[datetime]] = identity

    def build(self, resume_state: Optional[List[datetime]]) -> ClockLogic[V, List[datetime]]:
        """Build a key's clock; its state is ``[system time of the max timestamp, base]``."""
        return _EventClockLogic(self, resume_state)


# Windowers.


class _SlidingWindowerLogic(WindowerLogic[List[int]]):
    """Window ``i`` spans ``[align_to + i * offset, ... + length)``; state: ids, oldest first."""

    def __init__(
        self, length: timedelta, offset: timedelta, align_to: datetime, opened: Optional[List[int]]
    ) -> None:
        # In microseconds: ints never overflow, and bounds saturate at the ends of time.
        self._length = length // _MICROSECOND
        self._offset = offset // _MICROSECOND
        self._align_to = align_to
        self._opened = {window_id: self._metadata(window_id) for window_id in opened or ()}

    def _metadata(self, window_id: int) -> WindowMetadata:
        start = self._offset * window_id
        return WindowMetadata(
            _after(self._align_to, start), _after(self._align_to, start + self._length)
        )

    def _ids_for(self, timestamp: datetime) -> List[int]:
        since = (timestamp - self._align_to) // _MICROSECOND
        first = (since - self._length) // self._offset + 1
        return list(range(first, since // self._offset + 1))

    def open_for(self, timestamp: datetime) -> List[int]:
        ids = self._ids_for(timestamp)
        for window_id in ids:
            if window_id not in self._opened:
                self._opened[window_id] = self._metadata(window_id)
        return ids

    def late_for(self, timestamp: datetime) -> List[int]:
        return self._ids_for(timestamp)

    def merged(self) -> Iterable[Tuple[int, int]]:
        return ()

    def close_for(self, watermark: datetime) -> List[Tuple[int, WindowMetadata]]:
        # In opening order, as Bytewax closes them (not always by id, when unordered).
        ids = [i for i, meta in self._opened.items() if meta.close_time <= watermark]
        return [(window_id, self._opened.pop(window_id)) for window_id in ids]

    def notify_at(self) -> Optional[datetime]:
        return min((meta.close_time for meta in self._opened.values()), default=None)

    def is_empty(self) -> bool:
        return not self._opened

    def snapshot(self) -> List[int]:
        return list(self._opened)


@dataclass
class SlidingWindower(Windower[List[int]]):
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
                f"sliding window `offset` ({self.offset}) can't be longer than `length` "
                f"({self.length}): values in the gaps would belong to no window"
            )

    def build(self, resume_state: Optional[List[int]]) -> WindowerLogic[List[int]]:
        """Build a key's windower; its state is the list of open window ids."""
        return _SlidingWindowerLogic(self.length, self.offset, self.align_to, resume_state)


@dataclass
class TumblingWindower(Windower[List[int]]):
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

    def build(self, resume_state: Optional[List[int]]) -> WindowerLogic[List[int]]:
        """Build a key's windower; its state is the list of open window ids."""
        return _SlidingWindowerLogic(self.length, self.length, self.align_to, resume_state)


class _SessionWindowerLogic(WindowerLogic[Dict[str, Any]]):
    """Sessions in creation order; ids count up from 0 and are never reused."""

    def __init__(self, gap: timedelta, state: Optional[Dict[str, Any]]) -> None:
        self._gap = gap
        self._last_id: int = -1
        self._sessions: Dict[int, WindowMetadata] = {}
        self._merges: List[Tuple[int, int]] = []
        if state is not None:
            self._last_id = state["last_id"]
            self._sessions = {
                session_id: WindowMetadata(open_time, close_time, set(merged_ids))
                for session_id, open_time, close_time, merged_ids in state["sessions"]
            }
            self._merges = [(original, target) for original, target in state["merges"]]

    def open_for(self, timestamp: datetime) -> Tuple[int]:
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

    def late_for(self, timestamp: datetime) -> Tuple[int]:
        return (LATE_SESSION_ID,)

    def merged(self) -> List[Tuple[int, int]]:
        merges, self._merges = self._merges, []
        return merges

    def close_for(self, watermark: datetime) -> List[Tuple[int, WindowMetadata]]:
        # The end of time closes every session, even one whose gap reaches past it.
        ids = [
            i
            for i, meta in self._sessions.items()
            if watermark - meta.close_time > self._gap or watermark == UTC_MAX
        ]
        return [(session_id, self._sessions.pop(session_id)) for session_id in ids]

    def notify_at(self) -> Optional[datetime]:
        if not self._sessions:
            return None
        return _shift(min(meta.close_time for meta in self._sessions.values()), self._gap)

    def is_empty(self) -> bool:
        # The id counter must survive, so that ids are never reused.
        return False

    def snapshot(self) -> Dict[str, Any]:
        return {
            "last_id": self._last_id,
            "sessions": [
                [session_id, meta.open_time, meta.close_time, sorted(meta.merged_ids)]
                for session_id, meta in self._sessions.items()
            ],
            "merges": [list(pair) for pair in self._merges],
        }


@dataclass
class SessionWindower(Windower[Dict[str, Any]]):
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
            raise ValueError(f"session window `gap` must not be negative; got {self.gap}")

    def build(self, resume_state: Optional[Dict[str, Any]]) -> WindowerLogic[Dict[str, Any]]:
        """Build a key's windower; its state holds the sessions and the last id given out."""
        return _SessionWindowerLogic(self.gap, resume_state)


# The per-key logic run by ``stateful_batch``.

# What a key's logic emits: ``(window_id, kind, payload)``, split into the
# three output streams afterwards.
_DOWN, _LATE, _META = 0, 1, 2
_Event = Tuple[int, int, Any]
_WindowBuilder = Callable[[Optional[S]], WindowLogic[V, W, S]]


def _timestamp(entry: Tuple[Any, datetime]) -> datetime:
    return entry[1]


class _KeyWindows(StatefulBatchLogic[V, _Event, Dict[str, Any]]):
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
        builder: _WindowBuilder[Any, V, W],
        ordered: bool,
        resume: Optional[Dict[str, Any]],
    ) -> None:
        state = resume or {"clock": None, "windower": None, "windows": [], "queue": []}
        self._builder = builder
        self._ordered = ordered
        self._clock = clock.build(state["clock"])
        self._windower = windower.build(state["windower"])
        self._windows = {window_id: builder(held) for window_id, held in state["windows"]}
        self._queue: List[Tuple[V, datetime]] = [(value, ts) for value, ts in state["queue"]]

    def on_batch(self, values: List[V]) -> Tuple[List[_Event], bool]:
        events: List[_Event] = []
        self._clock.before_batch()
        watermark = UTC_MIN
        for value in values:
            timestamp, watermark = self._clock.on_item(value)
            if timestamp < watermark:
                events.extend((i, _LATE, value) for i in self._windower.late_for(timestamp))
            elif self._ordered:
                insort(self._queue, (value, timestamp), key=_timestamp)
            else:
                self._queue.append((value, timestamp))
        return self._advance(watermark, events)

    def on_notify(self) -> Tuple[List[_Event], bool]:
        return self._advance(self._clock.on_notify(), [])

    def on_eof(self) -> Tuple[List[_Event], bool]:
        return self._advance(self._clock.on_eof(), [])

    def _due(self, watermark: datetime) -> List[Tuple[V, datetime]]:
        """Take the queued values the windows can have now."""
        cut = bisect_right(self._queue, watermark, key=_timestamp) if self._ordered else None
        due = self._queue[:cut]
        del self._queue[:cut]
        return due

    def _advance(self, watermark: datetime, events: List[_Event]) -> Tuple[List[_Event], bool]:
        """Hand due values to their windows, then merge and close windows; emit what they say."""
        windows, windower, emit = self._windows, self._windower, events.append
        for value, timestamp in self._due(watermark):
            for window_id in windower.open_for(timestamp):
                logic = windows.get(window_id)
                if logic is None:
                    logic = windows[window_id] = self._builder(None)
                for out in logic.on_value(value):
                    emit((window_id, _DOWN, out))
        for original, target in windower.merged():
            absorbed = windows.pop(original)
            for out in windows[target].on_merge(absorbed):
                emit((target, _DOWN, out))
        for window_id, meta in windower.close_for(watermark):
            for out in windows.pop(window_id).on_close():
                emit((window_id, _DOWN, out))
            emit((window_id, _META, meta))
        return events, not self._queue and windower.is_empty()

    def notify_at(self) -> Optional[datetime]:
        at = self._windower.notify_at()
        if self._queue:
            first = self._queue[0][1]
            at = first if at is None else min(at, first)
        return None if at is None else self._clock.to_system_utc(at)

    def snapshot(self) -> Dict[str, Any]:
        windows = self._windows.items()
        return {
            "clock": self._clock.snapshot(),
            "windower": self._windower.snapshot(),
            "windows": [[window_id, logic.snapshot()] for window_id, logic in windows],
            "queue": [[value, timestamp] for value, timestamp in self._queue],
        }


def _unwrap(kind: int) -> Callable[[_Event], Optional[Tuple[int, Any]]]:
    def unwrap(event: _Event) -> Optional[Tuple[int, Any]]:
        window_id, event_kind, payload = event
        return (window_id, payload) if event_kind == kind else None

    return unwrap


@operator
def window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    builder: Callable[[Optional[S]], WindowLogic[V, W, S]],
    ordered: bool = True,
) -> WindowOut[V, W]:
    """The general windowing operator: run a :class:`WindowLogic` per window of each key.

    ``builder(resume_state)`` makes the logic of a newly opened window (with
    ``None``), or of an open window on resume (with what its ``snapshot()``
    returned). With ``ordered`` (the default) values reach a window in
    timestamp order, each once the watermark has passed it; otherwise they
    are handed over as they arrive, which is sooner.

    >>> class Spread(WindowLogic):
    ...     def __init__(self, state):
    ...         self.low, self.high = state or (None, None)
    ...     def on_value(self, n):
    ...         self.low = n if self.low is None else min(self.low, n)
    ...         self.high = n if self.high is None else max(self.high, n)
    ...         return []
    ...     def on_merge(self, original):
    ...         self.low, self.high = min(self.low, original.low), max(self.high, original.high)
    ...         return []
    ...     def on_close(self):
    ...         return [self.high - self.low]
    ...     def snapshot(self):
    ...         return (self.low, self.high)
    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(minutes=5))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 4), ("a", 1), ("a", 12)]))
    >>> out = window("spread", s, clock, ten_minutes, Spread)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    window_eg.show: ('a', (0, 3))
    window_eg.show: ('a', (1, 0))
    """

    def build(resume: Optional[Dict[str, Any]]) -> _KeyWindows[V, W]:
        return _KeyWindows(clock, windower, builder, ordered, resume)

    events = stateful_batch("stateful_batch", up, build)
    return WindowOut(
        filter_map_value("unwrap_down", events, _unwrap(_DOWN)),
        filter_map_value("unwrap_late", events, _unwrap(_LATE)),
        filter_map_value("unwrap_meta", events, _unwrap(_META)),
    )


# The windowing operators built on ``window``.


class _FoldWindow(WindowLogic[V, S, S]):
    def __init__(
        self, folder: Callable[[S, V], S], merger: Callable[[S, S], S], state: S
    ) -> None:
        self._folder = folder
        self._merger = merger
        self.state = state

    def on_value(self, value: V) -> Tuple[()]:
        self.state = self._folder(self.state, value)
        return ()

    def on_merge(self, original: _FoldWindow[V, S]) -> Tuple[()]:
        self.state = self._merger(self.state, original.state)
        return ()

    def on_close(self) -> Tuple[S]:
        return (self.state,)

    def snapshot(self) -> S:
        return self.state


@operator
def fold_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    builder: Callable[[], S],
    folder: Callable[[S, V], S],
    merger: Callable[[S, S], S],
    ordered: bool = True,
) -> WindowOut[V, S]:
    """Fold each window's values into an accumulator, emitted when the window closes.

    Each window starts from ``builder()``; ``folder(acc, value)`` returns the
    new accumulator (values in timestamp order when ``ordered``); when two
    windows merge, ``merger(acc, other_acc)`` combines them.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("fold_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 5), ("b", 15)]))
    >>> def add(total, minute):
    ...     return total + minute
    >>> out = fold_window("sum", s, clock, ten_minutes, int, add, add)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    fold_window_eg.show: ('a', (0, 6))
    fold_window_eg.show: ('b', (1, 15))
    """

    def build(resume: Optional[S]) -> _FoldWindow[V, S]:
        return _FoldWindow(folder, merger, builder() if resume is None else resume)

    return window("window", up, clock, windower, build, ordered)


def _list_folder(acc: List[V], value: V) -> List[V]:
    acc.append(value)
    return acc


def _set_folder(acc: Set[V], value: V) -> Set[V]:
    acc.add(value)
    return acc


def _dict_folder(acc: Dict[Any, Any], item: Tuple[Any, Any]) -> Dict[Any, Any]:
    key, value = item
    acc[key] = value
    return acc


def _dict_merger(acc: Dict[Any, Any], other: Dict[Any, Any]) -> Dict[Any, Any]:
    acc.update(other)
    return acc


_COLLECTORS: Dict[type, Tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    list: (_list_folder, list.__add__),
    set: (_set_folder, set.__or__),
    dict: (_dict_folder, _dict_merger),
}


@operator
def collect_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    into: Type[Any] = list,
    ordered: bool = True,
) -> WindowOut[V, Any]:
    """Collect each window's values into a ``list`` (the default), a ``set``, or a ``dict``.

    For a ``dict`` the values must be ``(k, v)`` pairs; a later ``k`` wins.
    With ``ordered``, values are in timestamp order, otherwise in arrival order.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(minutes=5))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("collect_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", ("x", 3)), ("a", ("y", 1)),
    ...                                          ("a", ("x", 11))]))
    >>> out = collect_window("names", s, clock, ten_minutes, into=dict)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    collect_window_eg.show: ('a', (0, {'y': 1, 'x': 3}))
    collect_window_eg.show: ('a', (1, {'x': 11}))
    """
    if into not in _COLLECTORS:
        raise TypeError(
            f"collect_window step {step_id!r} can't collect into {into!r}; "
            "use `list`, `set` or `dict`"
        )
    folder, merger = _COLLECTORS[into]
    return fold_window("fold_window", up, clock, windower, into, folder, merger, ordered)


def _none() -> None:
    return None


@operator
def reduce_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    reducer: Callable[[V, V], V],
) -> WindowOut[V, V]:
    """Combine each window's values pairwise with ``reducer``, emitted when the window closes.

    Values are combined in arrival order (not timestamp order), as soon as
    they come; ``reducer`` also combines two windows that merge.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("reduce_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ("a", 14)]))
    >>> out = reduce_window("sum", s, clock, ten_minutes, lambda a, b: a + b)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    reduce_window_eg.show: ('a', (0, 3))
    reduce_window_eg.show: ('a', (1, 14))
    """

    def first_or_reduce(acc: Optional[V], value: V) -> V:
        return value if acc is None else reducer(acc, value)

    return fold_window(
        "fold_window", up, clock, windower, _none, first_or_reduce, reducer, ordered=False
    )


@operator
def max_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    by: Callable[[V], Any] = identity,
) -> WindowOut[V, V]:
    """Emit each window's largest value (by ``by(value)``; on ties, the first to arrive).

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("max_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", (7.5, 1)), ("a", (9.0, 2)),
    ...                                          ("a", (8.1, 14))]))
    >>> out = max_window("warmest", s, clock, ten_minutes, by=lambda v: v[0])
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    max_window_eg.show: ('a', (0, (9.0, 2)))
    max_window_eg.show: ('a', (1, (8.1, 14)))
    """
    return reduce_window("reduce_window", up, clock, windower, partial(max, key=by))


@operator
def min_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    by: Callable[[V], Any] = identity,
) -> WindowOut[V, V]:
    """Emit each window's smallest value (by ``by(value)``; on ties, the first to arrive).

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("min_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", (7.5, 1)), ("a", (9.0, 2)),
    ...                                          ("a", (8.1, 14))]))
    >>> out = min_window("coldest", s, clock, ten_minutes, by=lambda v: v[0])
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    min_window_eg.show: ('a', (0, (7.5, 1)))
    min_window_eg.show: ('a', (1, (8.1, 14)))
    """
    return reduce_window("reduce_window", up, clock, windower, partial(min, key=by))


def _add_one(count: int, _item: Any) -> int:
    return count + 1


@operator
def count_window(
    step_id: str,
    up: Stream[X],
    clock: Clock[X, Any],
    windower: Windower[Any],
    key: Callable[[X], str],
) -> WindowOut[X, int]:
    """Count the items of an (unkeyed) stream per ``key(item)`` and window.

    The clock gets the items themselves. Items are counted as they arrive.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("count_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("x", 1), ("y", 2), ("x", 3), ("x", 12)]))
    >>> out = count_window("count", s, clock, ten_minutes, key=lambda v: v[0])
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    count_window_eg.show: ('x', (0, 2))
    count_window_eg.show: ('x', (1, 1))
    count_window_eg.show: ('y', (0, 1))
    """
    keyed = key_on("keyed", up, key)
    return fold_window("sum", keyed, clock, windower, zero, _add_one, add, ordered=False)


# join_window.


class _JoinWindow(WindowLogic[Tuple[int, Any], Tuple[Any, ...], List[List[Any]]]):
    """One window's :class:`JoinState`; ``emit_mode="final"`` emits when it closes."""

    def __init__(self, state: JoinState) -> None:
        self.state = state

    def on_value(self, value: Tuple[int, Any]) -> List[Tuple[Any, ...]]:
        return self.state.insert(*value)

    def on_merge(self, original: _JoinWindow) -> List[Tuple[Any, ...]]:
        return self.state.absorb(original.state)

    def on_close(self) -> List[Tuple[Any, ...]]:
        return self.state.final()

    def snapshot(self) -> List[List[Any]]:
        return self.state.to_snapshot()


@operator
def _join_label_merge(step_id: str, *sides: KeyedStream[Any]) -> KeyedStream[Tuple[int, Any]]:
    """Tag each side's values with the side's index, and merge the sides."""
    return tag_and_merge("label", sides)


def _untagged(clock: Clock[Any, Any]) -> Clock[Any, Any]:
    """An :class:`EventClock` that reads timestamps of ``(side, value)`` from ``value``."""
    if not isinstance(clock, EventClock):
        return clock
    ts_getter = clock.ts_getter
    return replace(clock, ts_getter=lambda tagged: ts_getter(tagged[1]))


@operator
def join_window(
    step_id: str,
    clock: Clock[Any, Any],
    windower: Windower[Any],
    *sides: KeyedStream[Any],
    insert_mode: JoinInsertMode = "last",
    emit_mode: JoinEmitMode = "final",
    ordered: bool = True,
) -> WindowOut[Any, Tuple[Any, ...]]:
    """Join keyed streams on their keys, per window, into tuples of one value per side.

    The modes are those of :func:`fastflow.operators.join` (a missing side is
    ``None``), but here ``emit_mode="final"`` (the default) emits when the
    window closes. Late values come out tagged with their side:
    ``(key, (window_id, (side_index, value)))``. An :class:`EventClock` gets
    the untagged values; any other clock gets ``(side_index, value)``.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("join_window_eg")
    >>> names = op.input("names", flow, TestingSource([("1", ("ann", 1)), ("2", ("bob", 2))]))
    >>> ages = op.input("ages", flow, TestingSource([("1", (31, 3)), ("1", (32, 14))]))
    >>> out = join_window("people", clock, ten_minutes, names, ages)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    join_window_eg.show: ('1', (0, (('ann', 1), (31, 3))))
    join_window_eg.show: ('1', (1, (None, (32, 14))))
    join_window_eg.show: ('2', (0, (('bob', 2), None)))
    """
    check_join("join_window", step_id, insert_mode, emit_mode, len(sides))
    count = len(sides)

    def build(resume: Optional[List[List[Any]]]) -> _JoinWindow:
        return _JoinWindow(JoinState.build(count, insert_mode, emit_mode, resume))

    tagged = _join_label_merge("add_names", *sides)
    return window("window", tagged, _untagged(clock), windower, build, ordered)

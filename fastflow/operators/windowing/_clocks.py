"""Clocks: a value's timestamp, and each key's watermark (the time before which values are late).

The classes' examples run in (and are listed by) :mod:`fastflow.operators.windowing`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from fastflow.operators._time import UTC_MAX, UTC_MIN, shift, shift_back
from fastflow.operators._util import identity, utc_now

V = TypeVar("V")
S = TypeVar("S")


class ClockLogic(ABC, Generic[V, S]):
    """One key's sense of time: timestamps for its values, and its watermark."""

    @abstractmethod
    def before_batch(self) -> None:
        """Called before the :meth:`on_item` calls of one batch (e.g. to read the time once)."""

    @abstractmethod
    def on_item(self, value: V) -> tuple[datetime, datetime]:
        """Return ``(timestamp of value, watermark after it)``."""

    @abstractmethod
    def on_notify(self) -> datetime:
        """Return the watermark when woken up without a value."""

    @abstractmethod
    def on_eof(self) -> datetime:
        """Return the watermark at end of input; must not change the snapshotted state."""

    @abstractmethod
    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        """The system time (UTC) to wake up at for ``timestamp``; ``None``: do not wake."""

    @abstractmethod
    def snapshot(self) -> S:
        """Return the state to resume from (a value that no later call mutates)."""


class Clock(ABC, Generic[V, S]):
    """Configuration of a clock; builds a :class:`ClockLogic` for each key."""

    @abstractmethod
    def build(self, resume_state: S | None) -> ClockLogic[V, S]:
        """Build a key's clock from its snapshot, or afresh when ``resume_state`` is ``None``."""



class EventClockState(NamedTuple):
    """A key's :class:`EventClock` state; stored as the list ``[system_time_of_max, base]``."""

    system_time_of_max: datetime
    """The system time at which the largest timestamp so far was seen."""
    watermark_base: datetime
    """The watermark at that moment: the largest timestamp minus the wait."""

    @classmethod
    def from_snapshot(cls, snapshot: Sequence[datetime]) -> EventClockState:
        """Read the stored layout."""
        system_time_of_max, watermark_base = snapshot
        return cls(system_time_of_max, watermark_base)

    def to_snapshot(self) -> list[datetime]:
        """The stored layout."""
        return [self.system_time_of_max, self.watermark_base]


class _SystemClockLogic(ClockLogic[Any, None]):
    def __init__(self) -> None:
        self._now = utc_now()

    def before_batch(self) -> None:
        self._now = utc_now()

    def on_item(self, value: Any) -> tuple[datetime, datetime]:
        return self._now, self._now

    def on_notify(self) -> datetime:
        return utc_now()

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
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


class _EventClockLogic(ClockLogic[V, list[datetime]]):
    """Watermark: the latest timestamp minus the wait, plus the system time since it came."""

    def __init__(self, config: EventClock[V], state: list[datetime] | None) -> None:
        self._config = config
        if state is None:
            self._seen_at, self._base = config.now_getter(), UTC_MIN
        else:
            self._seen_at, self._base = EventClockState.from_snapshot(state)
        self._now = self._seen_at

    def _watermark(self, now: datetime) -> datetime:
        return shift(self._base, now - self._seen_at)

    def before_batch(self) -> None:
        # The system clock can step back (NTP, a changed clock); the watermark must not,
        # so it holds until the clock catches up (as in Bytewax).
        self._now = max(self._now, self._config.now_getter())

    def on_item(self, value: V) -> tuple[datetime, datetime]:
        timestamp = self._config.ts_getter(value)
        watermark = self._watermark(self._now)
        candidate = shift_back(timestamp, self._config.wait_for_system_duration)
        if candidate > watermark:
            self._base, self._seen_at = candidate, self._now
            watermark = candidate
        return timestamp, watermark

    def on_notify(self) -> datetime:
        self.before_batch()
        return self._watermark(self._now)

    def on_eof(self) -> datetime:
        return UTC_MAX

    def to_system_utc(self, timestamp: datetime) -> datetime | None:
        at = self._config.to_system_utc(timestamp)
        if at is None or self._config.now_getter is not utc_now:
            return at
        # The watermark follows the system clock, so it cannot reach
        # ``timestamp`` before this: waking earlier would change nothing.
        return max(at, shift(self._seen_at, timestamp - self._base))

    def snapshot(self) -> list[datetime]:
        return EventClockState(self._seen_at, self._base).to_snapshot()


@dataclass
class EventClock(Clock[V, list[datetime]]):
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
    to_system_utc: Callable[[datetime], datetime | None] = identity

    def build(self, resume_state: list[datetime] | None) -> ClockLogic[V, list[datetime]]:
        """Build a key's clock; its state is ``[system time of the max timestamp, base]``."""
        return _EventClockLogic(self, resume_state)



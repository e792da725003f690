"""The ends of time, and datetime arithmetic that saturates at them instead of overflowing.

A clock may wait forever (``timedelta.max``), a timestamp may be ``datetime.max``
and ``collect`` may wait forever too: every sum of a datetime and a duration in
the operators goes through these helpers, as Bytewax's clocks saturate.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

UTC_MIN = datetime.min.replace(tzinfo=timezone.utc)
"""The earliest UTC time: the watermark of a clock that has seen nothing yet."""

UTC_MAX = datetime.max.replace(tzinfo=timezone.utc)
"""The latest UTC time: the watermark at end of input, which closes every window."""

ZERO_TD = timedelta(0)
"""A zero duration."""


def shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, saturating at :data:`UTC_MIN` / :data:`UTC_MAX`."""
    try:
        return moment + delta
    except OverflowError:
        return UTC_MAX if delta > ZERO_TD else UTC_MIN


def shift_back(moment: datetime, delta: timedelta) -> datetime:
    """``moment - delta``, saturating (``-timedelta.max`` itself would overflow)."""
    try:
        return moment - delta
    except OverflowError:
        return UTC_MIN if delta > ZERO_TD else UTC_MAX


MICROSECOND = timedelta(microseconds=1)
"""The resolution of datetimes: durations divided by it are exact ints."""


def after(origin: datetime, micros: int) -> datetime:
    """``micros`` microseconds after ``origin`` (any int), saturating."""
    try:
        return origin + timedelta(microseconds=micros)
    except OverflowError:
        return UTC_MAX if micros > 0 else UTC_MIN



"""Small functions the operators share, named so that defaults and builders can be compared."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TypeVar

X = TypeVar("X")


def utc_now() -> datetime:
    """The system time, aware, in UTC: the default clock of the time-based operators."""
    return datetime.now(timezone.utc)


def identity(x: X) -> X:
    """``x`` itself: the default ``by`` of max/min and ``to_system_utc`` of event clocks."""
    return x


def zero() -> int:
    """``0``: the starting count of the counting operators."""
    return 0


def add(a: int, b: int) -> int:
    """``a + b``: adds up counts (and merges the counts of two windows)."""
    return a + b

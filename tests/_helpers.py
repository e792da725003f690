"""Helpers shared by the stateful operator tests (test_stateful_*.py, test_fold_reduce.py, ...).

Import them with ``from _helpers import ...``: pytest puts ``tests/`` on
``sys.path`` (there is no ``tests/__init__.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, List, Optional, Tuple

from fastflow.dataflow import Stream
from fastflow.operators import StatefulBatchLogic, StatefulLogic
from fastflow.testing import TestingSource

EOF = TestingSource.EOF
PAUSE = TestingSource.PAUSE
ABORT = TestingSource.ABORT
TINY_EPOCH = timedelta(microseconds=1)
BATCH_SIZES = [1, 2, 3, 100]
Build = Callable[[Stream[Any]], Stream[Any]]


def running_sum(state: Optional[int], x: int) -> Tuple[int, Tuple[Optional[int], int]]:
    return (state or 0) + x, (state, x)


def add(acc: int, x: int) -> int:
    return acc + x


def boom(*_args: Any) -> Any:
    raise ZeroDivisionError("boom")


class Recorder:
    """A call log shared by the logic objects of one run; each object has a number."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []
        self.built = 0

    def by_logic(self) -> dict:
        per: dict = {}
        for number, *call in self.calls:
            per.setdefault(number, []).append(tuple(call))
        return per


class Traced(StatefulLogic):
    """Counts values; "discard" discards, "notify" asks for on_notify in 0.2 s."""

    def __init__(self, rec: Recorder, resume: Any) -> None:
        self.rec, self.number = rec, rec.built
        rec.built += 1
        self.n = resume or 0
        self.due: Optional[datetime] = None
        self._log("build", resume)

    def _log(self, *call: Any) -> None:
        self.rec.calls.append((self.number, *call))

    def on_item(self, value: Any) -> Any:
        self.n += 1
        self._log("on_item", value)
        if value == "discard":
            return [("disc", self.n)], self.DISCARD
        if value == "notify":
            self.due = datetime.now(timezone.utc) + timedelta(seconds=0.2)
        return [("item", value)], self.RETAIN

    def on_notify(self) -> Any:
        self._log("on_notify")
        self.due = None
        return [("notified", self.n)], self.RETAIN

    def on_eof(self) -> Any:
        self._log("on_eof")
        return [("eof", self.n)], self.RETAIN

    def notify_at(self) -> Optional[datetime]:
        self._log("notify_at", self.due is not None)
        return self.due

    def snapshot(self) -> int:
        self._log("snapshot", self.n)
        return self.n


class Batches(StatefulBatchLogic):
    """Records the batches it gets; emits them, and everything at EOF."""

    def __init__(self, rec: Recorder, resume: Any) -> None:
        self.rec, self.number = rec, rec.built
        rec.built += 1
        self.seen: List[Any] = list(resume or [])
        rec.calls.append((self.number, "build", resume))

    def on_batch(self, values: List[Any]) -> Any:
        self.rec.calls.append((self.number, "on_batch", values, type(values).__name__))
        self.seen += values
        return [("b", list(values))], self.RETAIN

    def on_eof(self) -> Any:
        self.rec.calls.append((self.number, "on_eof"))
        return [("eof", self.seen)], self.DISCARD

    def snapshot(self) -> List[Any]:
        return self.seen


class RaisingLogic(StatefulLogic):
    """Raises from the callback named by its first value."""

    def __init__(self, resume: Any) -> None:
        self.fail: Optional[str] = None

    def on_item(self, value: str) -> Any:
        self.fail = value
        return boom() if value == "on_item" else ([], self.RETAIN)

    def on_eof(self) -> Any:
        return boom() if self.fail == "on_eof" else ([], self.RETAIN)

    def notify_at(self) -> Optional[datetime]:
        if self.fail == "notify_at":
            boom()
        if self.fail == "on_notify":
            return datetime.now(timezone.utc)
        return None

    def on_notify(self) -> Any:
        return boom()

    def snapshot(self) -> None:
        return None

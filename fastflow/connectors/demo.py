"""Demo connectors: made-up input for trying flows out.

>>> from datetime import timedelta
>>> import fastflow.operators as op
>>> from fastflow.dataflow import Dataflow
>>> from fastflow.testing import run_main
>>> values = iter([0.5, 1.5, 2.5])
>>> flow = Dataflow("demo_eg")
>>> source = RandomMetricSource("cpu", timedelta(milliseconds=1), 3, lambda: next(values))
>>> _ = op.inspect("show", op.input("metrics", flow, source))
>>> run_main(flow)
demo_eg.show: ('cpu', 0.5)
demo_eg.show: ('cpu', 1.5)
demo_eg.show: ('cpu', 2.5)
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition

__all__ = ["RandomMetricSource"]

Metric = tuple[str, float]


@dataclass(frozen=True)
class _RandomMetricState:
    """Where a metric partition is: when it emits next, and how many values it has emitted."""

    awake_at: datetime
    count: int


def _random_digit() -> float:
    """A random whole number from 0 to 9."""
    return random.randrange(10)


class _RandomMetricPartition(StatefulSourcePartition[Metric, _RandomMetricState]):
    def __init__(
        self,
        metric_name: str,
        interval: timedelta,
        count: int,
        next_random: Callable[[], float],
        state: _RandomMetricState,
    ) -> None:
        self._metric_name = metric_name
        self._interval = interval
        self._count = count
        self._next_random = next_random
        self._state = state

    def next_batch(self) -> list[Metric]:
        state = self._state
        if state.count >= self._count:
            raise StopIteration()
        value = self._next_random()
        self._state = _RandomMetricState(state.awake_at + self._interval, state.count + 1)
        return [(self._metric_name, value)]

    def next_awake(self) -> datetime | None:
        return self._state.awake_at

    def snapshot(self) -> _RandomMetricState:
        return self._state


class RandomMetricSource(FixedPartitionedSource[Metric, _RandomMetricState]):
    """Emit ``(metric_name, next_random())`` every ``interval``, ``count`` times.

    The source is one partition, named ``metric_name``, which resumes with the
    number of values already emitted and the time the next one was due.
    ``next_random`` defaults to a random whole number from 0 to 9.
    """

    def __init__(
        self,
        metric_name: str,
        interval: timedelta = timedelta(seconds=0.7),
        count: int = sys.maxsize,
        next_random: Callable[[], float] = _random_digit,
    ) -> None:
        self._metric_name = metric_name
        self._interval = interval
        self._count = count
        self._next_random = next_random

    def list_parts(self) -> list[str]:
        """The single partition, named after the metric."""
        return [self._metric_name]

    def build_part(
        self, step_id: str, for_part: str, resume_state: _RandomMetricState | None
    ) -> StatefulSourcePartition[Metric, _RandomMetricState]:
        """Start emitting now, or continue from ``resume_state``."""
        if for_part != self._metric_name:
            raise ValueError(
                f"RandomMetricSource {self._metric_name!r} has no partition {for_part!r}"
            )
        state = resume_state or _RandomMetricState(datetime.now(timezone.utc), 0)
        return _RandomMetricPartition(
            self._metric_name, self._interval, self._count, self._next_random, state
        )

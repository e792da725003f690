"""Per-step counters, kept as plain numbers on the nodes and read when someone asks.

Why this shape: a metrics library call per item (or even per batch) in the hot loop would
cost more than many steps do. A metered node adds to its :class:`Meter` once per batch
(items in and out, the batch's duration in a fixed set of buckets); the metrics layer
(``fastflow/_observe``) reads the numbers at scrape time, from another thread: reading
an int the loop is adding to is safe under the GIL, and at worst one batch behind.

Nodes are metered only when the run is observed (``hooks.RunHooks.metered``: the API,
``--progress`` or tracing): the worker then wraps a node's ``push`` and its emits
(:meth:`Meter.metering`, :meth:`Meter.counting`); otherwise they run exactly as if no
meter existed, because even a few hundred nanoseconds per batch show with small batches.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

Push = Callable[[list[Any]], None]

DURATION_BOUNDS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
"""Upper bounds (seconds) of the duration buckets; one more bucket holds the rest."""
SIZE_BOUNDS = (1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0)
"""Upper bounds (items) of the batch size buckets of source polls."""
SAMPLE_SECONDS = 1.0
"""With tracing on, a step's batches are sampled at most this often per worker."""

Sampler = Callable[[int, float, float], None]
"""Takes a sampled batch: its items, when it started and how long it took (perf_counter)."""


class Buckets:
    """A histogram: counts per bucket of ``bounds`` (plus one above them) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_right(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)


class Meter:
    """What one node on one worker did: items in and out, and how long its batches took."""

    __slots__ = ("items_in", "items_out", "durations", "sample_at", "sampler")

    def __init__(self) -> None:
        self.items_in = 0
        self.items_out = 0
        self.durations = Buckets(DURATION_BOUNDS)
        self.sample_at = math.inf
        """When (``perf_counter``) the next batch is sampled; never unless tracing is on."""
        self.sampler: Sampler | None = None

    def sample_from_now(self, sampler: Sampler) -> None:
        """Hand ``sampler`` the next batch, then one batch every ``SAMPLE_SECONDS``."""
        self.sampler = sampler
        self.sample_at = 0.0

    def sampled(self, items: int, started: float, seconds: float) -> None:
        """A batch that was due (``started >= sample_at``): give it to the sampler."""
        self.sample_at = started + SAMPLE_SECONDS
        if self.sampler is not None:
            self.sampler(items, started, seconds)

    def counting(self, push: Push) -> Push:
        """``push``, counting the items of every batch it is given as this node's output."""

        def emit(batch: list[Any]) -> None:
            self.items_out += len(batch)
            push(batch)

        return emit

    def metering(self, push: Push) -> Push:
        """A node's ``push``, counting each batch's items and timing it (and sampling it)."""
        durations = self.durations
        counts, bounds = durations.counts, durations.bounds

        def metered(batch: list[Any]) -> None:
            self.items_in += len(batch)
            started = time.perf_counter()
            push(batch)
            took = time.perf_counter() - started
            counts[bisect_right(bounds, took)] += 1
            durations.total += took
            if started >= self.sample_at:  # never, unless tracing is on
                self.sampled(len(batch), started, took)

        return metered

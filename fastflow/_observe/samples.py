"""A process's figures at one moment, as plain picklable data.

One process reads them off its own nodes (``_runtime/meter.py``) when asked; a worker
process of ``-p N`` or Ray sends them to the coordinator on its control channel, which
keeps the latest of each process. So the metrics and ``/status`` are built the same way
from one process or many: from a list of :class:`ProcessSample`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastflow._runtime.meter import Buckets
    from fastflow._runtime.worker import Workers

LAG_METHOD = "lag"
"""The optional method of a source partition that says how far behind its input it is."""

Histogram = tuple[list[int], float]
"""A histogram's bucket counts and sum (bounds: ``meter.DURATION_BOUNDS``/``SIZE_BOUNDS``)."""


def _histogram(buckets: Buckets) -> Histogram:
    return list(buckets.counts), buckets.total


@dataclass(frozen=True)
class StepSample:
    """One core step on one worker."""

    step_id: str
    worker: int
    items_in: int
    items_out: int
    durations: Histogram
    sizes: Histogram | None = None
    """Items per ``next_batch`` call (sources only)."""
    live_keys: int | None = None
    """Keys with state (stateful steps only)."""


@dataclass(frozen=True)
class LagSample:
    """What a source partition's ``lag()`` said."""

    step_id: str
    partition: str
    lag: int | None


@dataclass(frozen=True)
class ProcessSample:
    """Everything one process knows about its part of the run."""

    process: int
    workers: list[int]
    steps: list[StepSample]
    lags: list[LagSample] = field(default_factory=list)
    items_sent: int = 0
    """Items sent to other processes (``-p N``, Ray)."""
    bytes_sent: int = 0
    """Bytes of encoded batches sent to other processes."""
    taken_at: float = 0.0
    user_metrics: list[Any] = field(default_factory=list)
    """The process's own ``prometheus_client`` registry (``usermetrics.export``)."""


def _lag(part: Any) -> int | None:
    lag = getattr(part, LAG_METHOD, None)
    if lag is None:
        return None
    try:
        value = lag()
    except Exception:  # a figure that cannot be read is unknown, not a failed run
        return None
    return None if value is None else int(value)


def sample_workers(process: int, workers: Workers, links: Any = ()) -> ProcessSample:
    """Read the meters of ``workers`` (this process's), and what ``links`` carried."""
    steps: list[StepSample] = []
    lags: list[LagSample] = []
    for worker in workers.workers:
        index = worker.clock.worker_index
        for source in worker.inputs:
            meter = source.meter
            steps.append(StepSample(source.step_id, index, meter.items_in, meter.items_out,
                                    _histogram(meter.durations), _histogram(source.sizes)))
            for entry in list(source.parts):
                if entry.key is not None and hasattr(entry.part, LAG_METHOD):
                    lags.append(LagSample(source.step_id, entry.key, _lag(entry.part)))
        stateful = {id(node) for node in worker.stateful}
        for node in worker.nodes:
            meter = node.meter
            live = len(getattr(node, "states", ())) if id(node) in stateful else None
            steps.append(StepSample(node.step_id, index, meter.items_in, meter.items_out,
                                    _histogram(meter.durations), live_keys=live))
    links = list(links)
    return ProcessSample(
        process=process,
        workers=[worker.clock.worker_index for worker in workers.workers],
        steps=steps,
        lags=lags,
        items_sent=sum(getattr(link, "items_sent", 0) for link in links),
        bytes_sent=sum(getattr(link, "bytes_sent", 0) for link in links),
        taken_at=time.time(),
    )

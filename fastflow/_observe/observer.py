"""The observer of a run, in the process that runs (or coordinates) it.

What ``/status`` and ``/metrics`` are made of.

It is the engine's :class:`~fastflow._hooks.RunHooks` in the ``fastflow run``
process: it keeps the epochs and commits as they happen, and the latest figures of each
worker process (``-p N``, Ray), or reads this process's own workers when asked. A
worker process gets a :class:`ChildObserver` instead, which sends its figures to the
coordinator on the control channel about once a second and when it exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastflow._hooks import RunHooks
from fastflow._observe.samples import ProcessSample, sample_workers
from fastflow._runtime.meter import DURATION_BOUNDS, Buckets

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from fastflow._observe.traces import ChildTracer, ParentSpan, RunTracer
    from fastflow._observe.tracing_config import TracingConfig
    from fastflow._runtime.worker import Workers

    ChildTracing = tuple[TracingConfig, ParentSpan]

COMMITS_KEPT = 60
log = logging.getLogger("fastflow.run")


@dataclass(frozen=True)
class RunInfo:
    """What is known of a run before it starts."""

    flow_id: str
    kinds: dict[str, str]
    """Core step id -> core kind, in plan order."""
    processes: int
    workers_per_process: int
    interval_seconds: float
    store: Path | None


@dataclass
class Commit:
    """One committed epoch."""

    epoch: int
    at: float
    encode_seconds: float | None
    write_seconds: float
    bytes: int
    keys: int


class ChildObserver(RunHooks):
    """A worker process's hooks: its figures go to the coordinator with each report."""

    def __init__(self, child_setup: Any = None, *, collect: bool = True,
                 tracing: ChildTracing | None = None) -> None:
        """``child_setup(process, control)`` runs first; ``collect``: send figures."""
        self._process = 0
        self._collect = collect
        self._workers: Workers | None = None
        self._links: list[Any] = []
        self._setup = child_setup
        self._tracing = tracing
        self._tracer: ChildTracer | None = None

    def for_child(self) -> RunHooks:
        """Itself: it is already a worker process's."""
        return self

    @property
    def metered(self) -> bool:
        """Whether anything reads the meters: the figures are sent, or batches traced."""
        return self._collect or self._tracing is not None

    def in_child(self, process: int, control: Connection) -> None:
        """Remember the process index; set up what the coordinator asked for (logging)."""
        self._process = process
        if self._setup is not None:
            self._setup(process, control)
        if self._tracing is not None:
            from fastflow._observe.traces import ChildTracer

            self._tracer = ChildTracer(*self._tracing, process)

    def workers_built(self, workers: Workers, links: Iterable[Any] = ()) -> None:
        """Keep the workers and links to read when reporting; sample their batches."""
        self._workers = workers
        self._links = list(links)
        if self._tracer is not None:
            self._tracer.sample_batches(workers)

    def leaving(self) -> None:
        """Send the spans not sent yet."""
        if self._tracer is not None:
            self._tracer.close()
            self._tracer = None

    def report(self) -> ProcessSample | None:
        """The process's figures, with its own ``prometheus_client`` metrics."""
        if self._workers is None or not self._collect:
            return None
        from fastflow._observe.usermetrics import export

        sample = sample_workers(self._process, self._workers, self._links)
        sample.user_metrics.extend(export())
        return sample


class Observer(RunHooks):
    """The run as the ``fastflow run`` process sees it."""

    def __init__(self, info: RunInfo, child_setup: Any = None, *, collect: bool = True) -> None:
        """Observe the run ``info`` describes; ``collect``: the processes' figures are read."""
        self.info = info
        self._collect = collect
        self.started_at = time.time()
        self.state = "running"
        self.error: str | None = None
        self.epoch: int | None = 1
        self.committed_epoch: int | None = None
        self.resume_epoch: int | None = None
        self.resume_keys: int | None = None
        self.resume_seconds: float | None = None
        self.restarts = 0
        self.commits: deque[Commit] = deque(maxlen=COMMITS_KEPT)
        self.commit_count = 0
        self.commit_bytes = 0
        self.commit_keys = 0
        self.encode_durations = Buckets(DURATION_BOUNDS)
        self.write_durations = Buckets(DURATION_BOUNDS)
        self._encoded: dict[int, float] = {}
        self._lock = threading.Lock()
        self._workers: Workers | None = None
        self._links: list[Any] = []
        self._reports: dict[int, ProcessSample] = {}
        self._child_setup = child_setup
        self.tracer: RunTracer | None = None
        """The run's spans, when the flow called ``setup_tracing``."""

    # -- the engine's events ------------------------------------------------------------

    @property
    def metered(self) -> bool:
        """Whether anything reads the meters: the API or progress, or tracing."""
        return self._collect or self.tracer is not None

    def for_child(self) -> RunHooks:
        """A worker process's hooks: report to this observer."""
        tracing = None if self.tracer is None else (self.tracer.config, self.tracer.parent)
        return ChildObserver(self._child_setup, collect=self._collect, tracing=tracing)

    def workers_built(self, workers: Workers, links: Iterable[Any] = ()) -> None:
        """One process runs the workers itself: read them when asked."""
        self._workers = workers
        self._links = list(links)
        if self.tracer is not None:
            self.tracer.sample_batches(workers)

    def reported(self, process: int, report: Any) -> None:
        """Keep a worker process's latest figures."""
        if isinstance(report, ProcessSample):
            with self._lock:
                self._reports[process] = report

    def started(self) -> None:
        """Log the start of a run without recovery (with it: :meth:`resumed` does)."""
        if self.info.store is None:
            log.info("running flow %r: %s, no recovery directory", self.info.flow_id,
                     self._shape())

    def _shape(self) -> str:
        info = self.info
        return f"{info.processes} process(es) x {info.workers_per_process} worker(s)"

    def resumed(self, epoch: int, keys: int, seconds: float) -> None:
        """Note (and log) where the run resumed."""
        self.epoch = self.resume_epoch = epoch
        self.resume_keys, self.resume_seconds = keys, seconds
        log.info("running flow %r: %s, recovery directory %s, resuming at epoch %d with "
                 "%d key(s) loaded in %.3f s", self.info.flow_id, self._shape(),
                 self.info.store, epoch, keys, seconds)
        if self.tracer is not None:
            self.tracer.resumed(epoch, keys, seconds)

    def epoch_started(self, epoch: int) -> None:
        """Note the current epoch."""
        self.epoch = epoch

    def encoded(self, epoch: int, seconds: float) -> None:
        """Keep how long ``epoch``'s cut took until it is committed."""
        with self._lock:
            self._encoded[epoch] = max(seconds, self._encoded.get(epoch, 0.0))
        if self.tracer is not None:
            self.tracer.encoded(epoch)

    def committed(self, epoch: int, seconds: float, size: int, keys: int) -> None:
        """Record a durable epoch."""
        with self._lock:
            encode = self._encoded.pop(epoch, None)
            if encode is not None:
                self.encode_durations.add(encode)
            self.write_durations.add(seconds)
            self.commits.append(Commit(epoch, time.time(), encode, seconds, size, keys))
            self.commit_count += 1
            self.commit_bytes += size
            self.commit_keys += keys
            self.committed_epoch = epoch
        if self.tracer is not None:
            self.tracer.committed(epoch, seconds, size, keys, encode)

    def restarted(self, restarts: int, reason: str) -> None:
        """Count a Ray restart; the processes' figures start again."""
        with self._lock:
            self.restarts = restarts
            self._reports.clear()

    # -- the end of the run ---------------------------------------------------------------

    def finished(self, error: str | None = None) -> None:
        """The run is over: it finished, or failed with ``error``."""
        self.state = "finished" if error is None else "failed"
        self.error = error
        if self.tracer is not None:
            self.tracer.finish(error)

    # -- what the API reads ---------------------------------------------------------------

    @property
    def current_epoch(self) -> int | None:
        """The epoch the workers are in (None once the run is over)."""
        if self.state != "running":
            return None
        if self._workers is not None:
            return self._workers.epoch
        return self.epoch

    def samples(self) -> list[ProcessSample]:
        """The latest figures of every process (read now, for this process's workers)."""
        if self._workers is not None:  # the user's metrics are in this process's registry
            return [sample_workers(0, self._workers, self._links)]
        with self._lock:
            return [self._reports[p] for p in sorted(self._reports)]

    def commit_list(self) -> list[Commit]:
        """The last commits, oldest first."""
        with self._lock:
            return list(self.commits)

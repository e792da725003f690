"""``/metrics``: the run's figures as Prometheus metric families, read at scrape time.

Families and labels follow Bytewax's where the concept exists (``item_inp_count_total``
with ``step_id`` and ``worker_index``, the per-step duration histograms), so a Bytewax
dashboard works by changing the prefix; ``--metrics-prefix bytewax`` even spares that.
Every per-step family also has a ``process`` label (the worker process, 0 with one).
docs/observability.md lists every family.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fastflow._observe.observer import Observer
from fastflow._observe.options import DEFAULT_PREFIX
from fastflow._observe.samples import Histogram, ProcessSample
from fastflow._observe.usermetrics import merged
from fastflow._runtime.meter import DURATION_BOUNDS, SIZE_BOUNDS, Buckets

# Core kind -> the family of its batch durations (Bytewax's name where it has one).
_DURATION_FAMILIES = {
    "input": "inp_part_next_batch_duration_seconds",
    "flat_map_batch": "flat_map_batch_duration_seconds",
    "stateful_batch": "stateful_batch_on_batch_duration_seconds",
    "output": "out_part_write_batch_duration_seconds",
}
_OTHER_DURATIONS = "step_batch_duration_seconds"
_STEP_LABELS = ["step_id", "worker_index", "process"]


def _buckets(bounds: tuple[float, ...], histogram: Histogram) -> list[tuple[str, float]]:
    counts, _total = histogram
    out: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        running += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return out


def _of(buckets: Buckets) -> Histogram:
    return list(buckets.counts), buckets.total


def store_bytes(directory: Path | None) -> int | None:
    """Bytes of the store's files now (the partitions and their WAL files)."""
    if directory is None:
        return None
    total = 0
    try:
        for entry in os.scandir(directory):
            if entry.name.startswith("part-") and entry.is_file():
                total += entry.stat().st_size
    except OSError:
        return None
    return total


class RunCollector(Collector):
    """Reads the observer's figures (and the user's metrics) each time it is scraped."""

    def __init__(self, observer: Observer, prefix: str = DEFAULT_PREFIX) -> None:
        self._observer = observer
        self._prefix = prefix.rstrip("_") + "_" if prefix else ""

    def collect(self) -> Iterator[Metric]:
        """Every family, from the figures as they are now."""
        samples = self._observer.samples()
        yield from self._steps(samples)
        yield from self._run(samples)
        yield from merged(s.user_metrics for s in samples)

    def _name(self, name: str) -> str:
        return self._prefix + name

    def _steps(self, samples: list[ProcessSample]) -> Iterator[Metric]:
        kinds = self._observer.info.kinds
        items_in = CounterMetricFamily(self._name("item_inp_count_total"),
                                       "Items a step received", labels=_STEP_LABELS)
        items_out = CounterMetricFamily(self._name("item_out_count_total"),
                                        "Items a step emitted", labels=_STEP_LABELS)
        sizes = HistogramMetricFamily(self._name("inp_part_next_batch_size"),
                                      "Items per next_batch call of a source partition",
                                      labels=_STEP_LABELS)
        live = GaugeMetricFamily(self._name("live_keys"),
                                 "Keys with state in a stateful step", labels=_STEP_LABELS)
        durations: dict[str, HistogramMetricFamily] = {}
        for family in (*_DURATION_FAMILIES.values(), _OTHER_DURATIONS):
            durations[family] = HistogramMetricFamily(
                self._name(family), "Seconds a step took per batch", labels=_STEP_LABELS)
        for sample in samples:
            for step in sample.steps:
                labels = [step.step_id, str(step.worker), str(sample.process)]
                items_in.add_metric(labels, step.items_in)
                items_out.add_metric(labels, step.items_out)
                family = _DURATION_FAMILIES.get(kinds.get(step.step_id, ""), _OTHER_DURATIONS)
                durations[family].add_metric(
                    labels, _buckets(DURATION_BOUNDS, step.durations), step.durations[1])
                if step.sizes is not None:
                    sizes.add_metric(labels, _buckets(SIZE_BOUNDS, step.sizes), step.sizes[1])
                if step.live_keys is not None:
                    live.add_metric(labels, step.live_keys)
        yield items_in
        yield items_out
        yield sizes
        yield from durations.values()
        yield live

    def _run(self, samples: list[ProcessSample]) -> Iterator[Metric]:
        observer = self._observer
        gauge = GaugeMetricFamily
        for name, text, value in (
            ("epoch", "The epoch the run is in", observer.current_epoch),
            ("committed_epoch", "The last epoch committed to the recovery store",
             observer.committed_epoch),
            ("resume_epoch", "The epoch the run resumed at", observer.resume_epoch),
            ("resume_keys", "Keys of state loaded at the resume", observer.resume_keys),
            ("resume_duration_seconds", "Seconds the resume state took to load",
             observer.resume_seconds),
            ("store_bytes", "Bytes of the recovery store's files",
             store_bytes(observer.info.store)),
        ):
            if value is not None:
                yield gauge(self._name(name), text, value=value)
        for name, text, buckets in (
            ("snapshot_duration_seconds", "Seconds to encode an epoch's changes (the cut)",
             observer.encode_durations),
            ("partd_write_duration_seconds", "Seconds to write an epoch's changes to the store",
             observer.write_durations),
        ):
            histogram = HistogramMetricFamily(self._name(name), text)
            histogram.add_metric([], _buckets(DURATION_BOUNDS, _of(buckets)), buckets.total)
            yield histogram
        for name, text, count in (
            ("commits_total", "Epochs committed", observer.commit_count),
            ("commit_bytes_total", "Bytes of change sets committed", observer.commit_bytes),
            ("commit_keys_total", "Keys committed (changed or deleted)", observer.commit_keys),
            ("restarts_total", "Restarts from the store after a Ray actor died",
             observer.restarts),
        ):
            yield CounterMetricFamily(self._name(name), text, value=count)
        sent_items = CounterMetricFamily(self._name("exchange_items_sent_total"),
                                         "Items sent to other processes", labels=["process"])
        sent_bytes = CounterMetricFamily(self._name("exchange_bytes_sent_total"),
                                         "Bytes of batches sent to other processes",
                                         labels=["process"])
        lag = GaugeMetricFamily(self._name("source_lag"),
                                "How far a source partition is behind its input (its lag())",
                                labels=["step_id", "partition", "process"])
        for sample in samples:
            sent_items.add_metric([str(sample.process)], sample.items_sent)
            sent_bytes.add_metric([str(sample.process)], sample.bytes_sent)
            for entry in sample.lags:
                if entry.lag is not None:
                    lag.add_metric([entry.step_id, entry.partition, str(sample.process)],
                                   entry.lag)
        yield sent_items
        yield sent_bytes
        yield lag


def exposition(observer: Observer, prefix: str = DEFAULT_PREFIX) -> bytes:
    """The Prometheus text of the run's metrics and the user's, now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(observer, prefix))
    return generate_latest(registry)

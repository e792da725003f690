"""The user's own ``prometheus_client`` metrics, summed over the processes of a run.

A flow file's ``Counter("x", ...)`` lives in the default registry of every process that
imported it; under ``-p N`` or Ray each worker process counts its own part. Each worker
process exports its registry as plain data with its reports; the coordinator adds the
samples that have the same name and labels (a counter's or histogram's total over the
processes; a gauge's sum). The interpreter's own figures (``process_*``, ``python_*``)
are the coordinator's only: summing start times or memory of several processes would
mean nothing.
"""

from __future__ import annotations

import copyreg
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

ExportedFamily = tuple[str, str, str, str, list[tuple[str, dict[str, str], float]]]
"""``(name, type, documentation, unit, [(sample name, labels, value)])``."""

_OWN_PREFIXES = ("process_", "python_")


def export(*, own_figures: bool = False) -> list[ExportedFamily]:
    """The process's default registry; the interpreter's own figures only if asked."""
    return [
        (family.name, family.type, family.documentation, family.unit,
         [(s.name, dict(s.labels), s.value) for s in family.samples])
        for family in REGISTRY.collect()
        if own_figures or not family.name.startswith(_OWN_PREFIXES)
    ]


def merged(exports: Iterable[list[ExportedFamily]]) -> Iterator[Metric]:
    """The process's default registry, with ``exports`` (other processes') added in."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    own = export(own_figures=True)
    for exported in [own, *exports]:
        for name, kind, documentation, unit, samples in exported:
            if name not in families:
                families[name] = Metric(name, documentation, kind, unit)
                values[name] = {}
            into = values[name]
            for sample_name, labels, value in samples:
                key = (sample_name, tuple(sorted(labels.items())))
                if sample_name.endswith("_created"):  # a creation time: keep the earliest
                    into[key] = min(into.get(key, value), value)
                else:
                    into[key] = into.get(key, 0.0) + value
    for name, family in families.items():
        for (sample_name, label_pairs), value in values[name].items():
            family.add_sample(sample_name, dict(label_pairs), value)
        yield family



def _metric_named(kind: type[MetricWrapperBase], name: str, documentation: str,
                  labelnames: tuple[str, ...], unit: str, kwargs: dict[str, Any],
                  labelvalues: tuple[str, ...]) -> MetricWrapperBase:
    """The metric ``name`` of this process's registry, made on first use (see below)."""
    found = REGISTRY._names_to_collectors.get(name)  # noqa: SLF001 - no public lookup
    metric = found if isinstance(found, kind) else kind(
        name, documentation, labelnames, unit=unit, **kwargs)
    return metric.labels(*labelvalues) if labelvalues else metric


def _reduce_metric(metric: MetricWrapperBase) -> tuple[Any, ...]:
    return _metric_named, (type(metric), metric._name, metric._documentation,
                           tuple(metric._labelnames), metric._unit, dict(metric._kwargs),
                           tuple(metric._labelvalues))


def pickle_metrics_by_name() -> None:
    """Pickle the user's metrics as their names, so a Ray actor counts into its own.

    A flow file's module-level ``Counter`` travels to Ray actors with the functions that
    use it (Ray pickles the user's modules by value), and a metric holds a lock, which
    does not pickle. By name, each actor gets (or makes) the metric of that name in its
    own registry; its samples come back with its reports and are summed (:func:`merged`).
    """
    for kind in (Counter, Gauge, Histogram, Summary, Info, Enum):
        copyreg.pickle(kind, _reduce_metric)

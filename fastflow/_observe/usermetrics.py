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

from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY
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


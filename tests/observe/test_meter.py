"""Meters count only when the run is observed (fastflow/_runtime/meter.py, issue 18)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Dict, List, Tuple

import pytest

import fastflow.operators as op
from fastflow import _hooks as hooks
from fastflow._runtime.plan import flatten
from fastflow._runtime.worker import LocalPacer, Workers
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSink, TestingSource


class Metered(hooks.RunHooks):
    @property
    def metered(self) -> bool:
        return True


def run(workers: int, observed: bool) -> Tuple[Workers, List[Any]]:
    out: List[Any] = []
    flow = Dataflow("m")
    numbers = op.input("inp", flow, TestingSource(range(100), 7))
    keyed = op.key_on("k", op.filter("even", numbers, lambda x: x % 2 == 0), lambda x: str(x % 3))
    op.output("out", op.stateful_map("sum", keyed, lambda s, x: ((s or 0) + x, x)),
              TestingSink(out))
    previous = hooks.install(Metered() if observed else hooks.RunHooks())
    try:
        built = Workers(flatten(flow), workers, 1, {}, recording=False)
        built.run(LocalPacer(timedelta(seconds=10), None))
    finally:
        hooks.install(previous)
    return built, out


def totals(workers: Workers) -> Dict[str, Tuple[int, int, int]]:
    """Step id -> items in, items out, batches timed; summed over workers."""
    sums: Dict[str, Tuple[int, int, int]] = {}
    for worker in workers.workers:
        for node in [*worker.inputs, *worker.nodes]:
            meter = node.meter
            i, o, b = sums.get(node.step_id, (0, 0, 0))
            sums[node.step_id] = (i + meter.items_in, o + meter.items_out,
                                  b + meter.durations.count)
    return sums


@pytest.mark.parametrize("workers", [1, 3])
def test_observed_nodes_count_every_item_once_per_batch(workers):
    built, out = run(workers, observed=True)
    assert len(out) == 50
    counted = totals(built)
    assert {step: (i, o) for step, (i, o, _b) in counted.items()} == {
        "m.inp": (0, 100),
        "m.even.flat_map_batch": (100, 50),
        "m.k.flat_map_batch": (50, 50),
        "m.sum.stateful_batch": (50, 50),
        "m.out": (50, 0),
    }
    polls = counted["m.inp"][2]
    assert polls >= 15  # 100 items in batches of 7: 15 polls with items, then the end
    assert counted["m.even.flat_map_batch"][2] == 15  # one timed batch per poll


def test_unobserved_nodes_count_nothing_and_run_unwrapped():
    built, out = run(1, observed=False)
    assert len(out) == 50
    assert set(totals(built).values()) == {(0, 0, 0)}
    for node in built.nodes:
        assert node.push.__func__ is type(node).push  # type: ignore[attr-defined]

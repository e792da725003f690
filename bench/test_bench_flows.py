"""Whole flows on fastflow vs the plain Python loop calling the same user functions.

Each group holds one workload of :mod:`flows` run two ways: ``fastflow``
(``run_main`` on the flow) and ``plain`` (the loop); the ratio of their
times is the engine's overhead over the floor. Inputs are built once per
session, outside the timing; each round gets a fresh flow and output list.
"""

import gc
from functools import cache

import pytest
from engines import load
from flows import BATCH_SIZE, WORKLOADS

pytest.importorskip("pytest_benchmark")

ITEMS = 200_000

CASES = {
    "stateless chain": ("stateless", 0),
    "stateful_map 1k keys": ("keyed_sum", 1000),
    "stateful_map 100k keys": ("keyed_sum", 100_000),
    "fold_final 1k keys": ("fold_final", 1000),
    "join 2 sides": ("join", 0),
}


@cache
def _items(workload, keys):
    return WORKLOADS[workload].items(ITEMS, keys)


def _runner(workload, keys, how):
    """A pedantic ``setup`` making a fresh run, and the ``target`` doing it."""
    spec = WORKLOADS[workload]
    data = _items(workload, keys)
    if how == "plain":
        def setup():
            gc.collect()
            return (data, []), {}

        return setup, spec.plain
    api = load("fastflow")

    def setup():
        gc.collect()
        return (spec.build(api, data, [], BATCH_SIZE),), {}

    return setup, api.run_main


@pytest.mark.parametrize("case", CASES)
def test_fastflow_matches_plain_loop(case):
    workload, keys = CASES[case]
    spec = WORKLOADS[workload]
    data = spec.items(20_000, keys)
    expected, got = [], []
    spec.plain(data, expected)
    load("fastflow").run_main(spec.build(load("fastflow"), data, got, 1000))
    assert sorted(got) == sorted(expected)


@pytest.mark.parametrize("how", ["fastflow", "plain"])
@pytest.mark.parametrize("case", CASES)
def test_flow(benchmark, case, how):
    benchmark.group = f"flow: {case}, {ITEMS:,} items"
    setup, target = _runner(*CASES[case], how)
    benchmark.pedantic(target, setup=setup, rounds=5)

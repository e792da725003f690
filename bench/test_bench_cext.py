"""Each compiled hot path (routing, keyed state loops, stateless loops) vs plain Python.

Every group times the ``fastflow._cext`` function and its plain-Python twin
from ``_py_hotpaths.py`` on the same batch of 10,000 items, calling the same
user functions; ``test_agree`` first checks both give the same result.
"""

import pytest
from flows import double, keep, keyed_numbers, running_sum, split

from fastflow._cext import ops, routing, state

pytest.importorskip("pytest_benchmark")

import _py_hotpaths as py  # noqa: E402

N = 10_000
KEYS = [f"user-{i:06d}" for i in range(N)]
NUMBERS = list(range(N))
PAIRS = {keys: keyed_numbers(N, keys) for keys in (100, 10_000)}


def _add(total, x):
    return total + x


def _zero():
    return 0


def _map_states(impl, keys):
    return impl.map_states({}, set(), PAIRS[keys], running_sum, None, "s")


def _fold_states(impl, keys):
    states = {}
    impl.fold_states(states, set(), PAIRS[keys], _add, _zero, "s")
    return states


# name -> call(impl) for impl in (compiled module, plain module)
HOT_PATHS = {
    "stable_hash": lambda m: [m.stable_hash(k) for k in KEYS],
    "split_by_worker 4 workers": lambda m: m.split_by_worker(PAIRS[10_000], 4, "s"),
    "map_states 100 keys": lambda m: _map_states(m, 100),
    "map_states 10k keys": lambda m: _map_states(m, 10_000),
    "fold_states 100 keys": lambda m: _fold_states(m, 100),
    "map_items": lambda m: m.map_items(double, NUMBERS),
    "filter_items": lambda m: m.filter_items(keep, NUMBERS, "s"),
    "flat_map_items": lambda m: m.flat_map_items(split, NUMBERS),
}
COMPILED = {
    "stable_hash": routing,
    "split_by_worker": routing,
    "map_states": state,
    "fold_states": state,
    "map_items": ops,
    "filter_items": ops,
    "flat_map_items": ops,
}


def _compiled(name):
    return COMPILED[name.split()[0]]


@pytest.mark.parametrize("name", HOT_PATHS)
def test_agree(name):
    call = HOT_PATHS[name]
    assert call(_compiled(name)) == call(py)


@pytest.mark.parametrize("impl", ["cython", "python"])
@pytest.mark.parametrize("name", HOT_PATHS)
def test_hot_path(benchmark, name, impl):
    benchmark.group = f"hot path: {name}, {N:,} items"
    module = _compiled(name) if impl == "cython" else py
    benchmark(HOT_PATHS[name], module)

"""The benchmark workloads: one flow per workload, written once for both engines.

Every workload has three parts:

- ``items(n, keys)``: its input, built before any timing starts;
- ``build(api, items, out, batch_size)``: the flow, written against the names
  of :mod:`engines` so the *same* code runs on fastflow and on Bytewax, fed by
  ``TestingSource(items, batch_size)`` and collecting into ``TestingSink(out)``;
- ``plain(items, out)``: a plain Python loop that calls the same user functions
  and collects the same output (as a multiset): the floor any engine can reach.

The user functions are module-level so all three parts share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

BATCH_SIZE = 10_000
"""Items per ``TestingSource`` batch, the same for every engine."""

# The user functions.


def double(x: int) -> int:
    return x * 2


def keep(x: int) -> bool:
    return x % 3 != 0


def split(x: int) -> Tuple[int, int]:
    return (x, x + 1)


def running_sum(total: Optional[int], x: int) -> Tuple[int, int]:
    total = x if total is None else total + x
    return total, total


def zero() -> int:
    return 0


def add(total: int, x: int) -> int:
    return total + x


# Inputs.

Pairs = List[Tuple[str, int]]


def numbers(n: int, keys: int) -> List[int]:
    return list(range(n))


def keyed_numbers(n: int, keys: int) -> Pairs:
    """``n`` ``(key, value)`` pairs cycling over ``keys`` distinct keys."""
    names = [f"k{i}" for i in range(keys)]
    return [(names[i % keys], i) for i in range(n)]


def two_sides(n: int, keys: int) -> Tuple[Pairs, Pairs]:
    """Two inputs of ``n // 2`` pairs each, key ``i`` on both sides."""
    half = n // 2
    return [(f"k{i}", i) for i in range(half)], [(f"k{i}", -i) for i in range(half)]


# Flows and their plain loops.


def stateless_chain(api: Any, items: List[int], out: List[Any], batch_size: int) -> Any:
    """map -> filter -> flat_map: a fused stateless chain."""
    flow = api.Dataflow("stateless_chain")
    s = api.op.input("inp", flow, api.TestingSource(items, batch_size=batch_size))
    s = api.op.map("double", s, double)
    s = api.op.filter("keep", s, keep)
    s = api.op.flat_map("split", s, split)
    api.op.output("out", s, api.TestingSink(out))
    return flow


def plain_stateless_chain(items: List[int], out: List[Any]) -> None:
    for x in items:
        y = double(x)
        if keep(y):
            out.extend(split(y))


def keyed_sum(api: Any, items: Pairs, out: List[Any], batch_size: int) -> Any:
    """A running sum per key with ``stateful_map``."""
    flow = api.Dataflow("keyed_sum")
    s = api.op.input("inp", flow, api.TestingSource(items, batch_size=batch_size))
    s = api.op.stateful_map("sum", s, running_sum)
    api.op.output("out", s, api.TestingSink(out))
    return flow


def plain_keyed_sum(items: Pairs, out: List[Any]) -> None:
    states: Dict[str, Any] = {}
    for key, value in items:
        state, emit = running_sum(states.get(key), value)
        if state is None:
            states.pop(key, None)
        else:
            states[key] = state
        out.append((key, emit))


def fold_total(api: Any, items: Pairs, out: List[Any], batch_size: int) -> Any:
    """A total per key with ``fold_final``, emitted at the end of input."""
    flow = api.Dataflow("fold_total")
    s = api.op.input("inp", flow, api.TestingSource(items, batch_size=batch_size))
    s = api.op.fold_final("total", s, zero, add)
    api.op.output("out", s, api.TestingSink(out))
    return flow


def plain_fold_total(items: Pairs, out: List[Any]) -> None:
    totals: Dict[str, int] = {}
    for key, value in items:
        totals[key] = add(totals[key] if key in totals else zero(), value)
    out.extend(sorted(totals.items()))


def join_sides(api: Any, items: Tuple[Pairs, Pairs], out: List[Any], batch_size: int) -> Any:
    """Join two keyed inputs (emit each key once both sides have a value)."""
    left, right = items
    flow = api.Dataflow("join_sides")
    lhs = api.op.input("left", flow, api.TestingSource(left, batch_size=batch_size))
    rhs = api.op.input("right", flow, api.TestingSource(right, batch_size=batch_size))
    s = api.op.join("join", lhs, rhs)
    api.op.output("out", s, api.TestingSink(out))
    return flow


def plain_join_sides(items: Tuple[Pairs, Pairs], out: List[Any]) -> None:
    waiting: Dict[str, List[Any]] = {}
    for side, pairs in enumerate(items):
        for key, value in pairs:
            row = waiting.get(key)
            if row is None:
                row = waiting[key] = [None, None]
            row[side] = value
            if None not in row:
                out.append((key, tuple(row)))
                del waiting[key]


@dataclass(frozen=True)
class Workload:
    """A flow, its input and its plain-loop floor."""

    items: Callable[[int, int], Any]
    build: Callable[[Any, Any, List[Any], int], Any]
    plain: Callable[[Any, List[Any]], None]


WORKLOADS: Dict[str, Workload] = {
    "stateless": Workload(numbers, stateless_chain, plain_stateless_chain),
    "keyed_sum": Workload(keyed_numbers, keyed_sum, plain_keyed_sum),
    "fold_final": Workload(keyed_numbers, fold_total, plain_fold_total),
    "join": Workload(two_sides, join_sides, plain_join_sides),
}

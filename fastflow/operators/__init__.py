"""Operators: the steps a dataflow is made of.

Eight *core* operators (:func:`input`, :func:`output`, :func:`flat_map_batch`,
:func:`branch`, :func:`merge`, :func:`redistribute`, :func:`stateful_batch`,
:func:`inspect_debug`) are what the engine runs; every other operator here is
composed from them. The stateless ones hand the engine a function over a whole
batch (a compiled loop from ``fastflow._cext.ops``), so composing costs
nothing per item.

Each example below runs as a doctest; they share this setup:

>>> import fastflow.operators as op
>>> from fastflow.dataflow import Dataflow
>>> from fastflow.testing import TestingSource, run_main
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, TypeVar, overload

from fastflow._cext import ops as _ops
from fastflow._contracts import ExpiringBuilder, check_ttl
from fastflow.dataflow import Dataflow, KeyedStream, Stream, _core_step, operator
from fastflow.inputs import Source
from fastflow.operators._join import (
    JoinEmitMode,
    JoinInsertMode,
    JoinState,
    check_join,
)
from fastflow.operators._logic import (
    FoldBuilder,
    ItemsAsBatch,
    MapBuilder,
    StatefulBatchLogic,
    StatefulLogic,
)
from fastflow.operators._time import shift
from fastflow.operators._util import add, identity, utc_now, zero
from fastflow.outputs import DynamicSink, Sink, StatelessSinkPartition

__all__ = [
    "BranchOut",
    "JoinEmitMode",
    "JoinInsertMode",
    "StatefulBatchLogic",
    "StatefulLogic",
    "TTLCache",
    "branch",
    "collect",
    "count_final",
    "enrich_cached",
    "filter",
    "filter_map",
    "filter_map_value",
    "filter_value",
    "flat_map",
    "flat_map_batch",
    "flat_map_value",
    "flatten",
    "fold_final",
    "input",
    "inspect",
    "inspect_debug",
    "join",
    "key_on",
    "key_rm",
    "map",
    "map_value",
    "max_final",
    "merge",
    "min_final",
    "output",
    "raises",
    "redistribute",
    "reduce_final",
    "stateful",
    "stateful_batch",
    "stateful_flat_map",
    "stateful_map",
]

X = TypeVar("X")
Y = TypeVar("Y")
K = TypeVar("K")
V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")

def _check_stream(name: str, value: Any) -> None:
    if not isinstance(value, Stream):
        raise TypeError(
            f"{name!r} argument must be a `Stream`; got {value!r} of type "
            f"{type(value).__name__!r}; did you forget to unpack the result of an "
            "operator that returns several streams?"
        )


def _check_callable(step_id: str, name: str, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{name!r} of step {step_id!r} must be callable; got {value!r}")


# Core operators: the engine runs exactly these.


@operator(_core=True)
def input(  # noqa: A001 - Bytewax's name
    step_id: str, flow: Dataflow, source: Source[X]
) -> Stream[X]:
    """Read items from a source into the dataflow.

    >>> flow = Dataflow("input_eg")
    >>> _ = op.inspect("show", op.input("inp", flow, TestingSource(["a", "b"])))
    >>> run_main(flow)
    input_eg.show: 'a'
    input_eg.show: 'b'
    """
    if not isinstance(flow, Dataflow):
        raise TypeError(f"'flow' argument must be a `Dataflow`; got {type(flow).__name__!r}")
    if not isinstance(source, Source):
        raise TypeError(
            f"source of step {step_id!r} must subclass `fastflow.inputs.Source`; "
            f"got {type(source).__name__!r}"
        )
    return _core_step("input", [], ("down",), source=source)[0]


@operator(_core=True)
def output(step_id: str, up: Stream[X], sink: Sink[X]) -> None:
    """Write a stream's items to a sink.

    >>> from fastflow.connectors.stdio import StdOutSink
    >>> flow = Dataflow("output_eg")
    >>> op.output("out", op.input("inp", flow, TestingSource([1, 2])), StdOutSink())
    >>> run_main(flow)
    1
    2
    """
    _check_stream("up", up)
    if not isinstance(sink, Sink):
        raise TypeError(
            f"sink of step {step_id!r} must subclass `fastflow.outputs.Sink`; "
            f"got {type(sink).__name__!r}"
        )
    _core_step("output", [up], (), sink=sink)


@operator(_core=True)
def flat_map_batch(
    step_id: str, up: Stream[X], mapper: Callable[[list[X]], Iterable[Y]]
) -> Stream[Y]:
    """Transform whole batches: ``mapper`` gets a list of items, returns items to emit.

    >>> flow = Dataflow("fmb_eg")
    >>> s = op.input("inp", flow, TestingSource([1, 2, 3], batch_size=2))
    >>> _ = op.inspect("show", op.flat_map_batch("sums", s, lambda xs: [sum(xs)]))
    >>> run_main(flow)
    fmb_eg.show: 3
    fmb_eg.show: 3
    """
    _check_stream("up", up)
    _check_callable(step_id, "mapper", mapper)
    return _core_step("flat_map_batch", [up], ("down",), mapper=mapper)[0]


@dataclass(frozen=True)
class BranchOut(Generic[X, Y]):
    """The two streams of :func:`branch`."""

    trues: Stream[X]
    falses: Stream[Y]


@operator(_core=True)
def branch(step_id: str, up: Stream[X], predicate: Callable[[X], bool]) -> BranchOut[X, X]:
    """Split a stream in two by a predicate that returns a ``bool``.

    >>> flow = Dataflow("branch_eg")
    >>> nums = op.input("inp", flow, TestingSource([1, 2, 3]))
    >>> parts = op.branch("even", nums, lambda x: x % 2 == 0)
    >>> _ = op.inspect("evens", parts.trues)
    >>> _ = op.inspect("odds", parts.falses)
    >>> run_main(flow)
    branch_eg.odds: 1
    branch_eg.evens: 2
    branch_eg.odds: 3
    """
    _check_stream("up", up)
    _check_callable(step_id, "predicate", predicate)
    trues, falses = _core_step("branch", [up], ("trues", "falses"), predicate=predicate)
    return BranchOut(trues, falses)


@operator(_core=True)
def merge(step_id: str, *ups: Stream[Any]) -> Stream[Any]:
    """Combine several streams into one.

    >>> flow = Dataflow("merge_eg")
    >>> a = op.input("a", flow, TestingSource([1]))
    >>> b = op.input("b", flow, TestingSource([2]))
    >>> _ = op.inspect("show", op.merge("both", a, b))
    >>> run_main(flow)
    merge_eg.show: 1
    merge_eg.show: 2
    """
    for up in ups:
        _check_stream("ups", up)
    return _core_step("merge", list(ups), ("down",))[0]


@operator(_core=True)
def redistribute(step_id: str, up: Stream[X]) -> Stream[X]:
    """Spread items evenly over the workers (with one worker, a pass-through).

    >>> flow = Dataflow("redist_eg")
    >>> s = op.redistribute("spread", op.input("inp", flow, TestingSource([1])))
    >>> _ = op.inspect("show", s)
    >>> run_main(flow)
    redist_eg.show: 1
    """
    _check_stream("up", up)
    return _core_step("redistribute", [up], ("down",))[0]


@operator(_core=True)
def stateful_batch(
    step_id: str,
    up: KeyedStream[V],
    builder: Callable[[S | None], StatefulBatchLogic[V, W, S]],
) -> KeyedStream[W]:
    """Run a :class:`StatefulBatchLogic` per key; the most general stateful operator.

    ``builder(resume_state)`` makes a key's logic: ``resume_state`` is what its
    ``snapshot()`` returned before a restart, or ``None`` for a new key.

    >>> class Count(StatefulBatchLogic):
    ...     def __init__(self, n):
    ...         self.n = n or 0
    ...     def on_batch(self, values):
    ...         self.n += len(values)
    ...         return [self.n], self.RETAIN
    ...     def snapshot(self):
    ...         return self.n
    >>> flow = Dataflow("sb_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 1), ("b", 1)]))
    >>> _ = op.inspect("show", op.stateful_batch("count", s, Count))
    >>> run_main(flow)
    sb_eg.show: ('a', 1)
    sb_eg.show: ('a', 2)
    sb_eg.show: ('b', 1)
    """
    _check_stream("up", up)
    _check_callable(step_id, "builder", builder)
    return _core_step("stateful_batch", [up], ("down",), builder=builder)[0]


def _print_debug(step_id: str, item: Any, epoch: int, worker_index: int) -> None:
    print(f"{step_id} W{worker_index} @{epoch}: {item!r}", flush=True)


@operator(_core=True)
def inspect_debug(
    step_id: str,
    up: Stream[X],
    inspector: Callable[[str, X, int, int], None] = _print_debug,
) -> Stream[X]:
    """Call ``inspector(step_id, item, epoch, worker_index)`` on every item; pass items on.

    >>> flow = Dataflow("insp_dbg_eg")
    >>> s = op.inspect_debug("dbg", op.input("inp", flow, TestingSource(["x"])))
    >>> run_main(flow)
    insp_dbg_eg.dbg W0 @1: 'x'
    """
    _check_stream("up", up)
    _check_callable(step_id, "inspector", inspector)
    return _core_step("inspect_debug", [up], ("down",), inspector=inspector)[0]


# Stateless operators, composed from flat_map_batch.


@operator
def flat_map(step_id: str, up: Stream[X], mapper: Callable[[X], Iterable[Y]]) -> Stream[Y]:
    """Emit every item of the iterable ``mapper`` returns for each item.

    >>> flow = Dataflow("flat_map_eg")
    >>> s = op.input("inp", flow, TestingSource(["a b", "c"]))
    >>> _ = op.inspect("show", op.flat_map("split", s, str.split))
    >>> run_main(flow)
    flat_map_eg.show: 'a'
    flat_map_eg.show: 'b'
    flat_map_eg.show: 'c'
    """
    _check_callable(step_id, "mapper", mapper)
    return flat_map_batch("flat_map_batch", up, lambda xs: _ops.flat_map_items(mapper, xs))


@operator
def map(step_id: str, up: Stream[X], mapper: Callable[[X], Y]) -> Stream[Y]:  # noqa: A001
    """Replace every item with ``mapper(item)``.

    >>> flow = Dataflow("map_eg")
    >>> s = op.input("inp", flow, TestingSource([1, 2]))
    >>> _ = op.inspect("show", op.map("double", s, lambda x: x * 2))
    >>> run_main(flow)
    map_eg.show: 2
    map_eg.show: 4
    """
    _check_callable(step_id, "mapper", mapper)
    return flat_map_batch("flat_map_batch", up, lambda xs: _ops.map_items(mapper, xs))


@operator
def filter(  # noqa: A001
    step_id: str, up: Stream[X], predicate: Callable[[X], bool]
) -> Stream[X]:
    """Keep the items for which ``predicate`` returns ``True`` (it must return a ``bool``).

    >>> flow = Dataflow("filter_eg")
    >>> s = op.input("inp", flow, TestingSource([1, 2, 3, 4]))
    >>> _ = op.inspect("show", op.filter("even", s, lambda x: x % 2 == 0))
    >>> run_main(flow)
    filter_eg.show: 2
    filter_eg.show: 4
    """
    _check_callable(step_id, "predicate", predicate)
    full_id = up._scope.parent_id
    return flat_map_batch(
        "flat_map_batch", up, lambda xs: _ops.filter_items(predicate, xs, full_id)
    )


@operator
def filter_map(step_id: str, up: Stream[X], mapper: Callable[[X], Y | None]) -> Stream[Y]:
    """Map every item and drop the ``None`` results.

    >>> flow = Dataflow("filter_map_eg")
    >>> s = op.input("inp", flow, TestingSource(["1", "x", "3"]))
    >>> _ = op.inspect("show", op.filter_map("parse", s, lambda s: int(s) if s.isdigit() else None))
    >>> run_main(flow)
    filter_map_eg.show: 1
    filter_map_eg.show: 3
    """
    _check_callable(step_id, "mapper", mapper)
    return flat_map_batch("flat_map_batch", up, lambda xs: _ops.filter_map_items(mapper, xs))


@operator
def flatten(step_id: str, up: Stream[Iterable[X]]) -> Stream[X]:
    """Emit the items of every iterable item.

    >>> flow = Dataflow("flatten_eg")
    >>> s = op.input("inp", flow, TestingSource([[1, 2], [], [3]]))
    >>> _ = op.inspect("show", op.flatten("flat", s))
    >>> run_main(flow)
    flatten_eg.show: 1
    flatten_eg.show: 2
    flatten_eg.show: 3
    """
    return flat_map_batch("flat_map_batch", up, lambda xs: list(itertools.chain.from_iterable(xs)))


@operator
def key_on(step_id: str, up: Stream[X], key: Callable[[X], str]) -> KeyedStream[X]:
    """Pair every item with the ``str`` key ``key(item)``, as keyed operators need.

    >>> flow = Dataflow("key_on_eg")
    >>> s = op.input("inp", flow, TestingSource([{"user": "ann", "n": 1}]))
    >>> _ = op.inspect("show", op.key_on("by_user", s, lambda e: e["user"]))
    >>> run_main(flow)
    key_on_eg.show: ('ann', {'user': 'ann', 'n': 1})
    """
    _check_callable(step_id, "key", key)
    full_id = up._scope.parent_id
    return flat_map_batch("flat_map_batch", up, lambda xs: _ops.key_on_items(key, xs, full_id))


@operator
def key_rm(step_id: str, up: KeyedStream[X]) -> Stream[X]:
    """Drop the keys of a keyed stream.

    >>> flow = Dataflow("key_rm_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1)]))
    >>> _ = op.inspect("show", op.key_rm("unkey", s))
    >>> run_main(flow)
    key_rm_eg.show: 1
    """
    full_id = up._scope.parent_id
    return flat_map_batch("flat_map_batch", up, lambda xs: _ops.key_rm_items(xs, full_id))


@operator
def map_value(step_id: str, up: KeyedStream[V], mapper: Callable[[V], W]) -> KeyedStream[W]:
    """Map the value of every ``(key, value)`` pair, keeping the key.

    >>> flow = Dataflow("map_value_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1)]))
    >>> _ = op.inspect("show", op.map_value("inc", s, lambda v: v + 1))
    >>> run_main(flow)
    map_value_eg.show: ('a', 2)
    """
    _check_callable(step_id, "mapper", mapper)
    full_id = up._scope.parent_id
    return flat_map_batch(
        "flat_map_batch", up, lambda xs: _ops.map_value_items(mapper, xs, full_id)
    )


@operator
def filter_value(
    step_id: str, up: KeyedStream[V], predicate: Callable[[V], bool]
) -> KeyedStream[V]:
    """Keep the ``(key, value)`` pairs whose value passes ``predicate``.

    >>> flow = Dataflow("filter_value_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("b", -1)]))
    >>> _ = op.inspect("show", op.filter_value("pos", s, lambda v: v > 0))
    >>> run_main(flow)
    filter_value_eg.show: ('a', 1)
    """
    _check_callable(step_id, "predicate", predicate)
    full_id = up._scope.parent_id
    return flat_map_batch(
        "flat_map_batch", up, lambda xs: _ops.filter_value_items(predicate, xs, full_id)
    )


@operator
def filter_map_value(
    step_id: str, up: KeyedStream[V], mapper: Callable[[V], W | None]
) -> KeyedStream[W]:
    """Map the value of every pair, dropping pairs whose new value is ``None``.

    >>> flow = Dataflow("fmv_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", "1"), ("b", "x")]))
    >>> parsed = op.filter_map_value("parse", s, lambda v: int(v) if v.isdigit() else None)
    >>> _ = op.inspect("show", parsed)
    >>> run_main(flow)
    fmv_eg.show: ('a', 1)
    """
    _check_callable(step_id, "mapper", mapper)
    full_id = up._scope.parent_id
    return flat_map_batch(
        "flat_map_batch", up, lambda xs: _ops.filter_map_value_items(mapper, xs, full_id)
    )


@operator
def flat_map_value(
    step_id: str, up: KeyedStream[V], mapper: Callable[[V], Iterable[W]]
) -> KeyedStream[W]:
    """Pair the key of every pair with each value of ``mapper(value)``.

    >>> flow = Dataflow("flat_map_value_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 2)]))
    >>> _ = op.inspect("show", op.flat_map_value("range", s, range))
    >>> run_main(flow)
    flat_map_value_eg.show: ('a', 0)
    flat_map_value_eg.show: ('a', 1)
    """
    _check_callable(step_id, "mapper", mapper)
    full_id = up._scope.parent_id
    return flat_map_batch(
        "flat_map_batch", up, lambda xs: _ops.flat_map_value_items(mapper, xs, full_id)
    )


def _print_item(step_id: str, item: Any) -> None:
    print(f"{step_id}: {item!r}", flush=True)


@operator
def inspect(
    step_id: str, up: Stream[X], inspector: Callable[[str, X], None] = _print_item
) -> Stream[X]:
    """Call ``inspector(step_id, item)`` on every item (by default, print it); pass items on.

    >>> flow = Dataflow("inspect_eg")
    >>> s = op.inspect("show", op.input("inp", flow, TestingSource([1])))
    >>> run_main(flow)
    inspect_eg.show: 1
    """
    _check_callable(step_id, "inspector", inspector)
    full_id = up._scope.parent_id
    return inspect_debug(
        "inspect_debug", up, lambda _step_id, item, _epoch, _worker: inspector(full_id, item)
    )


class _RaisesSink(DynamicSink[Any]):
    """Output of :func:`raises`: any item is an error."""

    def __init__(self, step_id: str) -> None:
        self._step_id = step_id

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RaisesPartition:
        return _RaisesPartition(self._step_id)


class _RaisesPartition(StatelessSinkPartition[Any]):
    def __init__(self, step_id: str) -> None:
        self._step_id = step_id

    def write_batch(self, items: list[Any]) -> None:
        raise RuntimeError(f"`raises` step {self._step_id!r} got an item: {items[0]!r}")


@operator
def raises(step_id: str, up: Stream[Any]) -> None:
    """Fail the run if any item reaches this step: marks a stream that must stay empty.

    >>> flow = Dataflow("raises_eg")
    >>> op.raises("never", op.input("inp", flow, TestingSource([])))
    >>> run_main(flow)
    """
    output("output", up, _RaisesSink(up._scope.parent_id))


# Stateful operators, composed from stateful_batch.


@operator
def stateful(
    step_id: str,
    up: KeyedStream[V],
    builder: Callable[[S | None], StatefulLogic[V, W, S]],
    ttl: timedelta | None = None,
) -> KeyedStream[W]:
    """Run a :class:`StatefulLogic` per key, one value at a time.

    ``ttl`` (a fastflow extension): discard a key's logic, uncalled, once no
    value reached it for that long (see :func:`stateful_map`).

    >>> class Dedupe(StatefulLogic):
    ...     def __init__(self, seen):
    ...         self.seen = set(seen or ())
    ...     def on_item(self, value):
    ...         new = value not in self.seen
    ...         self.seen.add(value)
    ...         return ([value] if new else []), self.RETAIN
    ...     def snapshot(self):
    ...         return self.seen
    >>> flow = Dataflow("stateful_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 1), ("a", 2)]))
    >>> _ = op.inspect("show", op.stateful("dedupe", s, Dedupe))
    >>> run_main(flow)
    stateful_eg.show: ('a', 1)
    stateful_eg.show: ('a', 2)
    """
    _check_callable(step_id, "builder", builder)
    expiry = check_ttl(step_id, ttl)

    def per_key(resume: S | None) -> ItemsAsBatch[V, W, S]:
        return ItemsAsBatch(builder, resume)

    return stateful_batch(
        "stateful_batch", up, per_key if expiry is None else ExpiringBuilder(per_key, expiry)
    )


@overload
def stateful_map(
    step_id: str,
    up: KeyedStream[V],
    mapper: Callable[[S | None, V], tuple[S | None, W]],
    *,
    ttl: timedelta | None = None,
) -> KeyedStream[W]: ...


@overload
def stateful_map(
    step_id: str,
    up: KeyedStream[V],
    builder: Callable[[], S],
    mapper: Callable[[S, V], tuple[S | None, W]],
    /,
    *,
    ttl: timedelta | None = None,
) -> KeyedStream[W]: ...


# The overloads give the result type; the implementation returns KeyedStream[Any] because
# mypy cannot match a TypeVar used only in the result through @operator's ParamSpec.
@operator
def stateful_map(
    step_id: str, up: KeyedStream[V], mapper: Any, *legacy: Any, ttl: timedelta | None = None
) -> KeyedStream[Any]:
    """Keep a state per key: ``mapper(state, value)`` returns ``(new_state, emit)``.

    A new key's state is ``None``; returning ``None`` as the new state forgets
    the key. The older form ``stateful_map(step_id, up, builder, mapper)`` is
    accepted too: there ``builder()`` makes a new key's first state.

    ``ttl`` (a fastflow extension over Bytewax's API): forget a key once no
    value reached it for that long (system time, checked at the end of each
    epoch), so a flow over an unbounded key space keeps a bounded state and
    store. The time of a key's last value is snapshotted with its state and
    survives a resume (docs/recovery.md, "State TTL").

    >>> flow = Dataflow("running_sum")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("b", 5), ("a", 2)]))
    >>> _ = op.inspect("show", op.stateful_map("sum", s, lambda acc, x: ((acc or 0) + x,) * 2))
    >>> run_main(flow)
    running_sum.show: ('a', 1)
    running_sum.show: ('b', 5)
    running_sum.show: ('a', 3)

    The builder form:

    >>> flow = Dataflow("legacy_sum")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2)]))
    >>> def add(acc, x):
    ...     return acc + x, acc + x
    >>> _ = op.inspect("show", op.stateful_map("sum", s, lambda: 0, add))
    >>> run_main(flow)
    legacy_sum.show: ('a', 1)
    legacy_sum.show: ('a', 3)
    """
    init = None
    if legacy:
        if len(legacy) > 1:
            raise TypeError(
                f"stateful_map step {step_id!r} takes (step_id, up, mapper) or "
                f"(step_id, up, builder, mapper); got {3 + len(legacy)} arguments"
            )
        init, mapper = mapper, legacy[0]
        _check_callable(step_id, "builder", init)
    _check_callable(step_id, "mapper", mapper)
    builder = MapBuilder(mapper, init, flat=False, ttl=check_ttl(step_id, ttl))
    return stateful_batch("stateful_batch", up, builder)


@operator
def stateful_flat_map(
    step_id: str,
    up: KeyedStream[V],
    mapper: Callable[[S | None, V], tuple[S | None, Iterable[W]]],
    ttl: timedelta | None = None,
) -> KeyedStream[W]:
    """Like :func:`stateful_map`, but emit every item of the iterable ``mapper`` returns.

    ``ttl``: as in :func:`stateful_map`.

    >>> flow = Dataflow("sfm_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", "x"), ("a", "y")]))
    >>> def seen(state, v):
    ...     state = (state or []) + [v]
    ...     return state, [len(state)] * len(state)
    >>> _ = op.inspect("show", op.stateful_flat_map("seen", s, seen))
    >>> run_main(flow)
    sfm_eg.show: ('a', 1)
    sfm_eg.show: ('a', 2)
    sfm_eg.show: ('a', 2)
    """
    _check_callable(step_id, "mapper", mapper)
    builder = MapBuilder(mapper, None, flat=True, ttl=check_ttl(step_id, ttl))
    return stateful_batch("stateful_batch", up, builder)


@operator
def fold_final(
    step_id: str,
    up: KeyedStream[V],
    builder: Callable[[], S],
    folder: Callable[[S, V], S],
) -> KeyedStream[S]:
    """Fold each key's values into an accumulator, emitted when the input ends.

    >>> flow = Dataflow("fold_eg")
    >>> s = op.input("inp", flow, TestingSource([("b", 1), ("a", 2), ("b", 3)]))
    >>> _ = op.inspect("show", op.fold_final("sum", s, lambda: 0, lambda acc, x: acc + x))
    >>> run_main(flow)
    fold_eg.show: ('a', 2)
    fold_eg.show: ('b', 4)
    """
    _check_callable(step_id, "builder", builder)
    _check_callable(step_id, "folder", folder)
    return stateful_batch("stateful_batch", up, FoldBuilder(folder, builder))


@operator
def reduce_final(
    step_id: str, up: KeyedStream[V], reducer: Callable[[V, V], V]
) -> KeyedStream[V]:
    """Combine each key's values pairwise, emitting the result when the input ends.

    >>> flow = Dataflow("reduce_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", "x"), ("a", "y")]))
    >>> _ = op.inspect("show", op.reduce_final("cat", s, lambda a, b: a + b))
    >>> run_main(flow)
    reduce_eg.show: ('a', 'xy')
    """
    _check_callable(step_id, "reducer", reducer)
    return stateful_batch("stateful_batch", up, FoldBuilder(reducer, None))


@operator
def count_final(step_id: str, up: Stream[X], key: Callable[[X], str]) -> KeyedStream[int]:
    """Count the items per ``key(item)``, emitted when the input ends.

    >>> flow = Dataflow("count_eg")
    >>> s = op.input("inp", flow, TestingSource(["x", "y", "x"]))
    >>> _ = op.inspect("show", op.count_final("count", s, lambda w: w))
    >>> run_main(flow)
    count_eg.show: ('x', 2)
    count_eg.show: ('y', 1)
    """
    keyed = key_on("key", up, key)
    ones = map_value("one", keyed, lambda _item: 1)
    return stateful_batch("stateful_batch", ones, FoldBuilder(add, zero))


@operator
def max_final(
    step_id: str, up: KeyedStream[V], by: Callable[[V], Any] = identity
) -> KeyedStream[V]:
    """Emit each key's largest value (by ``by(value)``; the first on ties) at the end.

    >>> flow = Dataflow("max_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 3), ("a", 5), ("a", 4)]))
    >>> _ = op.inspect("show", op.max_final("max", s))
    >>> run_main(flow)
    max_eg.show: ('a', 5)
    """
    return reduce_final("reduce_final", up, lambda a, b: b if by(b) > by(a) else a)


@operator
def min_final(
    step_id: str, up: KeyedStream[V], by: Callable[[V], Any] = identity
) -> KeyedStream[V]:
    """Emit each key's smallest value (by ``by(value)``; the first on ties) at the end.

    >>> flow = Dataflow("min_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 3), ("a", 1), ("a", 4)]))
    >>> _ = op.inspect("show", op.min_final("min", s))
    >>> run_main(flow)
    min_eg.show: ('a', 1)
    """
    return reduce_final("reduce_final", up, lambda a, b: b if by(b) < by(a) else a)


class _CollectLogic(StatefulBatchLogic[V, list[V], tuple[list[V], datetime | None]]):
    """Buffer a key's values until ``max_size`` of them, or ``timeout`` after the first."""

    def __init__(
        self,
        timeout: timedelta,
        max_size: int,
        resume: tuple[list[V], datetime | None] | None,
    ) -> None:
        self._timeout = timeout
        self._max_size = max_size
        self._buffer, self._due = resume if resume is not None else ([], None)

    def on_batch(self, values: list[V]) -> tuple[Iterable[list[V]], bool]:
        emits: list[list[V]] = []
        for value in values:
            if self._due is None:
                self._due = shift(utc_now(), self._timeout)  # timedelta.max: forever
            self._buffer.append(value)
            if len(self._buffer) >= self._max_size:
                emits.append(self._buffer)
                self._buffer, self._due = [], None
        return emits, not self._buffer

    def on_notify(self) -> tuple[Iterable[list[V]], bool]:
        return self.on_eof()

    def on_eof(self) -> tuple[Iterable[list[V]], bool]:
        emits, self._buffer, self._due = [self._buffer], [], None
        return emits, self.DISCARD

    def notify_at(self) -> datetime | None:
        return self._due

    def snapshot(self) -> tuple[list[V], datetime | None]:
        return (list(self._buffer), self._due)


@operator
def collect(
    step_id: str, up: KeyedStream[V], timeout: timedelta, max_size: int
) -> KeyedStream[list[V]]:
    """Gather each key's values into lists of ``max_size``, or what came within ``timeout``.

    A list is emitted when it is full, ``timeout`` after its first value, or at
    the end of input.

    >>> flow = Dataflow("collect_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ("a", 3)]))
    >>> _ = op.inspect("show", op.collect("pairs", s, timedelta(seconds=10), 2))
    >>> run_main(flow)
    collect_eg.show: ('a', [1, 2])
    collect_eg.show: ('a', [3])
    """
    if max_size < 1:
        raise ValueError(f"collect step {step_id!r} needs max_size >= 1; got {max_size}")
    return stateful_batch(
        "stateful_batch", up, lambda resume: _CollectLogic(timeout, max_size, resume)
    )


class _JoinLogic(StatefulBatchLogic[tuple[int, Any], tuple[Any, ...], list[list[Any]]]):
    """One key's :class:`JoinState`, emitting as values come and at end of input."""

    def __init__(self, state: JoinState) -> None:
        self._state = state

    def on_batch(self, values: list[tuple[int, Any]]) -> tuple[Iterable[tuple[Any, ...]], bool]:
        state = self._state
        emits = [joined for side, value in values for joined in state.insert(side, value)]
        return emits, state.emit_mode == "complete" and state.is_empty()

    def on_eof(self) -> tuple[Iterable[tuple[Any, ...]], bool]:
        if self._state.emit_mode == "final":
            return self._state.final(), self.DISCARD
        return (), self.RETAIN

    def snapshot(self) -> list[list[Any]]:
        return self._state.to_snapshot()


def _with_side(side: int, value: Any) -> tuple[int, Any]:
    return (side, value)


def tag_and_merge(label: str, sides: tuple[KeyedStream[Any], ...]) -> KeyedStream[Any]:
    """Tag each side's values as ``(index, value)`` (steps ``{label}_{index}``), then merge."""
    tagged = [
        map_value(f"{label}_{i}", side, partial(_with_side, i))
        for i, side in enumerate(sides)
    ]
    return merge("merge", *tagged)


@operator
def join(
    step_id: str,
    *sides: KeyedStream[Any],
    insert_mode: JoinInsertMode = "last",
    emit_mode: JoinEmitMode = "complete",
) -> KeyedStream[tuple[Any, ...]]:
    """Join keyed streams on their keys into tuples of one value per side.

    ``insert_mode`` says which values a side keeps (``"first"``, ``"last"``, or
    all of them with ``"product"``, which emits every combination);
    ``emit_mode`` says when to emit: ``"complete"`` once every side has a value
    (then the key starts over), ``"final"`` at the end of input, ``"running"``
    on every value (missing sides are ``None``).

    >>> flow = Dataflow("join_eg")
    >>> names = op.input("names", flow, TestingSource([("1", "ann"), ("2", "bob")]))
    >>> ages = op.input("ages", flow, TestingSource([("1", 31)]))
    >>> _ = op.inspect("show", op.join("people", names, ages))
    >>> run_main(flow)
    join_eg.show: ('1', ('ann', 31))
    """
    check_join("join", step_id, insert_mode, emit_mode, len(sides))
    count = len(sides)
    return stateful_batch(
        "stateful_batch",
        tag_and_merge("add_side", sides),
        lambda resume: _JoinLogic(JoinState.build(count, insert_mode, emit_mode, resume)),
    )


@dataclass
class TTLCache(Generic[K, V]):
    """A cache that fetches missing or expired values with ``v_getter``."""

    v_getter: Callable[[K], V]
    now_getter: Callable[[], datetime]
    ttl: timedelta
    _cache: dict[K, tuple[datetime, V]] = field(default_factory=dict)

    def get(self, k: K) -> V:
        """Return the cached value of ``k``, fetching it if missing or older than ``ttl``."""
        now = self.now_getter()
        hit = self._cache.get(k)
        if hit is not None:
            fetched_at, value = hit
            if now - fetched_at <= self.ttl:
                return value
        value = self.v_getter(k)
        self._cache[k] = (now, value)
        return value

    def remove(self, k: K) -> None:
        """Forget ``k`` so the next :meth:`get` fetches it again (``KeyError`` if not cached)."""
        del self._cache[k]


@operator
def enrich_cached(
    step_id: str,
    up: Stream[X],
    getter: Callable[[K], V],
    mapper: Callable[[TTLCache[K, V], X], Y],
    ttl: timedelta = timedelta.max,
    _now_getter: Callable[[], datetime] = utc_now,
) -> Stream[Y]:
    """Map items with the help of a cache of slow lookups (``getter``) kept for ``ttl``.

    ``mapper(cache, item)`` calls ``cache.get(k)``, which only calls
    ``getter(k)`` when ``k`` is missing or expired. The cache is per worker
    and is not snapshotted.

    >>> flow = Dataflow("enrich_eg")
    >>> s = op.input("inp", flow, TestingSource(["a", "b", "a"]))
    >>> lookups = []
    >>> def fetch(k):
    ...     lookups.append(k)
    ...     return k.upper()
    >>> _ = op.inspect("show", op.enrich_cached("up", s, fetch, lambda c, x: (x, c.get(x))))
    >>> run_main(flow)
    enrich_eg.show: ('a', 'A')
    enrich_eg.show: ('b', 'B')
    enrich_eg.show: ('a', 'A')
    >>> lookups
    ['a', 'b']
    """
    _check_callable(step_id, "getter", getter)
    _check_callable(step_id, "mapper", mapper)
    cache: TTLCache[K, V] = TTLCache(getter, _now_getter, ttl)
    return map("map", up, lambda item: mapper(cache, item))


"""Windowing: gather each key's values into windows of time, and act when a window closes.

A windowing operator is made of three parts:

* a **clock** (:class:`EventClock` or :class:`SystemClock`) gives every value a
  timestamp and keeps the key's *watermark*: the time before which no more
  values are expected. A value older than the watermark is *late*;
* a **windower** (:class:`TumblingWindower`, :class:`SlidingWindower` or
  :class:`SessionWindower`) says which windows a timestamp falls in, and which
  windows the watermark has closed;
* what to do with the values of a window: :func:`fold_window`,
  :func:`collect_window`, :func:`join_window` and friends, or any
  :class:`WindowLogic` with the general :func:`window` operator.

Every operator returns a :class:`WindowOut` of three keyed streams: ``down``
carries ``(key, (window_id, result))``, ``late`` carries ``(key, (window_id,
value))`` for every late value (``window_id`` is the window it would have been
in), and ``meta`` carries ``(key, (window_id, WindowMetadata))`` once per
closed window. At end of input every open window closes.

Each key has its own clock, windower and windows, and all three are part of
the key's snapshot: a resumed flow continues its open windows with the
watermark it had.

In the examples, the values are the minutes after noon at which they happened:

>>> from datetime import datetime, timedelta, timezone  # noqa: F401 - the examples use them
>>> from fastflow.operators.windowing import EventClock, TumblingWindower, collect_window
>>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
>>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
>>> ten_minutes = TumblingWindower(length=timedelta(minutes=10), align_to=noon)
>>> flow = Dataflow("windowing_eg")
>>> s = op.input("inp", flow, TestingSource([("a", 1), ("b", 4), ("a", 12), ("a", 3)]))
>>> out = collect_window("collect", s, clock, ten_minutes)
>>> _ = op.inspect("down", out.down)
>>> _ = op.inspect("late", out.late)
>>> run_main(flow)
windowing_eg.down: ('a', (0, [1]))
windowing_eg.late: ('a', (0, 3))
windowing_eg.down: ('a', (1, [12]))
windowing_eg.down: ('b', (0, [4]))
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone  # noqa: F401 - the examples use them
from functools import partial
from typing import Any, Generic, TypeVar, cast

from fastflow.dataflow import KeyedStream, Stream, operator
from fastflow.operators import (
    JoinEmitMode,
    JoinInsertMode,
    filter_map_value,
    key_on,
    stateful_batch,
    tag_and_merge,
)
from fastflow.operators._join import JoinState, check_join
from fastflow.operators._time import UTC_MAX, UTC_MIN, ZERO_TD
from fastflow.operators._util import add, identity, zero
from fastflow.operators.windowing._clocks import Clock, ClockLogic, EventClock, SystemClock
from fastflow.operators.windowing._state import (
    DOWN,
    LATE,
    META,
    KeyWindows,
    WindowLogic,
    unwrap,
)
from fastflow.operators.windowing._windowers import (
    LATE_SESSION_ID,
    SessionWindower,
    SlidingWindower,
    TumblingWindower,
    Windower,
    WindowerLogic,
    WindowMetadata,
)

__all__ = [
    "LATE_SESSION_ID",
    "UTC_MAX",
    "UTC_MIN",
    "ZERO_TD",
    "Clock",
    "ClockLogic",
    "EventClock",
    "SessionWindower",
    "SlidingWindower",
    "SystemClock",
    "TumblingWindower",
    "WindowLogic",
    "WindowMetadata",
    "WindowOut",
    "Windower",
    "WindowerLogic",
    "collect_window",
    "count_window",
    "fold_window",
    "join_window",
    "max_window",
    "min_window",
    "reduce_window",
    "window",
]


V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")
X = TypeVar("X")


@dataclass(frozen=True)
class WindowOut(Generic[V, W]):
    """The streams of a windowing operator: results, late values and window metadata."""

    down: KeyedStream[tuple[int, W]]
    late: KeyedStream[tuple[int, V]]
    meta: KeyedStream[tuple[int, WindowMetadata]]


@operator
def window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    builder: Callable[[S | None], WindowLogic[V, W, S]],
    ordered: bool = True,
) -> WindowOut[V, W]:
    """The general windowing operator: run a :class:`WindowLogic` per window of each key.

    ``builder(resume_state)`` makes the logic of a newly opened window (with
    ``None``), or of an open window on resume (with what its ``snapshot()``
    returned). With ``ordered`` (the default) values reach a window in
    timestamp order, each once the watermark has passed it; otherwise they
    are handed over as they arrive, which is sooner.

    >>> class Spread(WindowLogic):
    ...     def __init__(self, state):
    ...         self.low, self.high = state or (None, None)
    ...     def on_value(self, n):
    ...         self.low = n if self.low is None else min(self.low, n)
    ...         self.high = n if self.high is None else max(self.high, n)
    ...         return []
    ...     def on_merge(self, original):
    ...         self.low, self.high = min(self.low, original.low), max(self.high, original.high)
    ...         return []
    ...     def on_close(self):
    ...         return [self.high - self.low]
    ...     def snapshot(self):
    ...         return (self.low, self.high)
    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(minutes=5))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 4), ("a", 1), ("a", 12)]))
    >>> out = window("spread", s, clock, ten_minutes, Spread)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    window_eg.show: ('a', (0, 3))
    window_eg.show: ('a', (1, 0))
    """

    def build(resume: dict[str, Any] | None) -> KeyWindows[V]:
        return KeyWindows(clock, windower, builder, ordered, resume)

    events = stateful_batch("stateful_batch", up, build)
    return WindowOut(
        filter_map_value("unwrap_down", events, unwrap(DOWN)),
        filter_map_value("unwrap_late", events, unwrap(LATE)),
        filter_map_value("unwrap_meta", events, unwrap(META)),
    )


# The windowing operators built on ``window``.


class _FoldWindow(WindowLogic[V, S, S]):
    def __init__(
        self, folder: Callable[[S, V], S], merger: Callable[[S, S], S], state: S
    ) -> None:
        self._folder = folder
        self._merger = merger
        self.state = state

    def on_value(self, value: V) -> tuple[()]:
        self.state = self._folder(self.state, value)
        return ()

    def on_merge(self, original: _FoldWindow[V, S]) -> tuple[()]:
        self.state = self._merger(self.state, original.state)
        return ()

    def on_close(self) -> tuple[S]:
        return (self.state,)

    def snapshot(self) -> S:
        return self.state


@operator
def fold_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    builder: Callable[[], S],
    folder: Callable[[S, V], S],
    merger: Callable[[S, S], S],
    ordered: bool = True,
) -> WindowOut[V, S]:
    """Fold each window's values into an accumulator, emitted when the window closes.

    Each window starts from ``builder()``; ``folder(acc, value)`` returns the
    new accumulator (values in timestamp order when ``ordered``); when two
    windows merge, ``merger(acc, other_acc)`` combines them.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("fold_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 5), ("b", 15)]))
    >>> def add(total, minute):
    ...     return total + minute
    >>> out = fold_window("sum", s, clock, ten_minutes, int, add, add)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    fold_window_eg.show: ('a', (0, 6))
    fold_window_eg.show: ('b', (1, 15))
    """

    def build(resume: S | None) -> _FoldWindow[V, S]:
        return _FoldWindow(folder, merger, builder() if resume is None else resume)

    return window("window", up, clock, windower, build, ordered)


def _list_folder(acc: list[V], value: V) -> list[V]:
    acc.append(value)
    return acc


def _set_folder(acc: set[V], value: V) -> set[V]:
    acc.add(value)
    return acc


def _dict_folder(acc: dict[Any, Any], item: tuple[Any, Any]) -> dict[Any, Any]:
    key, value = item
    acc[key] = value
    return acc


def _dict_merger(acc: dict[Any, Any], other: dict[Any, Any]) -> dict[Any, Any]:
    acc.update(other)
    return acc


_COLLECTORS: dict[type, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    list: (_list_folder, list.__add__),
    set: (_set_folder, set.__or__),
    dict: (_dict_folder, _dict_merger),
}


@operator
def collect_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    into: type[Any] = list,
    ordered: bool = True,
) -> WindowOut[V, Any]:
    """Collect each window's values into a ``list`` (the default), a ``set``, or a ``dict``.

    For a ``dict`` the values must be ``(k, v)`` pairs; a later ``k`` wins.
    With ``ordered``, values are in timestamp order, otherwise in arrival order.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(minutes=5))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("collect_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", ("x", 3)), ("a", ("y", 1)),
    ...                                          ("a", ("x", 11))]))
    >>> out = collect_window("names", s, clock, ten_minutes, into=dict)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    collect_window_eg.show: ('a', (0, {'y': 1, 'x': 3}))
    collect_window_eg.show: ('a', (1, {'x': 11}))
    """
    if into not in _COLLECTORS:
        raise TypeError(
            f"collect_window step {step_id!r} can't collect into {into!r}; "
            "use `list`, `set` or `dict`"
        )
    folder, merger = _COLLECTORS[into]
    return fold_window("fold_window", up, clock, windower, into, folder, merger, ordered)


def _none() -> None:
    return None


@operator
def reduce_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    reducer: Callable[[V, V], V],
) -> WindowOut[V, V]:
    """Combine each window's values pairwise with ``reducer``, emitted when the window closes.

    Values are combined in arrival order (not timestamp order), as soon as
    they come; ``reducer`` also combines two windows that merge.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda minute: noon + timedelta(minutes=minute), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("reduce_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), ("a", 14)]))
    >>> out = reduce_window("sum", s, clock, ten_minutes, lambda a, b: a + b)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    reduce_window_eg.show: ('a', (0, 3))
    reduce_window_eg.show: ('a', (1, 14))
    """

    def first_or_reduce(acc: V | None, value: V) -> V:
        return value if acc is None else reducer(acc, value)

    # A window's accumulator is None only until its first value, which replaces it at once:
    # merged and emitted accumulators are always values, hence V (not V | None) throughout.
    no_value = cast("Callable[[], V]", _none)
    return fold_window(
        "fold_window", up, clock, windower, no_value, first_or_reduce, reducer, ordered=False
    )


@operator
def max_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    by: Callable[[V], Any] = identity,
) -> WindowOut[V, V]:
    """Emit each window's largest value (by ``by(value)``; on ties, the first to arrive).

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("max_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", (7.5, 1)), ("a", (9.0, 2)),
    ...                                          ("a", (8.1, 14))]))
    >>> out = max_window("warmest", s, clock, ten_minutes, by=lambda v: v[0])
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    max_window_eg.show: ('a', (0, (9.0, 2)))
    max_window_eg.show: ('a', (1, (8.1, 14)))
    """
    return reduce_window("reduce_window", up, clock, windower, partial(max, key=by))


@operator
def min_window(
    step_id: str,
    up: KeyedStream[V],
    clock: Clock[V, Any],
    windower: Windower[Any],
    by: Callable[[V], Any] = identity,
) -> WindowOut[V, V]:
    """Emit each window's smallest value (by ``by(value)``; on ties, the first to arrive).

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("min_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("a", (7.5, 1)), ("a", (9.0, 2)),
    ...                                          ("a", (8.1, 14))]))
    >>> out = min_window("coldest", s, clock, ten_minutes, by=lambda v: v[0])
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    min_window_eg.show: ('a', (0, (7.5, 1)))
    min_window_eg.show: ('a', (1, (8.1, 14)))
    """
    return reduce_window("reduce_window", up, clock, windower, partial(min, key=by))


def _add_one(count: int, _item: Any) -> int:
    return count + 1


@operator
def count_window(
    step_id: str,
    up: Stream[X],
    clock: Clock[X, Any],
    windower: Windower[Any],
    key: Callable[[X], str],
) -> WindowOut[X, int]:
    """Count the items of an (unkeyed) stream per ``key(item)`` and window.

    The clock gets the items themselves. Items are counted as they arrive.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("count_window_eg")
    >>> s = op.input("inp", flow, TestingSource([("x", 1), ("y", 2), ("x", 3), ("x", 12)]))
    >>> out = count_window("count", s, clock, ten_minutes, key=lambda v: v[0])
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    count_window_eg.show: ('x', (0, 2))
    count_window_eg.show: ('x', (1, 1))
    count_window_eg.show: ('y', (0, 1))
    """
    keyed = key_on("keyed", up, key)
    return fold_window("sum", keyed, clock, windower, zero, _add_one, add, ordered=False)


# join_window.


class _JoinWindow(WindowLogic[tuple[int, Any], tuple[Any, ...], list[list[Any]]]):
    """One window's :class:`JoinState`; ``emit_mode="final"`` emits when it closes."""

    def __init__(self, state: JoinState) -> None:
        self.state = state

    def on_value(self, value: tuple[int, Any]) -> list[tuple[Any, ...]]:
        return self.state.insert(*value)

    def on_merge(self, original: _JoinWindow) -> list[tuple[Any, ...]]:
        return self.state.absorb(original.state)

    def on_close(self) -> list[tuple[Any, ...]]:
        return self.state.final()

    def snapshot(self) -> list[list[Any]]:
        return self.state.to_snapshot()


@operator
def _join_label_merge(step_id: str, *sides: KeyedStream[Any]) -> KeyedStream[tuple[int, Any]]:
    """Tag each side's values with the side's index, and merge the sides."""
    return tag_and_merge("label", sides)


def _untagged(clock: Clock[Any, Any]) -> Clock[Any, Any]:
    """An :class:`EventClock` that reads timestamps of ``(side, value)`` from ``value``."""
    if not isinstance(clock, EventClock):
        return clock
    ts_getter = clock.ts_getter
    return replace(clock, ts_getter=lambda tagged: ts_getter(tagged[1]))


@operator
def join_window(
    step_id: str,
    clock: Clock[Any, Any],
    windower: Windower[Any],
    *sides: KeyedStream[Any],
    insert_mode: JoinInsertMode = "last",
    emit_mode: JoinEmitMode = "final",
    ordered: bool = True,
) -> WindowOut[Any, tuple[Any, ...]]:
    """Join keyed streams on their keys, per window, into tuples of one value per side.

    The modes are those of :func:`fastflow.operators.join` (a missing side is
    ``None``), but here ``emit_mode="final"`` (the default) emits when the
    window closes. Late values come out tagged with their side:
    ``(key, (window_id, (side_index, value)))``. An :class:`EventClock` gets
    the untagged values; any other clock gets ``(side_index, value)``.

    >>> noon = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    >>> clock = EventClock(lambda v: noon + timedelta(minutes=v[1]), timedelta(0))
    >>> ten_minutes = TumblingWindower(timedelta(minutes=10), align_to=noon)
    >>> flow = Dataflow("join_window_eg")
    >>> names = op.input("names", flow, TestingSource([("1", ("ann", 1)), ("2", ("bob", 2))]))
    >>> ages = op.input("ages", flow, TestingSource([("1", (31, 3)), ("1", (32, 14))]))
    >>> out = join_window("people", clock, ten_minutes, names, ages)
    >>> _ = op.inspect("show", out.down)
    >>> run_main(flow)
    join_window_eg.show: ('1', (0, (('ann', 1), (31, 3))))
    join_window_eg.show: ('1', (1, (None, (32, 14))))
    join_window_eg.show: ('2', (0, (('bob', 2), None)))
    """
    check_join("join_window", step_id, insert_mode, emit_mode, len(sides))
    count = len(sides)

    def build(resume: list[list[Any]] | None) -> _JoinWindow:
        return _JoinWindow(JoinState.build(count, insert_mode, emit_mode, resume))

    tagged = _join_label_merge("add_names", *sides)
    return window("window", tagged, _untagged(clock), windower, build, ordered)


# The classes keep the path users import them from (in reprs, docs, and pickles of
# values such as WindowMetadata), and their examples run in this namespace.
for _name in __all__:
    _public = globals()[_name]
    if isinstance(_public, type):
        _public.__module__ = __name__
del _name, _public

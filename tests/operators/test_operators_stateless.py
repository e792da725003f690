"""Every stateless operator on normal and edge input: results, type checks and errors."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastflow.operators as op
from fastflow.dataflow import Dataflow, Stream
from fastflow.errors import BytewaxRuntimeError, FastflowRuntimeError
from fastflow.operators.helpers import map_dict_value
from fastflow.testing import TestingSink, TestingSource, run_main

EOF = TestingSource.EOF
Build = Callable[[Stream[Any]], Stream[Any]]


def _is_even(x: int) -> bool:
    return x % 2 == 0


def _none_if_odd(x: int) -> int | None:
    return None if x % 2 else x * 10


# (operator id, build, input, expected output): normal input for every operator
# that maps one stream to another.
CASES: List[tuple[str, Build, List[Any], List[Any]]] = [
    ("map", lambda s: op.map("x", s, lambda x: x * 2), [1, 2, 3], [2, 4, 6]),
    ("filter", lambda s: op.filter("x", s, _is_even), [1, 2, 3, 4], [2, 4]),
    ("filter_map", lambda s: op.filter_map("x", s, _none_if_odd), [1, 2, 3, 4], [20, 40]),
    ("flat_map", lambda s: op.flat_map("x", s, str.split), ["a b", "", "c"], ["a", "b", "c"]),
    ("flatten", lambda s: op.flatten("x", s), [[1, 2], [], (3,)], [1, 2, 3]),
    (
        "flat_map_batch",
        lambda s: op.flat_map_batch("x", s, lambda xs: [x + 1 for x in xs]),
        [1, 2, 3],
        [2, 3, 4],
    ),
    (
        "key_on",
        lambda s: op.key_on("x", s, lambda x: x[0]),
        ["ab", "cd"],
        [("a", "ab"), ("c", "cd")],
    ),
    ("key_rm", lambda s: op.key_rm("x", s), [("a", 1), ("b", 2)], [1, 2]),
    (
        "map_value",
        lambda s: op.map_value("x", s, lambda v: v * 10),
        [("a", 1), ("b", 2)],
        [("a", 10), ("b", 20)],
    ),
    (
        "filter_value",
        lambda s: op.filter_value("x", s, _is_even),
        [("a", 1), ("b", 2), ("a", 4)],
        [("b", 2), ("a", 4)],
    ),
    (
        "filter_map_value",
        lambda s: op.filter_map_value("x", s, _none_if_odd),
        [("a", 1), ("b", 2)],
        [("b", 20)],
    ),
    (
        "flat_map_value",
        lambda s: op.flat_map_value("x", s, range),
        [("a", 2), ("b", 0), ("c", 1)],
        [("a", 0), ("a", 1), ("c", 0)],
    ),
    ("branch.trues", lambda s: op.branch("x", s, _is_even).trues, [1, 2, 3, 4], [2, 4]),
    ("branch.falses", lambda s: op.branch("x", s, _is_even).falses, [1, 2, 3, 4], [1, 3]),
    ("merge", lambda s: op.merge("x", s), [1, 2], [1, 2]),
    ("redistribute", lambda s: op.redistribute("x", s), [1, 2], [1, 2]),
    ("inspect", lambda s: op.inspect("x", s, lambda _id, _x: None), [1, "a"], [1, "a"]),
    (
        "inspect_debug",
        lambda s: op.inspect_debug("x", s, lambda _id, _x, _e, _w: None),
        [1, "a"],
        [1, "a"],
    ),
]
CASE_IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("batch_size", [1, 2, 100])
@pytest.mark.parametrize(("name", "build", "items", "expected"), CASES, ids=CASE_IDS)
def test_operator_on_normal_input(
    run_items_on: Any,
    name: str,
    build: Build,
    items: List[Any],
    expected: List[Any],
    batch_size: int,
) -> None:
    assert run_items_on(items, build, batch_size) == expected


@pytest.mark.parametrize(("name", "build", "items", "expected"), CASES, ids=CASE_IDS)
def test_operator_on_empty_input(
    run_items_on: Any, name: str, build: Build, items: List[Any], expected: List[Any]
) -> None:
    assert run_items_on([], build) == []


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize(("name", "build", "items", "expected"), CASES, ids=CASE_IDS)
def test_operator_stops_at_eof_marker(
    run_items_on: Any,
    name: str,
    build: Build,
    items: List[Any],
    expected: List[Any],
    batch_size: int,
) -> None:
    # Whatever follows the EOF marker is never read.
    assert run_items_on([*items, EOF(), *items], build, batch_size) == expected


@pytest.mark.parametrize(("name", "build", "items", "expected"), CASES, ids=CASE_IDS)
def test_operator_on_only_an_eof_marker(
    run_items_on: Any, name: str, build: Build, items: List[Any], expected: List[Any]
) -> None:
    assert run_items_on([EOF(), *items], build) == []


# Details of single operators.


def test_map_keeps_none_results(run_items_on: Any) -> None:
    assert run_items_on([1, 2], lambda s: op.map("m", s, lambda x: None)) == [None, None]


def test_filter_map_drops_only_none(run_items_on: Any) -> None:
    items = [0, 1, "", None, False, []]
    out = run_items_on(items, lambda s: op.filter_map("fm", s, lambda x: x))
    assert out == [0, 1, "", False, []]


def test_filter_that_keeps_nothing(run_items_on: Any) -> None:
    assert run_items_on([1, 2, 3], lambda s: op.filter("f", s, lambda x: False), 2) == []


def test_flat_map_accepts_any_iterable(run_items_on: Any) -> None:
    def spread(x: int) -> Any:
        return (x for _ in range(x))

    assert run_items_on([0, 1, 2], lambda s: op.flat_map("fm", s, spread)) == [1, 2, 2]


def test_flatten_a_string_gives_its_characters(run_items_on: Any) -> None:
    assert run_items_on(["ab", "c"], lambda s: op.flatten("fl", s)) == ["a", "b", "c"]


def test_flat_map_value_keeps_the_key_for_each_value(run_items_on: Any) -> None:
    build: Build = lambda s: op.flat_map_value("fmv", s, lambda v: [v, v.upper()])  # noqa: E731
    assert run_items_on([("k", "x")], build) == [("k", "x"), ("k", "X")]


def test_key_on_pairs_key_and_item(run_items_on: Any) -> None:
    events = [{"user": "ann", "n": 1}, {"user": "bob", "n": 2}]
    build: Build = lambda s: op.key_on("k", s, lambda e: e["user"])  # noqa: E731
    assert run_items_on(events, build) == [("ann", events[0]), ("bob", events[1])]


def test_key_on_then_key_rm_round_trips(run_items_on: Any) -> None:
    build: Build = lambda s: op.key_rm("kr", op.key_on("k", s, str))  # noqa: E731
    assert run_items_on([1, "a", (2,)], build) == [1, "a", (2,)]


def test_value_operators_accept_any_pair(run_items_on: Any) -> None:
    # Like Bytewax: stateless keyed operators only unpack the pair; they
    # neither require a tuple nor a str key.
    items = [["a", 1], (1, 2)]
    out = run_items_on(items, lambda s: op.map_value("mv", s, lambda v: v + 1))
    assert out == [("a", 2), (1, 3)]
    assert run_items_on(items, lambda s: op.key_rm("kr", s)) == [1, 2]
    assert run_items_on(items, lambda s: op.filter_value("fv", s, lambda v: v > 1)) == [(1, 2)]


def test_filter_value_passes_the_item_unchanged(run_items_on: Any) -> None:
    items = [["a", 1]]
    assert run_items_on(items, lambda s: op.filter_value("fv", s, lambda v: True)) == [["a", 1]]


def test_redistribute_keeps_order_with_one_worker(run_items: Any) -> None:
    assert run_items(list(range(10)), lambda s: op.redistribute("r", s), 3) == list(range(10))


# flat_map_batch sees the source's batches.


@pytest.mark.parametrize(
    ("batch_size", "batches"),
    [(1, [[1], [2], [3]]), (2, [[1, 2], [3]]), (3, [[1, 2, 3]]), (10, [[1, 2, 3]])],
)
def test_flat_map_batch_gets_source_batches(
    run_items: Any, batch_size: int, batches: List[List[int]]
) -> None:
    seen: List[Any] = []

    def record(xs: List[int]) -> List[int]:
        seen.append(xs)
        return [sum(xs)]

    out = run_items([1, 2, 3], lambda s: op.flat_map_batch("fmb", s, record), batch_size)
    assert seen == batches
    assert all(type(xs) is list for xs in seen)
    assert out == [sum(xs) for xs in batches]


def test_flat_map_batch_batch_is_cut_at_eof(run_items: Any) -> None:
    seen: List[Any] = []
    build: Build = lambda s: op.flat_map_batch("fmb", s, lambda xs: seen.append(xs) or xs)  # noqa: E731
    assert run_items([1, 2, EOF(), 3], build, 3) == [1, 2]
    assert seen == [[1, 2]]


def test_flat_map_batch_may_emit_nothing_or_more(run_items_on: Any) -> None:
    build: Build = lambda s: op.flat_map_batch("fmb", s, lambda xs: xs * len(xs))  # noqa: E731
    assert run_items_on([1, 2, 3], build, 2) == [1, 2, 1, 2, 3]
    assert run_items_on([1, 2, 3], lambda s: op.flat_map_batch("fmb", s, lambda xs: ()), 2) == []


def test_flat_map_batch_accepts_a_generator(run_items_on: Any) -> None:
    build: Build = lambda s: op.flat_map_batch("fmb", s, lambda xs: (x * 2 for x in xs))  # noqa: E731
    assert run_items_on([1, 2, 3], build, 2) == [2, 4, 6]


def test_flat_map_batch_after_filter_gets_the_survivors(run_items: Any) -> None:
    seen: List[Any] = []

    def build(s: Stream[int]) -> Stream[int]:
        evens = op.filter("even", s, _is_even)
        return op.flat_map_batch("fmb", evens, lambda xs: seen.append(xs) or xs)

    assert run_items([1, 2, 3, 4, 5, 6], build, 3) == [2, 4, 6]
    assert seen == [[2], [4, 6]]


# branch and merge.


def _branch_flow(items: List[Any], predicate: Callable[[Any], Any]) -> tuple[list, list, Dataflow]:
    trues: List[Any] = []
    falses: List[Any] = []
    flow = Dataflow("df")
    both = op.branch("b", op.input("inp", flow, TestingSource(items)), predicate)
    op.output("t", both.trues, TestingSink(trues))
    op.output("f", both.falses, TestingSink(falses))
    return trues, falses, flow


@pytest.mark.parametrize(
    ("items", "trues", "falses"),
    [
        ([1, 2, 3, 4, 5], [2, 4], [1, 3, 5]),
        ([2, 4], [2, 4], []),
        ([1, 3], [], [1, 3]),
        ([], [], []),
    ],
)
def test_branch_both_ways(items: List[int], trues: List[int], falses: List[int]) -> None:
    got_t, got_f, flow = _branch_flow(items, _is_even)
    run_main(flow)
    assert (got_t, got_f) == (trues, falses)


def test_branch_then_merge_keeps_arrival_order(run_items_on: Any) -> None:
    def build(s: Stream[int]) -> Stream[Any]:
        both = op.branch("b", s, _is_even)
        t = op.map("t", both.trues, lambda x: ("T", x))
        f = op.map("f", both.falses, lambda x: ("F", x))
        return op.merge("m", t, f)

    assert run_items_on([1, 2, 3, 4], build) == [("F", 1), ("T", 2), ("F", 3), ("T", 4)]


def test_branch_streams_can_be_used_only_on_one_side(run_items_on: Any) -> None:
    assert run_items_on([1, 2, 3], lambda s: op.branch("b", s, _is_even).falses) == [1, 3]


def test_merge_of_three_sources_interleaves_by_poll() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource(["a1", "a2", "a3"]))
    b = op.input("b", flow, TestingSource(["b1"]))
    c = op.input("c", flow, TestingSource(["c1", "c2"]))
    op.output("out", op.merge("m", a, b, c), TestingSink(out))
    run_main(flow)
    # One worker polls every source once per round, in the order they were added.
    assert out == ["a1", "b1", "c1", "a2", "c2", "a3"]


def test_merge_of_three_derived_streams(run_items_on: Any) -> None:
    def build(s: Stream[int]) -> Stream[Any]:
        ones = op.map("one", s, lambda x: (1, x))
        twos = op.map("two", s, lambda x: (2, x))
        threes = op.filter("three", s, lambda x: x == 3)
        return op.merge("m", ones, twos, threes)

    assert run_items_on([1, 3], build) == [(1, 1), (2, 1), (1, 3), (2, 3), 3]


def test_merge_waits_for_every_upstream_to_end() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource([1, EOF(), 99]))
    b = op.input("b", flow, TestingSource([]))
    c = op.input("c", flow, TestingSource([2, 3, 4]))
    merged = op.merge("m", a, b, c)
    op.output(
        "out",
        op.fold_final("sum", op.key_on("k", merged, lambda _: "all"), int, int.__add__),
        TestingSink(out),
    )
    run_main(flow)
    # The fold emits once, after the last of the three inputs ended.
    assert out == [("all", 10)]


def test_merge_of_one_stream_and_of_a_stream_with_itself(run_items_on: Any) -> None:
    assert run_items_on([1, 2], lambda s: op.merge("m", s)) == [1, 2]
    assert run_items_on([1, 2], lambda s: op.merge("m", s, s)) == [1, 1, 2, 2]


def test_merge_of_nothing_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="merge"):
        op.merge("m")


# inspect and inspect_debug.


def test_inspect_default_prints_step_id_and_repr(capsys: pytest.CaptureFixture[str]) -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([1, "a", (1, "b"), None]))
    op.output("out", op.inspect("i", s), TestingSink(out))
    run_main(flow)
    assert capsys.readouterr().out == "df.i: 1\ndf.i: 'a'\ndf.i: (1, 'b')\ndf.i: None\n"
    assert out == [1, "a", (1, "b"), None]


def test_inspect_names_the_nested_step(capsys: pytest.CaptureFixture[str]) -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(["x"]))
    op.inspect("i", op.map("m", s, str.upper))
    run_main(flow)
    assert capsys.readouterr().out == "df.i: 'X'\n"


def test_inspect_custom_inspector_gets_step_id_and_item(run_items: Any) -> None:
    seen: List[Any] = []
    out = run_items([1, 2], lambda s: op.inspect("i", s, lambda *a: seen.append(a)))
    assert seen == [("df.i", 1), ("df.i", 2)]
    assert out == [1, 2]


def test_inspect_debug_default_format(capsys: pytest.CaptureFixture[str]) -> None:
    flow = Dataflow("df")
    op.inspect_debug("i", op.input("inp", flow, TestingSource([1, "x"])))
    run_main(flow)
    assert capsys.readouterr().out == "df.i W0 @1: 1\ndf.i W0 @1: 'x'\n"


def test_inspect_debug_custom_inspector_gets_epoch_and_worker(run_items: Any) -> None:
    seen: List[Any] = []
    out = run_items(["a", "b"], lambda s: op.inspect_debug("i", s, lambda *a: seen.append(a)))
    assert seen == [("df.i", "a", 1, 0), ("df.i", "b", 1, 0)]
    assert out == ["a", "b"]


def test_inspect_debug_epoch_advances_with_the_epoch_interval() -> None:
    seen: List[Any] = []
    flow = Dataflow("df")
    items = [1, TestingSource.PAUSE(timedelta(milliseconds=300)), 2]
    s = op.input("inp", flow, TestingSource(items))
    op.inspect_debug("i", s, lambda _id, item, epoch, _w: seen.append((item, epoch)))
    run_main(flow, epoch_interval=timedelta(milliseconds=50))
    (first, e1), (second, e2) = seen
    assert (first, second) == (1, 2)
    assert e1 >= 1 and e2 > e1


# raises.


def test_raises_with_no_items_is_fine() -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([1, 2]))
    assert op.raises("r", op.filter("none", s, lambda x: False)) is None
    run_main(flow)


def test_raises_on_an_item() -> None:
    flow = Dataflow("df")
    op.raises("r", op.input("inp", flow, TestingSource([7, 8])))
    with pytest.raises(FastflowRuntimeError, match=r"step 'df\.r\.output'") as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__) == "`raises` step 'df.r' got an item: 7"


# User functions that raise.


class Boom(Exception):
    """The error user functions raise in these tests."""


BOOM = Boom("boom")


def _boom(*_args: Any) -> Any:
    raise BOOM


# (operator, build, input, step id named in the error)
RAISING: List[tuple[str, Build, List[Any], str]] = [
    ("map", lambda s: op.map("x", s, _boom), [1], "df.x.flat_map_batch"),
    ("filter", lambda s: op.filter("x", s, _boom), [1], "df.x.flat_map_batch"),
    ("filter_map", lambda s: op.filter_map("x", s, _boom), [1], "df.x.flat_map_batch"),
    ("flat_map", lambda s: op.flat_map("x", s, _boom), [1], "df.x.flat_map_batch"),
    ("flat_map_batch", lambda s: op.flat_map_batch("x", s, _boom), [1], "df.x"),
    ("key_on", lambda s: op.key_on("x", s, _boom), [1], "df.x.flat_map_batch"),
    ("map_value", lambda s: op.map_value("x", s, _boom), [("a", 1)], "df.x.flat_map_batch"),
    ("filter_value", lambda s: op.filter_value("x", s, _boom), [("a", 1)], "df.x.flat_map_batch"),
    (
        "filter_map_value",
        lambda s: op.filter_map_value("x", s, _boom),
        [("a", 1)],
        "df.x.flat_map_batch",
    ),
    (
        "flat_map_value",
        lambda s: op.flat_map_value("x", s, _boom),
        [("a", 1)],
        "df.x.flat_map_batch",
    ),
    ("branch", lambda s: op.branch("x", s, _boom).trues, [1], "df.x"),
    ("inspect", lambda s: op.inspect("x", s, _boom), [1], "df.x.inspect_debug"),
    ("inspect_debug", lambda s: op.inspect_debug("x", s, _boom), [1], "df.x"),
]


@pytest.mark.parametrize(("name", "build", "items", "step"), RAISING, ids=[r[0] for r in RAISING])
def test_raising_user_function_names_the_step(
    run_items: Any, name: str, build: Build, items: List[Any], step: str
) -> None:
    with pytest.raises(FastflowRuntimeError) as info:
        run_items(items, build)
    assert f"step {step!r}" in str(info.value)
    assert "Boom: boom" in str(info.value)
    assert info.value.__cause__ is BOOM
    assert isinstance(info.value, BytewaxRuntimeError)  # the Bytewax name still catches it


def test_error_stops_the_run_after_earlier_output() -> None:
    out: List[Any] = []
    later: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([1, 0, 2]))
    inv = op.map("inv", s, lambda x: 1 // x)
    op.output("out", inv, TestingSink(out))
    op.output("later", s, TestingSink(later))
    with pytest.raises(FastflowRuntimeError, match=r"step 'df\.inv\.flat_map_batch'") as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert out == [1]
    assert later == [1]  # item 2 was never read


def test_error_in_a_custom_operator_names_the_nested_step(run_items: Any) -> None:
    from fastflow.dataflow import operator

    @operator
    def outer(step_id: str, up: Stream[int]) -> Stream[int]:
        return op.map("inner", up, _boom)

    with pytest.raises(FastflowRuntimeError, match=r"step 'df\.o\.inner\.flat_map_batch'"):
        run_items([1], lambda s: outer("o", s))


# Type checks on user return values and on items.


def _cause_of(run_items_on: Any, items: List[Any], build: Build) -> BaseException:
    with pytest.raises(FastflowRuntimeError) as info:
        run_items_on(items, build)
    assert info.value.__cause__ is not None
    return info.value.__cause__


@pytest.mark.parametrize("bad", [None, 1, "yes", [1]])
def test_filter_predicate_must_return_a_bool(run_items: Any, bad: Any) -> None:
    cause = _cause_of(run_items, [5], lambda s: op.filter("f", s, lambda x: bad))
    assert isinstance(cause, TypeError)
    assert str(cause) == (
        f"return value of `predicate` in step 'df.f' must be a `bool`; "
        f"got {bad!r} of type {type(bad).__name__!r}"
    )


def test_filter_value_predicate_must_return_a_bool(run_items: Any) -> None:
    cause = _cause_of(run_items, [("a", 1)], lambda s: op.filter_value("fv", s, lambda v: v))
    assert isinstance(cause, TypeError)
    assert re.search(r"`predicate` in step 'df\.fv' must be a `bool`; got 1", str(cause))


def test_branch_predicate_must_return_a_bool(run_items_on: Any) -> None:
    trues, falses, flow = _branch_flow([1], lambda x: x)
    with pytest.raises(FastflowRuntimeError, match=r"step 'df\.b'") as info:
        run_main(flow)
    assert isinstance(info.value.__cause__, TypeError)
    assert re.search(r"`predicate` in step 'df\.b' must be a `bool`; got 1", str(info.value))


@pytest.mark.parametrize("bad", [1, None, b"a"])
def test_key_on_key_must_return_a_str(run_items: Any, bad: Any) -> None:
    cause = _cause_of(run_items, ["x"], lambda s: op.key_on("k", s, lambda x: bad))
    assert isinstance(cause, TypeError)
    assert str(cause) == (
        f"return value of `key` in step 'df.k' must be a `str`; "
        f"got {bad!r} of type {type(bad).__name__!r}"
    )


KEYED: List[tuple[str, Build]] = [
    ("map_value", lambda s: op.map_value("kv", s, str)),
    ("filter_value", lambda s: op.filter_value("kv", s, bool)),
    ("filter_map_value", lambda s: op.filter_map_value("kv", s, str)),
    ("flat_map_value", lambda s: op.flat_map_value("kv", s, str)),
    ("key_rm", lambda s: op.key_rm("kv", s)),
]


@pytest.mark.parametrize("bad", [7, ("a", 1, 2), "abc"])
@pytest.mark.parametrize(("name", "build"), KEYED, ids=[k[0] for k in KEYED])
def test_value_operators_need_pairs(run_items: Any, name: str, build: Build, bad: Any) -> None:
    cause = _cause_of(run_items, [("ok", 1), bad], build)
    assert isinstance(cause, TypeError)
    assert str(cause) == (
        f"step 'df.kv' requires `(key, value)` 2-tuples as input; "
        f"got {bad!r} of type {type(bad).__name__!r}"
    )


def test_flat_map_must_return_an_iterable(run_items: Any) -> None:
    cause = _cause_of(run_items, [1], lambda s: op.flat_map("fm", s, lambda x: x))
    assert isinstance(cause, TypeError)
    assert "'int' object is not iterable" in str(cause)


def test_flatten_needs_iterable_items(run_items: Any) -> None:
    cause = _cause_of(run_items, [[1], 2], lambda s: op.flatten("fl", s))
    assert isinstance(cause, TypeError)


def test_flat_map_batch_must_return_an_iterable(run_items: Any) -> None:
    with pytest.raises(FastflowRuntimeError, match=r"`mapper` in step 'df\.fmb'") as info:
        run_items([1], lambda s: op.flat_map_batch("fmb", s, lambda xs: 1))
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize(
    "build",
    [
        lambda s: op.map("m", s, 1),
        lambda s: op.filter("m", s, None),
        lambda s: op.flat_map("m", s, "f"),
        lambda s: op.branch("m", s, 3),
        lambda s: op.key_on("m", s, 1),
        lambda s: op.inspect("m", s, 1),
        lambda s: op.flat_map_batch("m", s, 1),
    ],
)
def test_non_callable_user_function_is_a_build_time_type_error(build: Build) -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([1]))
    with pytest.raises(TypeError, match=r"of step 'm' must be callable"):
        build(s)


# Property: a stateless chain gives what the same plain-Python loop gives, whatever the batching.


def _chain(s: Stream[int]) -> Stream[Any]:
    doubled = op.map("double", s, lambda x: x * 2)
    small = op.filter("small", doubled, lambda x: x < 50)
    spread = op.flat_map("spread", small, lambda x: [x] * (x % 3))
    keyed = op.key_on("key", spread, lambda x: str(x % 4))
    return op.filter_map_value("fmv", keyed, lambda v: None if v % 5 == 0 else v + 1)


def _chain_in_python(items: List[int]) -> List[Any]:
    out = []
    for x in items:
        x *= 2
        if x < 50:
            for y in [x] * (x % 3):
                if y % 5:
                    out.append((str(y % 4), y + 1))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-100, 100), max_size=40), st.integers(1, 7))
def test_stateless_chain_matches_a_python_loop(items: List[int], batch_size: int) -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(items, batch_size))
    op.output("out", _chain(s), TestingSink(out))
    run_main(flow)
    assert out == _chain_in_python(items)


# operators.helpers


def test_map_dict_value_maps_one_value_in_place(run_items: Any) -> None:
    rows = [{"name": "ann", "n": 1}, {"name": "bob", "n": 2}]
    mapper = map_dict_value("n", lambda n: n * 10)
    out = run_items(rows, lambda s: op.map("x", s, mapper))
    assert out == [{"name": "ann", "n": 10}, {"name": "bob", "n": 20}]
    assert out[0] is rows[0]  # as in Bytewax: the same dict, changed


def test_map_dict_value_without_the_key_names_the_step(run_items: Any) -> None:
    with pytest.raises(FastflowRuntimeError, match=r"step 'df\.x\..*KeyError") as raised:
        run_items([{"other": 1}], lambda s: op.map("x", s, map_dict_value("n", abs)))
    assert isinstance(raised.value.__cause__, KeyError)


# User code that changes the batch while a compiled loop runs over it.

_MUTATING_BATCH = '''
from fastflow._cext import ops

class Pair:
    """A (key, value) sequence whose unpacking runs user code."""
    def __init__(self, key, value, hook):
        self.key, self.value, self.hook = key, value, hook
    def __iter__(self):
        self.hook()
        return iter((self.key, self.value))

def check(name, call, items, how):
    batch = list(items)
    seen = []
    def hook():
        if not seen:
            if how == "clear":
                batch.clear()
            else:
                batch.append(items[-1])
        seen.append(1)
    def fn(result):
        def user(x):
            hook()
            return result(x)
        return user
    got = call(fn, batch, hook)
    print(name, how, got)

nums, pairs = [1, 2], [("a", 1), ("b", 2)]
cases = [
    ("map_items", lambda f, b, h: ops.map_items(f(lambda x: x * 10), b), nums),
    ("filter_items", lambda f, b, h: ops.filter_items(f(lambda x: True), b, "s"), nums),
    ("filter_map_items", lambda f, b, h: ops.filter_map_items(f(lambda x: x), b), nums),
    ("flat_map_items", lambda f, b, h: ops.flat_map_items(f(lambda x: [x]), b), nums),
    ("branch_items", lambda f, b, h: ops.branch_items(f(lambda x: x > 1), b, "s"), nums),
    ("key_on_items", lambda f, b, h: ops.key_on_items(f(lambda x: "k"), b, "s"), nums),
    ("map_value_items", lambda f, b, h: ops.map_value_items(f(lambda v: -v), b, "s"), pairs),
    ("filter_value_items", lambda f, b, h: ops.filter_value_items(f(lambda v: True), b, "s"),
     pairs),
    ("filter_map_value_items",
     lambda f, b, h: ops.filter_map_value_items(f(lambda v: v), b, "s"), pairs),
    ("flat_map_value_items",
     lambda f, b, h: ops.flat_map_value_items(f(lambda v: [v]), b, "s"), pairs),
]
for name, call, items in cases:
    for how in ("clear", "append"):
        check(name, call, items, how)
for how in ("clear", "append"):
    def key_rm(f, b, h):
        b[:] = [Pair(k, v, h) for k, v in b]
        return ops.key_rm_items(b, "s")
    check("key_rm_items", key_rm, pairs, how)
'''


def test_compiled_loops_survive_user_code_changing_the_batch(tmp_path: Path) -> None:
    # Each loop re-reads the batch length before every item, as a Python `for` over
    # the list does: items removed are not handled, items added are. (Before, a
    # cleared batch was read past its end: a segmentation fault.)
    proc = subprocess.run(
        [sys.executable, "-c", _MUTATING_BATCH], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "map_items clear [10]",
        "map_items append [10, 20, 20]",
        "filter_items clear [1]",
        "filter_items append [1, 2, 2]",
        "filter_map_items clear [1]",
        "filter_map_items append [1, 2, 2]",
        "flat_map_items clear [1]",
        "flat_map_items append [1, 2, 2]",
        "branch_items clear ([], [1])",
        "branch_items append ([2, 2], [1])",
        "key_on_items clear [('k', 1)]",
        "key_on_items append [('k', 1), ('k', 2), ('k', 2)]",
        "map_value_items clear [('a', -1)]",
        "map_value_items append [('a', -1), ('b', -2), ('b', -2)]",
        "filter_value_items clear [('a', 1)]",
        "filter_value_items append [('a', 1), ('b', 2), ('b', 2)]",
        "filter_map_value_items clear [('a', 1)]",
        "filter_map_value_items append [('a', 1), ('b', 2), ('b', 2)]",
        "flat_map_value_items clear [('a', 1)]",
        "flat_map_value_items append [('a', 1), ('b', 2), ('b', 2)]",
        "key_rm_items clear [1]",
        "key_rm_items append [1, 2, 2]",
    ]


_SHARED_BUFFER_FLOW = '''
import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition
from fastflow.testing import TestingSink, run_main

class Part(StatefulSourcePartition):
    def __init__(self, buffer):
        self.buffer, self.done = buffer, False
    def next_batch(self):
        if self.done:
            raise StopIteration()
        self.done = True
        return self.buffer  # its own list: the engine takes the batch as is
    def snapshot(self):
        return None

class Source(FixedPartitionedSource):
    def __init__(self, buffer):
        self.buffer = buffer
    def list_parts(self):
        return ["only"]
    def build_part(self, step_id, for_part, resume_state):
        return Part(self.buffer)

buffer = [1, 2, 3]

def mapper(x):
    buffer.clear()  # the very list the map loop is reading
    return x * 10

out = []
flow = Dataflow("df")
s = op.input("inp", flow, Source(buffer))
op.output("out", op.map("m", s, mapper), TestingSink(out))
run_main(flow)
print(out)
'''


def test_a_mapper_that_clears_the_batch_it_came_in(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _SHARED_BUFFER_FLOW], capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
    )
    assert (proc.returncode, proc.stdout) == (0, "[10]\n"), proc.stderr

"""The dataflow-building API: ids, nesting, the operator decorator, Stream.then."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List

import pytest

import fastflow.operators as op
from fastflow._runtime.plan import flatten
from fastflow.dataflow import Dataflow, KeyedStream, Operator, Stream, operator
from fastflow.testing import TestingSink, TestingSource, run_main


def _flow_with_input(items: List[Any] | None = None) -> tuple[Dataflow, Stream[Any]]:
    flow = Dataflow("df")
    return flow, op.input("inp", flow, TestingSource([1, 2] if items is None else items))


def _ids(steps: List[Operator]) -> List[str]:
    return [step.step_id for step in steps]


# Dataflow ids.


def test_dataflow_keeps_its_id_and_starts_empty() -> None:
    flow = Dataflow("my_flow")
    assert flow.flow_id == "my_flow"
    assert flow.substeps == []


@pytest.mark.parametrize(
    "bad, message",
    [("d.f", "flow ID can't contain a period `.`"), ("", "must not be empty")],
)
def test_dataflow_id_must_be_nonempty_without_periods(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Dataflow(bad)


def test_dataflow_id_must_be_a_str() -> None:
    with pytest.raises(TypeError, match=re.escape("'flow_id' must be a `str`; got 1 of type int")):
        Dataflow(1)  # type: ignore[arg-type]


# Step ids.


def test_step_ids_are_prefixed_with_the_flow_id() -> None:
    flow, s = _flow_with_input()
    op.output("out", op.map("m", s, str), TestingSink([]))
    assert _ids(flow.substeps) == ["df.inp", "df.m", "df.out"]
    assert [step.step_name for step in flow.substeps] == ["input", "map", "output"]


def test_duplicate_step_id_is_a_build_time_error() -> None:
    flow, s = _flow_with_input()
    op.map("m", s, str)
    with pytest.raises(ValueError) as info:
        op.map("m", s, str)
    assert str(info.value) == "step 'df.m' already exists; do you have two steps with the same ID?"
    # The failed call added no step.
    assert _ids(flow.substeps) == ["df.inp", "df.m"]


def test_duplicate_id_across_different_operators() -> None:
    flow, s = _flow_with_input()
    with pytest.raises(ValueError, match=r"step 'df\.inp' already exists"):
        op.output("inp", s, TestingSink([]))


def test_duplicate_id_inside_a_custom_operator() -> None:
    @operator
    def twice(step_id: str, up: Stream[int]) -> Stream[int]:
        up = op.map("same", up, abs)
        return op.map("same", up, abs)

    _, s = _flow_with_input()
    with pytest.raises(ValueError, match=r"step 'df\.t\.same' already exists"):
        twice("t", s)


def test_same_inner_id_under_different_outer_ids_is_fine() -> None:
    flow, s = _flow_with_input()
    op.map("a", s, str)
    op.map("b", s, str)
    assert _ids(flow.substeps[1].substeps) == ["df.a.flat_map_batch"]
    assert _ids(flow.substeps[2].substeps) == ["df.b.flat_map_batch"]


@pytest.mark.parametrize(
    "bad, message",
    [
        # Bytewax's wording is kept, for code that matches on it.
        ("a.b", "map: 'step_id' can't contain any periods '.'; got 'a.b'"),
        ("", "map: 'step_id' must not be empty"),
    ],
)
def test_step_id_must_be_nonempty_without_periods(bad: str, message: str) -> None:
    _, s = _flow_with_input()
    with pytest.raises(ValueError, match=re.escape(message)):
        op.map(bad, s, str)


def test_step_id_must_be_a_str() -> None:
    _, s = _flow_with_input()
    with pytest.raises(TypeError, match=re.escape("map: 'step_id' must be a `str`; got 1 of type")):
        op.map(1, s, str)  # type: ignore[arg-type]


# Argument checks at build time.


def test_up_that_is_not_a_stream_is_a_type_error() -> None:
    _flow_with_input()
    message = r"operator 'map' \(step 'm'\).*'up' argument must be a `Stream`; .*up=int.*unpack"
    with pytest.raises(TypeError, match=message):
        op.map("m", 1, str)  # type: ignore[arg-type]


def test_a_list_where_a_stream_goes_asks_to_unpack() -> None:
    _, s = _flow_with_input()
    with pytest.raises(TypeError, match=r"'up' argument must be a `Stream`; got up=list.*unpack"):
        op.map("m", [s], str)  # type: ignore[arg-type]


def test_passing_branch_output_unpacked_is_a_type_error() -> None:
    _, s = _flow_with_input()
    both = op.branch("b", s, bool)
    with pytest.raises(TypeError, match=r"up=BranchOut.*did you forget to unpack"):
        op.map("m", both, str)  # type: ignore[arg-type]


def test_non_stream_among_merge_ups_is_a_type_error() -> None:
    _, s = _flow_with_input()
    with pytest.raises(TypeError, match=r"'ups' argument must be a `Stream`; got 1"):
        op.merge("m", s, 1)  # type: ignore[arg-type]


def test_unknown_keyword_argument_is_a_type_error() -> None:
    _, s = _flow_with_input()
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        op.map("m", s, str, bogus=1)  # type: ignore[call-arg]


def test_too_many_arguments_is_a_type_error() -> None:
    _, s = _flow_with_input()
    with pytest.raises(TypeError, match="too many positional arguments"):
        op.map("m", s, str, 1)  # type: ignore[call-arg]


def test_non_callable_mapper_is_a_type_error_naming_the_step() -> None:
    _, s = _flow_with_input()
    with pytest.raises(TypeError, match=r"'mapper' of step 'm' must be callable; got 5"):
        op.map("m", s, 5)  # type: ignore[arg-type]


def test_input_needs_a_source_and_output_a_sink() -> None:
    flow, s = _flow_with_input()
    with pytest.raises(TypeError, match=r"source of step 'i2' must subclass"):
        op.input("i2", flow, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sink of step 'o2' must subclass"):
        op.output("o2", s, [])  # type: ignore[arg-type]


def test_input_needs_the_dataflow() -> None:
    _, s = _flow_with_input()
    with pytest.raises(TypeError, match="'flow' argument must be a `Dataflow`"):
        op.input("i2", s, TestingSource([]))  # type: ignore[arg-type]


# Flows that cannot run.


def test_flow_without_input_cannot_run() -> None:
    with pytest.raises(RuntimeError, match="error building production dataflow") as info:
        run_main(Dataflow("empty"))
    assert str(info.value.__cause__) == (
        "Dataflow needs to contain at least one input step; add with `fastflow.operators.input`"
    )


def test_flow_without_output_cannot_run() -> None:
    flow, s = _flow_with_input()
    op.map("m", s, str)
    with pytest.raises(RuntimeError, match="error building production dataflow") as info:
        run_main(flow)
    assert "at least one output or inspect step" in str(info.value.__cause__)


def test_inspect_alone_counts_as_output(capsys: pytest.CaptureFixture[str]) -> None:
    flow, s = _flow_with_input()
    op.inspect("i", s)
    run_main(flow)
    assert capsys.readouterr().out == "df.i: 1\ndf.i: 2\n"


# Nesting: the operator decorator.


def test_builtin_composite_operators_nest_their_core_steps() -> None:
    flow, s = _flow_with_input()
    keyed = op.key_on("k", s, str)
    op.output("out", op.count_final("c", keyed, str), TestingSink([]))
    count = flow.substeps[2]
    assert count.step_id == "df.c"
    assert _ids(count.substeps) == ["df.c.key", "df.c.one", "df.c.stateful_batch"]
    assert _ids(count.substeps[0].substeps) == ["df.c.key.flat_map_batch"]
    plan = flatten(flow)
    assert [(step.step_id, step.kind) for step in plan] == [
        ("df.inp", "input"),
        ("df.k.flat_map_batch", "flat_map_batch"),
        ("df.c.key.flat_map_batch", "flat_map_batch"),
        ("df.c.one.flat_map_batch", "flat_map_batch"),
        ("df.c.stateful_batch", "stateful_batch"),
        ("df.out", "output"),
    ]


@operator
def _add_then_double(step_id: str, up: Stream[int], n: int) -> Stream[int]:
    added = op.map("add", up, lambda x: x + n)
    return op.map("double", added, lambda x: x * 2)


@operator
def _twice(step_id: str, up: Stream[int]) -> Stream[int]:
    once = _add_then_double("first", up, 1)
    return _add_then_double("second", once, 0)


def test_custom_operator_nests_step_ids() -> None:
    flow, s = _flow_with_input([1, 2])
    out: List[int] = []
    op.output("out", _add_then_double("calc", s, 10), TestingSink(out))
    calc = flow.substeps[1]
    assert (calc.step_id, calc.step_name) == ("df.calc", "_add_then_double")
    assert _ids(calc.substeps) == ["df.calc.add", "df.calc.double"]
    assert calc.ups == {"up": [s.stream_id]}
    run_main(flow)
    assert out == [22, 24]


def test_custom_operators_nest_several_levels() -> None:
    flow, s = _flow_with_input([1, 2])
    out: List[int] = []
    op.output("out", _twice("t", s), TestingSink(out))
    twice = flow.substeps[1]
    assert _ids(twice.substeps) == ["df.t.first", "df.t.second"]
    assert _ids(twice.substeps[1].substeps) == ["df.t.second.add", "df.t.second.double"]
    assert [step.step_id for step in flatten(flow)] == [
        "df.inp",
        "df.t.first.add.flat_map_batch",
        "df.t.first.double.flat_map_batch",
        "df.t.second.add.flat_map_batch",
        "df.t.second.double.flat_map_batch",
        "df.out",
    ]
    run_main(flow)
    assert out == [8, 12]


def test_custom_operator_can_be_used_twice_with_different_ids() -> None:
    flow, s = _flow_with_input([1])
    out: List[int] = []
    a = _add_then_double("a", s, 1)
    b = _add_then_double("b", s, 2)
    op.output("out", op.merge("m", a, b), TestingSink(out))
    run_main(flow)
    assert out == [4, 6]
    with pytest.raises(ValueError, match=r"step 'df\.a' already exists"):
        _add_then_double("a", s, 3)


def test_custom_operator_needs_step_id_first() -> None:
    with pytest.raises(TypeError, match="must take `step_id` as its first parameter"):

        @operator
        def bad(up: Stream[int], step_id: str) -> Stream[int]:
            return up


def test_custom_operator_without_stream_or_flow_is_a_type_error() -> None:
    @operator
    def lonely(step_id: str, n: int) -> None:
        return None

    with pytest.raises(TypeError, match=r"operator 'lonely' \(step 'x'\) needs a `Stream`"):
        lonely("x", 1)


def test_custom_operator_can_take_the_dataflow() -> None:
    @operator
    def numbers(step_id: str, flow: Dataflow, items: List[int]) -> Stream[int]:
        return op.input("src", flow, TestingSource(items))

    flow = Dataflow("df")
    out: List[int] = []
    op.output("out", numbers("nums", flow, [3, 4]), TestingSink(out))
    assert _ids(flow.substeps[0].substeps) == ["df.nums.src"]
    run_main(flow)
    assert out == [3, 4]


@dataclass(frozen=True)
class _Halves:
    small: Stream[int]
    big: Stream[int]


def test_custom_operator_returning_a_dataclass_of_streams() -> None:
    @operator
    def halves(step_id: str, up: Stream[int], at: int) -> _Halves:
        parts = op.branch("split", up, lambda x: x < at)
        return _Halves(parts.trues, parts.falses)

    flow, s = _flow_with_input([1, 5, 2, 9])
    small: List[int] = []
    big: List[int] = []
    both = halves("h", s, 3)
    op.output("small", both.small, TestingSink(small))
    op.output("big", both.big, TestingSink(big))
    assert flow.substeps[1].downs == {"small": "df.h.split.trues", "big": "df.h.split.falses"}
    run_main(flow)
    assert (small, big) == ([1, 2], [5, 9])


def test_custom_operator_taking_streams_as_star_args() -> None:
    @operator
    def merge_all(step_id: str, *ups: Stream[int]) -> Stream[int]:
        return op.merge("merge", *ups)

    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource([1]))
    b = op.input("b", flow, TestingSource([2]))
    out: List[int] = []
    op.output("out", merge_all("all", a, b), TestingSink(out))
    assert flow.substeps[2].ups == {"ups": [a.stream_id, b.stream_id]}
    assert _ids(flow.substeps[2].substeps) == ["df.all.merge"]
    run_main(flow)
    assert sorted(out) == [1, 2]


def test_custom_operator_taking_streams_as_keyword_args() -> None:
    @operator
    def merge_named(step_id: str, **ups: Stream[int]) -> Stream[int]:
        return op.merge("merge", *ups.values())

    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource([1]))
    b = op.input("b", flow, TestingSource([2]))
    out: List[int] = []
    op.output("out", merge_named("all", x=a, y=b), TestingSink(out))
    assert flow.substeps[2].ups == {"ups": [a.stream_id, b.stream_id]}
    run_main(flow)
    assert sorted(out) == [1, 2]


# Stream scoping: as strict as Bytewax.

_SCOPING = "inconsistent stream scoping"


@operator
def _merge_with_list(step_id: str, up: Stream[int], others: List[Stream[int]]) -> Stream[int]:
    return op.merge("m", up, *others)


def test_streams_in_a_list_argument_are_not_rescoped() -> None:
    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource([1]))
    b = op.input("b", flow, TestingSource([2]))
    with pytest.raises(AssertionError, match=rf"{_SCOPING}.*'merge' \(step 'm'\).*'df.all', 'df'"):
        _merge_with_list("all", a, [b])
    # A tuple is no different.
    with pytest.raises(AssertionError, match=_SCOPING):
        _merge_with_list("all2", a, (b,))  # type: ignore[arg-type]


def test_an_operator_given_only_a_list_of_streams_has_no_scope() -> None:
    @operator
    def merge_list(step_id: str, ups: List[Stream[int]]) -> Stream[int]:
        return op.merge("m", *ups)

    _, s = _flow_with_input()
    with pytest.raises(TypeError, match=r"'ups' argument must be a `Stream`.*`\*ups: Stream`"):
        merge_list("all", [s, s])


def test_streams_in_a_dataclass_argument_are_not_rescoped() -> None:
    @operator
    def merge_halves(step_id: str, up: Stream[int], halves: _Halves) -> Stream[int]:
        return op.merge("m", up, halves.small)

    _, s = _flow_with_input()
    with pytest.raises(AssertionError, match=_SCOPING):
        merge_halves("h", s, _Halves(s, s))


def test_a_stream_captured_from_outside_an_operator_is_a_scoping_error() -> None:
    flow, s = _flow_with_input()
    other = op.input("other", flow, TestingSource([3]))

    @operator
    def with_other(step_id: str, up: Stream[int]) -> Stream[int]:
        return op.merge("m", up, other)

    with pytest.raises(AssertionError, match=_SCOPING):
        with_other("w", s)


def test_an_inner_stream_leaking_out_of_an_operator_is_a_scoping_error() -> None:
    leaked: List[Stream[int]] = []

    @operator
    def leaky(step_id: str, up: Stream[int]) -> Stream[int]:
        inner = op.map("inner", up, abs)
        leaked.append(inner)
        return op.map("out", inner, abs)

    _, s = _flow_with_input()
    out = leaky("l", s)
    with pytest.raises(AssertionError, match=rf"{_SCOPING}.*'df', 'df.l'"):
        op.merge("m", out, leaked[0])


def test_streams_of_two_dataflows_cannot_meet() -> None:
    _, s = _flow_with_input()
    _, t = _flow_with_input()  # another Dataflow, with the same id
    with pytest.raises(AssertionError, match=rf"{_SCOPING}.*another Dataflow"):
        op.merge("m", s, t)


def test_a_failed_scoping_check_adds_no_step() -> None:
    flow = Dataflow("df")
    a = op.input("a", flow, TestingSource([1]))
    b = op.input("b", flow, TestingSource([2]))
    with pytest.raises(AssertionError):
        _merge_with_list("all", a, [b])
    assert _ids(flow.substeps) == ["df.a", "df.b"]


# Streams.


def test_branch_stream_ids_name_the_ports() -> None:
    _, s = _flow_with_input()
    both = op.branch("b", s, bool)
    assert (both.trues.stream_id, both.falses.stream_id) == ("df.b.trues", "df.b.falses")


def test_stream_flow_is_the_dataflow_even_inside_operators() -> None:
    seen: List[Dataflow] = []

    @operator
    def peek(step_id: str, up: Stream[int]) -> Stream[int]:
        seen.append(up.flow())
        return up

    flow, s = _flow_with_input()
    peek("p", op.map("m", s, abs))
    assert s.flow() is flow
    assert seen == [flow] and seen[0] is flow


def test_stream_flow_adds_top_level_steps() -> None:
    flow, s = _flow_with_input([1])
    extra = op.input("extra", s.flow(), TestingSource([2]))
    out: List[int] = []
    op.output("out", op.merge("m", s, extra), TestingSink(out))
    assert "df.extra" in _ids(flow.substeps)
    run_main(flow)
    assert sorted(out) == [1, 2]


def test_then_chains_operators() -> None:
    flow, s = _flow_with_input([1, 2, 3])
    out: List[int] = []
    (
        s.then(op.map, "double", lambda x: x * 2)
        .then(op.filter, "big", lambda x: x > 2)
        .then(op.output, "out", TestingSink(out))
    )
    assert _ids(flow.substeps) == ["df.inp", "df.double", "df.big", "df.out"]
    run_main(flow)
    assert out == [4, 6]


def test_then_passes_keyword_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    flow, s = _flow_with_input([1])
    seen: List[Any] = []
    s.then(op.inspect, "i", inspector=lambda step_id, x: seen.append((step_id, x)))
    run_main(flow)
    assert seen == [("df.i", 1)]
    assert capsys.readouterr().out == ""


def test_then_returns_what_the_operator_returns() -> None:
    _, s = _flow_with_input()
    both = s.then(op.branch, "b", bool)
    assert isinstance(both, op.BranchOut)
    assert s.then(op.output, "out", TestingSink([])) is None


def test_keyed_stream_is_a_stream_alias() -> None:
    flow, s = _flow_with_input([1])
    keyed: KeyedStream[int] = op.key_on("k", s, str)
    assert isinstance(keyed, Stream)
    out: List[Any] = []
    op.output("out", keyed, TestingSink(out))
    run_main(flow)
    assert out == [("1", 1)]


def test_a_stream_can_feed_several_steps() -> None:
    flow, s = _flow_with_input([1, 2])
    a: List[int] = []
    b: List[int] = []
    op.output("a", op.map("inc", s, lambda x: x + 1), TestingSink(a))
    op.output("b", s, TestingSink(b))
    run_main(flow)
    assert (a, b) == ([2, 3], [1, 2])


def test_a_flow_can_run_twice() -> None:
    out: List[int] = []
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, TestingSource([1, 2])), TestingSink(out))
    run_main(flow)
    run_main(flow)
    assert out == [1, 2, 1, 2]

"""``join``: insert modes (first, last, product) x emit modes (complete, final, running).

Expected outputs are the ones observed with Bytewax 0.21.1 (see the team's
behaviour notes, section 3), except where a comment says fastflow differs on
purpose.
"""

from __future__ import annotations

from typing import Any

import pytest
from _helpers import Build

import fastflow.operators as op
from fastflow.dataflow import Dataflow, Stream
from fastflow.errors import FastflowRuntimeError
from fastflow.testing import TestingSource

# Left and right sides arrive interleaved: L(a,1) R(a,x) L(a,2) R(a,y) L(b,10) R(c,z).
JOIN_ITEMS = [
    ("L", ("a", 1)),
    ("R", ("a", "x")),
    ("L", ("a", 2)),
    ("R", ("a", "y")),
    ("L", ("b", 10)),
    ("R", ("c", "z")),
]


JOIN_TABLE = {
    ("first", "complete"): [("a", (1, "x")), ("a", (2, "y"))],
    ("first", "final"): [("a", (1, "x")), ("b", (10, None)), ("c", (None, "z"))],
    ("first", "running"): [
        ("a", (1, None)),
        ("a", (1, "x")),
        ("a", (1, "x")),
        ("a", (1, "x")),
        ("b", (10, None)),
        ("c", (None, "z")),
    ],
    ("last", "complete"): [("a", (1, "x")), ("a", (2, "y"))],
    ("last", "final"): [("a", (2, "y")), ("b", (10, None)), ("c", (None, "z"))],
    ("last", "running"): [
        ("a", (1, None)),
        ("a", (1, "x")),
        ("a", (2, "x")),
        ("a", (2, "y")),
        ("b", (10, None)),
        ("c", (None, "z")),
    ],
    ("product", "complete"): [("a", (1, "x")), ("a", (2, "y"))],
    ("product", "final"): [
        ("a", (1, "x")),
        ("a", (1, "y")),
        ("a", (2, "x")),
        ("a", (2, "y")),
        ("b", (10, None)),
        ("c", (None, "z")),
    ],
    ("product", "running"): [
        ("a", (1, None)),
        ("a", (1, "x")),
        ("a", (1, "x")),
        ("a", (2, "x")),
        ("a", (1, "x")),
        ("a", (1, "y")),
        ("a", (2, "x")),
        ("a", (2, "y")),
        ("b", (10, None)),
        ("c", (None, "z")),
    ],
}


def _join_left_right(**modes: str) -> Build:
    def build(s: Stream[Any]) -> Stream[Any]:
        sides = op.branch("side", s, lambda tagged: tagged[0] == "L")
        left = op.map("left", sides.trues, lambda tagged: tagged[1])
        right = op.map("right", sides.falses, lambda tagged: tagged[1])
        return op.join("j", left, right, **modes)

    return build


@pytest.mark.parametrize(("insert_mode", "emit_mode"), sorted(JOIN_TABLE))
def test_join_modes(run_items: Any, insert_mode: str, emit_mode: str) -> None:
    out = run_items(JOIN_ITEMS, _join_left_right(insert_mode=insert_mode, emit_mode=emit_mode))
    assert out == JOIN_TABLE[(insert_mode, emit_mode)]


def test_join_defaults_to_last_and_complete(run_items_on: Any) -> None:
    assert run_items_on(JOIN_ITEMS, _join_left_right()) == JOIN_TABLE[("last", "complete")]


@pytest.mark.parametrize("insert_mode", ["first", "last", "product"])
def test_join_final_emits_in_key_order(run_items: Any, insert_mode: str) -> None:
    items = [("R", ("c", "z")), ("L", ("b", 10)), ("L", ("a", 1))]
    out = run_items(items, _join_left_right(insert_mode=insert_mode, emit_mode="final"))
    assert out == [("a", (1, None)), ("b", (10, None)), ("c", (None, "z"))]


def test_join_of_one_side(run_items_on: Any) -> None:
    out = run_items_on([("a", 1), ("a", 2)], lambda s: op.join("j", s))
    assert out == [("a", (1,)), ("a", (2,))]


def test_join_of_three_sides(run_items: Any) -> None:
    def build(s: Stream[Any]) -> Stream[Any]:
        tens = op.map_value("tens", s, lambda v: v * 10)
        negs = op.map_value("negs", s, lambda v: -v)
        return op.join("j", s, tens, negs)

    assert run_items([("a", 1), ("b", 2)], build) == [("a", (1, 10, -1)), ("b", (2, 20, -2))]


def test_join_same_stream_twice(run_items: Any) -> None:
    items = [("a", 1), ("b", 2)]
    assert run_items(items, lambda s: op.join("j", s, s, emit_mode="running")) == [
        ("a", (1, None)),
        ("a", (1, 1)),
        ("b", (2, None)),
        ("b", (2, 2)),
    ]
    assert run_items(items, lambda s: op.join("j", s, s)) == [("a", (1, 1)), ("b", (2, 2))]


@pytest.mark.parametrize(
    ("modes", "message"),
    [
        ({"insert_mode": "bogus"}, "unknown join insert mode 'bogus'"),
        ({"emit_mode": "bogus"}, "unknown join emit mode 'bogus'"),
    ],
)
def test_join_rejects_unknown_modes(modes: dict, message: str) -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(ValueError, match=message):
        op.join("j", s, s, **modes)


def test_join_needs_a_side() -> None:
    with pytest.raises(TypeError, match="'j'"):
        op.join("j")


def test_join_rejects_non_pairs_and_non_str_keys(run_items: Any) -> None:
    # Like Bytewax, join tags each side's values first, so a non-pair fails there.
    with pytest.raises(FastflowRuntimeError, match="'df.x.add_side_0'") as info:
        run_items([1], lambda s: op.join("x", s))
    assert isinstance(info.value.__cause__, TypeError)
    with pytest.raises(TypeError, match="'df.x.stateful_batch'"):
        run_items([(1, 1)], lambda s: op.join("x", s))

"""``fold_final``, ``reduce_final``, ``count_final``, ``max_final``, ``min_final``.

These emit once per key at end of input, in sorted (code point) key order, as
Bytewax 0.21.1 does. Expected outputs are the ones observed with Bytewax 0.21.1 (see the team's
behaviour notes, section 3), except where a comment says fastflow differs on
purpose.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from _helpers import BATCH_SIZES, EOF, add

import fastflow.operators as op

# fold_final


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_fold_final_emits_at_eof_in_key_order(run_items: Any, batch_size: int) -> None:
    out = run_items(
        [("b", 1), ("a", 2), ("c", 3), ("b", 4)],
        lambda s: op.fold_final("ff", s, lambda: 0, add),
        batch_size,
    )
    assert out == [("a", 2), ("b", 5), ("c", 3)]


@pytest.mark.parametrize("batch_size", [1, 8])
def test_eof_key_order_is_code_point_order(run_items: Any, batch_size: int) -> None:
    keys = ["b", "a", "10", "9", "B", "é", "_", "a"]
    out = run_items(
        [(k, 1) for k in keys], lambda s: op.fold_final("ff", s, lambda: 0, add), batch_size
    )
    assert out == [("10", 1), ("9", 1), ("B", 1), ("_", 1), ("a", 2), ("b", 1), ("é", 1)]


def test_fold_final_builds_a_fresh_accumulator_per_key(run_items_on: Any) -> None:
    def append(acc: List[int], x: int) -> List[int]:
        acc.append(x)
        return acc

    out = run_items_on(
        [("b", 1), ("a", 2), ("b", 4)], lambda s: op.fold_final("ff", s, list, append)
    )
    assert sorted(out) == [("a", [2]), ("b", [1, 4])]


def test_fold_final_keeps_a_none_accumulator(run_items_on: Any) -> None:
    out = run_items_on(
        [("b", 1), ("a", 2), ("b", 4)],
        lambda s: op.fold_final("ff", s, lambda: None, lambda acc, x: None),
    )
    assert sorted(out) == [("a", None), ("b", None)]


def test_fold_final_emits_only_what_came_before_an_eof_marker(run_items_on: Any) -> None:
    out = run_items_on(
        [("a", 1), ("b", 1), EOF(), ("a", 5)], lambda s: op.fold_final("ff", s, lambda: 0, add)
    )
    assert sorted(out) == [("a", 1), ("b", 1)]


def test_fold_final_on_empty_input_emits_nothing(run_items_on: Any) -> None:
    assert run_items_on([], lambda s: op.fold_final("ff", s, lambda: 0, add)) == []


# reduce_final, count_final, max_final, min_final


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_reduce_final(run_items_on: Any, batch_size: int) -> None:
    out = run_items_on(
        [("b", 1), ("a", 2), ("b", 4)],
        lambda s: op.reduce_final("rf", s, add),
        batch_size,
    )
    assert sorted(out) == [("a", 2), ("b", 5)]


def test_reduce_final_keeps_a_lone_value_without_calling_the_reducer(run_items: Any) -> None:
    calls: List[Any] = []

    def reducer(a: str, b: str) -> str:
        calls.append((a, b))
        return a + b

    out = run_items(
        [("a", "x"), ("b", "y"), ("a", "z")], lambda s: op.reduce_final("rf", s, reducer)
    )
    assert out == [("a", "xz"), ("b", "y")]
    assert calls == [("x", "z")]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_count_final_keys_an_unkeyed_stream(run_items_on: Any, batch_size: int) -> None:
    out = run_items_on(
        ["z", "x", "y", "x", "x"], lambda s: op.count_final("cf", s, lambda w: w), batch_size
    )
    assert out == [("x", 3), ("y", 1), ("z", 1)]


MAX_MIN_ITEMS = [("b", 1), ("a", 3), ("a", 5), ("c", 0), ("a", 4)]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_max_final_and_min_final(run_items_on: Any, batch_size: int) -> None:
    maxes = run_items_on(MAX_MIN_ITEMS, lambda s: op.max_final("mx", s), batch_size)
    mins = run_items_on(MAX_MIN_ITEMS, lambda s: op.min_final("mn", s), batch_size)
    assert sorted(maxes) == [("a", 5), ("b", 1), ("c", 0)]
    assert sorted(mins) == [("a", 3), ("b", 1), ("c", 0)]


def _by_v(d: dict) -> int:
    return d["v"]


def test_max_final_by_keeps_the_first_of_ties(run_items_on: Any) -> None:
    items = [("a", {"v": 3}), ("a", {"v": 5}), ("a", {"v": 5, "second": 1})]
    assert run_items_on(items, lambda s: op.max_final("mx", s, by=_by_v)) == [("a", {"v": 5})]


def test_min_final_by_keeps_the_first_of_ties(run_items_on: Any) -> None:
    items = [("a", {"v": 3}), ("a", {"v": 3, "second": 1}), ("a", {"v": 5})]
    assert run_items_on(items, lambda s: op.min_final("mn", s, by=_by_v)) == [("a", {"v": 3})]

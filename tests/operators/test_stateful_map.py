"""``stateful_map`` and ``stateful_flat_map``: per-key state, builders, discards, mapper results.

Expected outputs are the ones observed with Bytewax 0.21.1 (see the team's
behaviour notes, section 3), except where a comment says fastflow differs on
purpose: within one batch, fastflow handles keys in arrival order (Bytewax sorts
them).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import pytest
from _helpers import BATCH_SIZES, running_sum

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.testing import TestingSource

# stateful_map


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_stateful_map_gives_none_to_a_new_key(run_items: Any, batch_size: int) -> None:
    out = run_items(
        [("a", 1), ("b", 2), ("a", 3)],
        lambda s: op.stateful_map("sm", s, running_sum),
        batch_size,
    )
    assert out == [("a", (None, 1)), ("b", (None, 2)), ("a", (1, 3))]


def test_stateful_map_emits_none_values(run_items_on: Any) -> None:
    out = run_items_on(
        [("a", 1), ("a", 2)], lambda s: op.stateful_map("sm", s, lambda st, x: (x, None))
    )
    assert out == [("a", None), ("a", None)]


def test_stateful_map_mapper_by_keyword(run_items_on: Any) -> None:
    out = run_items_on([("a", 1), ("a", 2)], lambda s: op.stateful_map("sm", s, mapper=running_sum))
    assert out == [("a", (None, 1)), ("a", (1, 2))]


def _sum_until_three(state: Optional[int], x: int) -> Tuple[Optional[int], Tuple[Any, int]]:
    total = (state or 0) + x
    return (None if total >= 3 else total), (state, total)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_stateful_map_none_state_discards_the_key(run_items: Any, batch_size: int) -> None:
    # a reaches 3 and is forgotten: its next value starts again from None.
    out = run_items(
        [("a", 1), ("a", 2), ("b", 5), ("a", 1), ("a", 1)],
        lambda s: op.stateful_map("sm", s, _sum_until_three),
        batch_size,
    )
    assert out == [
        ("a", (None, 1)),
        ("a", (1, 3)),
        ("b", (None, 5)),
        ("a", (None, 1)),
        ("a", (1, 2)),
    ]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_stateful_map_tutorial_builder_form(run_items_on: Any, batch_size: int) -> None:
    # The recovery tutorial's `stateful_map(step_id, up, builder, mapper)`.
    def update_sum(running: int, x: int) -> Tuple[int, int]:
        running += x
        return running, running

    out = run_items_on(
        [0, 1, 2],
        lambda s: op.stateful_map(
            "running_count", op.key_on("key", s, lambda _x: "ALL"), lambda: 0, update_sum
        ),
        batch_size,
    )
    assert out == [("ALL", 0), ("ALL", 1), ("ALL", 3)]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_builder_form_builds_again_after_a_discard(run_items: Any, batch_size: int) -> None:
    built: List[int] = []

    def builder() -> int:
        built.append(1)
        return 0

    def add(acc: int, x: int) -> Tuple[Optional[int], int]:
        return (None if acc + x >= 3 else acc + x), acc + x

    out = run_items(
        [("a", 1), ("a", 2), ("a", 1), ("b", 4)],
        lambda s: op.stateful_map("sm", s, builder, add),
        batch_size,
    )
    assert out == [("a", 1), ("a", 3), ("a", 1), ("b", 4)]
    assert len(built) == 3  # a, a again after its discard, b


def test_builder_state_is_not_shared_between_keys(run_items: Any) -> None:
    def append(acc: List[int], x: int) -> Tuple[List[int], List[int]]:
        acc.append(x)
        return acc, list(acc)

    out = run_items(
        [("a", 1), ("b", 2), ("a", 3)], lambda s: op.stateful_map("sm", s, list, append)
    )
    assert out == [("a", [1]), ("b", [2]), ("a", [1, 3])]


def test_stateful_map_takes_at_most_four_arguments() -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(TypeError, match="'sm'"):
        op.stateful_map("sm", s, lambda: 0, running_sum, running_sum)


def test_stateful_map_builder_must_be_callable() -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(TypeError, match="'builder'.*'sm'"):
        op.stateful_map("sm", s, 0, running_sum)


def test_stateful_map_handles_keys_in_arrival_order_within_a_batch(run_items: Any) -> None:
    # Bytewax sorts the keys of a batch: [a2, a4, b1, b3] for one batch of 4.
    # fastflow keeps arrival order (documented difference); per key the order
    # is the same in both.
    items = [("b", 1), ("a", 2), ("b", 3), ("a", 4)]
    for batch_size in (1, 4):
        out = run_items(items, lambda s: op.stateful_map("sm", s, lambda st, x: (x, x)), batch_size)
        assert out == items


# stateful_flat_map


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_stateful_flat_map_emits_every_item(run_items_on: Any, batch_size: int) -> None:
    out = run_items_on(
        [("a", 1), ("a", 2)],
        lambda s: op.stateful_flat_map("sfm", s, lambda st, x: ((st or 0) + x, [st, x])),
        batch_size,
    )
    assert out == [("a", None), ("a", 1), ("a", 1), ("a", 2)]


def test_stateful_flat_map_takes_any_iterable_and_discards_on_none(run_items: Any) -> None:
    def mapper(state: Optional[int], x: int) -> Tuple[Optional[int], Any]:
        if x == 0:
            return None, iter([state])  # discard a, emitting its last state
        return (state or 0) + x, (v for v in (state, x))

    out = run_items(
        [("a", 2), ("a", 0), ("a", 1), ("b", 3)], lambda s: op.stateful_flat_map("sfm", s, mapper)
    )
    assert out == [
        ("a", None),
        ("a", 2),
        ("a", 2),
        ("a", None),
        ("a", 1),
        ("b", None),
        ("b", 3),
    ]


# What the mapper returns


@pytest.mark.parametrize("bad", [5, (1, 2, 3), (1,), None])
@pytest.mark.parametrize("op_name", ["stateful_map", "stateful_flat_map"])
def test_mapper_must_return_a_pair(run_items: Any, op_name: str, bad: Any) -> None:
    mapper_op = getattr(op, op_name)
    with pytest.raises(FastflowRuntimeError) as info:
        run_items([("a", 1)], lambda s: mapper_op("x", s, lambda st, v: bad))
    message = str(info.value)
    assert "'df.x" in message
    assert "2-tuple" in message
    assert repr(bad) in message


def test_mapper_may_return_a_list_pair(run_items_on: Any) -> None:
    # Bytewax unpacks the mapper's result, so a 2-item list works there too.
    out = run_items_on(
        [("a", 1), ("a", 2)], lambda s: op.stateful_map("x", s, lambda st, v: [v, (st, v)])
    )
    assert out == [("a", (None, 1)), ("a", (1, 2))]

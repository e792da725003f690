"""The join rules ``join`` and ``join_window`` share (``fastflow.operators._join``).

The flows of both operators are tested in ``test_join.py`` and
``test_windowing.py``; here: the rules themselves, and that a join snapshot in
the layout fastflow has always written (one list of held values per side)
resumes.
"""

from __future__ import annotations

import pytest

import fastflow.operators as op
from fastflow._cext import codec
from fastflow.operators._join import JoinState, check_join


def test_complete_emits_once_every_side_has_a_value_then_starts_over() -> None:
    state = JoinState.build(2, "last", "complete", None)
    assert state.insert(0, "a") == [] and state.insert(0, "b") == []
    assert state.insert(1, 1) == [("b", 1)]
    assert state.is_empty() and state.to_snapshot() == [[], []]


def test_first_product_and_running() -> None:
    first = JoinState.build(2, "first", "running", None)
    assert first.insert(0, "a") == [("a", None)]
    assert first.insert(0, "b") == [("a", None)], "first keeps the first"
    product = JoinState.build(2, "product", "running", None)
    product.insert(0, "a")
    product.insert(0, "b")
    assert product.insert(1, 1) == [("a", 1), ("b", 1)]
    assert product.final() == [], "only the final mode emits at the end"


def test_absorbing_a_merged_window() -> None:
    def held(mode: str, mine: list, theirs: list) -> list:
        state = JoinState(mode, "final", [mine, []])
        state.absorb(JoinState(mode, "final", [theirs, [2]]))
        return state.to_snapshot()

    assert held("first", ["mine"], ["theirs"]) == [["theirs"], [2]]
    assert held("last", ["mine"], ["theirs"]) == [["mine"], [2]]
    assert held("product", ["mine"], ["theirs"]) == [["mine", "theirs"], [2]]


@pytest.mark.parametrize("args, error", [
    (("nope", "final", 2), "unknown join insert mode 'nope'"),
    (("last", "nope", 2), "unknown join emit mode 'nope'"),
    (("last", "final", 0), "join step 's' needs at least one side"),
])
def test_checks(args: tuple, error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        check_join("join", "s", *args)


def test_join_resumes_from_a_snapshot_in_the_stored_layout() -> None:
    stored = codec.encode([[("k", {"x"})], []])  # what a run before this layout had stored
    logic = op._JoinLogic(JoinState.build(2, "product", "final", codec.decode(stored)))
    assert logic.on_batch([(1, 7), (0, "late")]) == ([], False)
    assert logic.snapshot() == [[("k", {"x"}), "late"], [7]]
    assert logic.on_eof() == ([(("k", {"x"}), 7), ("late", 7)], logic.DISCARD)

"""Keyed stateful operators: results, key order, logic hooks and errors.

Expected outputs are the ones observed with Bytewax 0.21.1 (see the team's
behaviour notes, section 3), except where a comment says fastflow differs on
purpose: within one batch, fastflow handles keys in arrival order (Bytewax sorts
them); at end of input both emit in sorted key order.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, List, Optional, Tuple

import pytest

import fastflow.operators as op
from fastflow.dataflow import Dataflow, Stream
from fastflow.errors import FastflowRuntimeError
from fastflow.operators import StatefulBatchLogic, StatefulLogic
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, TimeTestingGetter, run_main

EOF = TestingSource.EOF
PAUSE = TestingSource.PAUSE
ABORT = TestingSource.ABORT
TINY_EPOCH = timedelta(microseconds=1)
BATCH_SIZES = [1, 2, 3, 100]
Build = Callable[[Stream[Any]], Stream[Any]]


def _running_sum(state: Optional[int], x: int) -> Tuple[int, Tuple[Optional[int], int]]:
    return (state or 0) + x, (state, x)


def _add(acc: int, x: int) -> int:
    return acc + x


# stateful_map


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_stateful_map_gives_none_to_a_new_key(run_items: Any, batch_size: int) -> None:
    out = run_items(
        [("a", 1), ("b", 2), ("a", 3)],
        lambda s: op.stateful_map("sm", s, _running_sum),
        batch_size,
    )
    assert out == [("a", (None, 1)), ("b", (None, 2)), ("a", (1, 3))]


def test_stateful_map_emits_none_values(run_items: Any) -> None:
    out = run_items(
        [("a", 1), ("a", 2)], lambda s: op.stateful_map("sm", s, lambda st, x: (x, None))
    )
    assert out == [("a", None), ("a", None)]


def test_stateful_map_mapper_by_keyword(run_items: Any) -> None:
    out = run_items([("a", 1), ("a", 2)], lambda s: op.stateful_map("sm", s, mapper=_running_sum))
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
def test_stateful_map_tutorial_builder_form(run_items: Any, batch_size: int) -> None:
    # The recovery tutorial's `stateful_map(step_id, up, builder, mapper)`.
    def update_sum(running: int, x: int) -> Tuple[int, int]:
        running += x
        return running, running

    out = run_items(
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
        op.stateful_map("sm", s, lambda: 0, _running_sum, _running_sum)


def test_stateful_map_builder_must_be_callable() -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(TypeError, match="'builder'.*'sm'"):
        op.stateful_map("sm", s, 0, _running_sum)


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
def test_stateful_flat_map_emits_every_item(run_items: Any, batch_size: int) -> None:
    out = run_items(
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


# fold_final, reduce_final, count_final, max_final, min_final


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_fold_final_emits_at_eof_in_key_order(run_items: Any, batch_size: int) -> None:
    out = run_items(
        [("b", 1), ("a", 2), ("c", 3), ("b", 4)],
        lambda s: op.fold_final("ff", s, lambda: 0, _add),
        batch_size,
    )
    assert out == [("a", 2), ("b", 5), ("c", 3)]


@pytest.mark.parametrize("batch_size", [1, 8])
def test_eof_key_order_is_code_point_order(run_items: Any, batch_size: int) -> None:
    keys = ["b", "a", "10", "9", "B", "é", "_", "a"]
    out = run_items(
        [(k, 1) for k in keys], lambda s: op.fold_final("ff", s, lambda: 0, _add), batch_size
    )
    assert out == [("10", 1), ("9", 1), ("B", 1), ("_", 1), ("a", 2), ("b", 1), ("é", 1)]


def test_fold_final_builds_a_fresh_accumulator_per_key(run_items: Any) -> None:
    def append(acc: List[int], x: int) -> List[int]:
        acc.append(x)
        return acc

    out = run_items([("b", 1), ("a", 2), ("b", 4)], lambda s: op.fold_final("ff", s, list, append))
    assert out == [("a", [2]), ("b", [1, 4])]


def test_fold_final_keeps_a_none_accumulator(run_items: Any) -> None:
    out = run_items(
        [("b", 1), ("a", 2), ("b", 4)],
        lambda s: op.fold_final("ff", s, lambda: None, lambda acc, x: None),
    )
    assert out == [("a", None), ("b", None)]


def test_fold_final_emits_only_what_came_before_an_eof_marker(run_items: Any) -> None:
    out = run_items(
        [("a", 1), ("b", 1), EOF(), ("a", 5)], lambda s: op.fold_final("ff", s, lambda: 0, _add)
    )
    assert out == [("a", 1), ("b", 1)]


def test_fold_final_on_empty_input_emits_nothing(run_items: Any) -> None:
    assert run_items([], lambda s: op.fold_final("ff", s, lambda: 0, _add)) == []


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_reduce_final(run_items: Any, batch_size: int) -> None:
    out = run_items(
        [("b", 1), ("a", 2), ("b", 4)],
        lambda s: op.reduce_final("rf", s, _add),
        batch_size,
    )
    assert out == [("a", 2), ("b", 5)]


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
def test_count_final_keys_an_unkeyed_stream(run_items: Any, batch_size: int) -> None:
    out = run_items(
        ["z", "x", "y", "x", "x"], lambda s: op.count_final("cf", s, lambda w: w), batch_size
    )
    assert out == [("x", 3), ("y", 1), ("z", 1)]


MAX_MIN_ITEMS = [("b", 1), ("a", 3), ("a", 5), ("c", 0), ("a", 4)]


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_max_final_and_min_final(run_items: Any, batch_size: int) -> None:
    maxes = run_items(MAX_MIN_ITEMS, lambda s: op.max_final("mx", s), batch_size)
    mins = run_items(MAX_MIN_ITEMS, lambda s: op.min_final("mn", s), batch_size)
    assert maxes == [("a", 5), ("b", 1), ("c", 0)]
    assert mins == [("a", 3), ("b", 1), ("c", 0)]


def _by_v(d: dict) -> int:
    return d["v"]


def test_max_final_by_keeps_the_first_of_ties(run_items: Any) -> None:
    items = [("a", {"v": 3}), ("a", {"v": 5}), ("a", {"v": 5, "second": 1})]
    assert run_items(items, lambda s: op.max_final("mx", s, by=_by_v)) == [("a", {"v": 5})]


def test_min_final_by_keeps_the_first_of_ties(run_items: Any) -> None:
    items = [("a", {"v": 3}), ("a", {"v": 3, "second": 1}), ("a", {"v": 5})]
    assert run_items(items, lambda s: op.min_final("mn", s, by=_by_v)) == [("a", {"v": 3})]


# collect


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def test_collect_emits_full_lists_then_the_rest_at_eof(run_items: Any, batch_size: int) -> None:
    out = run_items(
        [("a", 1), ("a", 2), ("b", 3), ("a", 4)],
        lambda s: op.collect("c", s, timedelta(seconds=60), 2),
        batch_size,
    )
    assert out == [("a", [1, 2]), ("a", [4]), ("b", [3])]


def test_collect_flushes_at_eof_in_key_order(run_items: Any) -> None:
    out = run_items(
        [("b", 1), ("a", 2), ("c", 3), ("a", 4)],
        lambda s: op.collect("c", s, timedelta(seconds=60), 10),
    )
    assert out == [("a", [2, 4]), ("b", [1]), ("c", [3])]


def test_collect_max_size_one_emits_every_value(run_items: Any) -> None:
    out = run_items(
        [("a", 1), ("b", 2), ("a", 3)], lambda s: op.collect("c", s, timedelta(seconds=60), 1)
    )
    assert out == [("a", [1]), ("b", [2]), ("a", [3])]


def test_collect_emits_after_timeout(run_items: Any) -> None:
    # a1, a2 arrive in one batch; the 0.2 s timeout passes during the 1 s pause.
    out = run_items(
        [("a", 1), ("a", 2), PAUSE(timedelta(seconds=1)), ("a", 3)],
        lambda s: op.collect("c", s, timedelta(seconds=0.2), 10),
        batch_size=2,
    )
    assert out == [("a", [1, 2]), ("a", [3])]


def test_collect_timeout_runs_per_key(run_items: Any) -> None:
    out = run_items(
        [("b", 1), ("a", 2), PAUSE(timedelta(seconds=1)), ("a", 3), ("c", 4)],
        lambda s: op.collect("c", s, timedelta(seconds=0.2), 10),
        batch_size=2,
    )
    # Timers that fire together go in key order, like at EOF.
    assert out == [("a", [2]), ("b", [1]), ("a", [3]), ("c", [4])]


@pytest.mark.parametrize("max_size", [0, -1])
def test_collect_needs_a_positive_max_size(max_size: int) -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(ValueError, match="max_size"):
        op.collect("c", s, timedelta(seconds=1), max_size)


# join

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


def test_join_defaults_to_last_and_complete(run_items: Any) -> None:
    assert run_items(JOIN_ITEMS, _join_left_right()) == JOIN_TABLE[("last", "complete")]


@pytest.mark.parametrize("insert_mode", ["first", "last", "product"])
def test_join_final_emits_in_key_order(run_items: Any, insert_mode: str) -> None:
    items = [("R", ("c", "z")), ("L", ("b", 10)), ("L", ("a", 1))]
    out = run_items(items, _join_left_right(insert_mode=insert_mode, emit_mode="final"))
    assert out == [("a", (1, None)), ("b", (10, None)), ("c", (None, "z"))]


def test_join_of_one_side(run_items: Any) -> None:
    out = run_items([("a", 1), ("a", 2)], lambda s: op.join("j", s))
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


# enrich_cached


def _enrich(
    ttl: Optional[timedelta], items: List[Tuple[str, float]]
) -> Tuple[List[Any], List[str]]:
    """Run enrich_cached on (key, seconds to advance the clock after the lookup) items."""
    clock = TimeTestingGetter(datetime(2024, 1, 1, tzinfo=timezone.utc))
    calls: List[str] = []

    def getter(key: str) -> str:
        calls.append(key)
        return f"{key}{len(calls)}"

    def mapper(cache: op.TTLCache, item: Tuple[str, float]) -> str:
        key, seconds = item
        value = cache.get(key)
        clock.advance(timedelta(seconds=seconds))
        return value

    extra = {} if ttl is None else {"ttl": ttl}
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(items))
    s = op.enrich_cached("e", s, getter, mapper, _now_getter=clock.get, **extra)
    op.output("out", s, TestingSink(out))
    run_main(flow)
    return out, calls


def test_enrich_cached_calls_the_getter_once_per_key_by_default() -> None:
    out, calls = _enrich(None, [("a", 0), ("b", 1e6), ("a", 1e6), ("a", 0)])
    assert out == ["a1", "b2", "a1", "a1"]
    assert calls == ["a", "b"]


def test_enrich_cached_refetches_once_older_than_ttl() -> None:
    # Like Bytewax: a value exactly ttl old is still used; older is fetched again.
    out, calls = _enrich(timedelta(seconds=10), [("a", 5), ("a", 5), ("a", 0.5), ("a", 0)])
    assert out == ["a1", "a1", "a1", "a2"]
    assert calls == ["a", "a"]


def test_enrich_cached_ttl_zero_with_a_still_clock_hits_the_cache() -> None:
    out, calls = _enrich(timedelta(0), [("a", 0), ("a", 0), ("b", 1), ("a", 0)])
    assert out == ["a1", "a1", "b2", "a3"]
    assert calls == ["a", "b", "a"]


def test_enrich_cached_remove_forces_a_new_lookup() -> None:
    calls: List[str] = []

    def getter(key: str) -> int:
        calls.append(key)
        return len(calls)

    def mapper(cache: op.TTLCache, key: str) -> int:
        value = cache.get(key)
        if key == "drop":
            cache.remove(key)
        return value

    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(["a", "drop", "a", "drop"]))
    op.output("out", op.enrich_cached("e", s, getter, mapper), TestingSink(out))
    run_main(flow)
    assert out == [1, 2, 1, 3]
    assert calls == ["a", "drop", "drop"]


# StatefulLogic and StatefulBatchLogic hooks


@pytest.mark.parametrize("cls", [StatefulLogic, StatefulBatchLogic])
def test_retain_and_discard_constants(cls: type) -> None:
    assert cls.RETAIN is False
    assert cls.DISCARD is True


def test_logic_defaults() -> None:
    class Item(StatefulLogic):
        def on_item(self, value: Any) -> Any:
            return [], self.RETAIN

        def snapshot(self) -> None:
            return None

    class Batch(StatefulBatchLogic):
        def on_batch(self, values: Any) -> Any:
            return [], self.RETAIN

        def snapshot(self) -> None:
            return None

    for logic in (Item(), Batch()):
        assert tuple(logic.on_notify()[0]) == ()
        assert logic.on_notify()[1] is False
        assert tuple(logic.on_eof()[0]) == ()
        assert logic.on_eof()[1] is False
        assert logic.notify_at() is None


def test_logic_needs_its_abstract_methods() -> None:
    class NoSnapshot(StatefulLogic):
        def on_item(self, value: Any) -> Any:
            return [], self.RETAIN

    class NoOnBatch(StatefulBatchLogic):
        def snapshot(self) -> None:
            return None

    with pytest.raises(TypeError):
        NoSnapshot()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        NoOnBatch()  # type: ignore[abstract]


class Recorder:
    """A call log shared by the logic objects of one run; each object has a number."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []
        self.built = 0

    def by_logic(self) -> dict:
        per: dict = {}
        for number, *call in self.calls:
            per.setdefault(number, []).append(tuple(call))
        return per


class Traced(StatefulLogic):
    """Counts values; "discard" discards, "notify" asks for on_notify in 0.2 s."""

    def __init__(self, rec: Recorder, resume: Any) -> None:
        self.rec, self.number = rec, rec.built
        rec.built += 1
        self.n = resume or 0
        self.due: Optional[datetime] = None
        self._log("build", resume)

    def _log(self, *call: Any) -> None:
        self.rec.calls.append((self.number, *call))

    def on_item(self, value: Any) -> Any:
        self.n += 1
        self._log("on_item", value)
        if value == "discard":
            return [("disc", self.n)], self.DISCARD
        if value == "notify":
            self.due = datetime.now(timezone.utc) + timedelta(seconds=0.2)
        return [("item", value)], self.RETAIN

    def on_notify(self) -> Any:
        self._log("on_notify")
        self.due = None
        return [("notified", self.n)], self.RETAIN

    def on_eof(self) -> Any:
        self._log("on_eof")
        return [("eof", self.n)], self.RETAIN

    def notify_at(self) -> Optional[datetime]:
        self._log("notify_at", self.due is not None)
        return self.due

    def snapshot(self) -> int:
        self._log("snapshot", self.n)
        return self.n


def test_stateful_logic_call_sequence(run_items: Any) -> None:
    rec = Recorder()
    items = [
        ("a", 1),
        ("a", "discard"),
        ("a", 2),
        ("a", "notify"),
        PAUSE(timedelta(seconds=1)),
        ("b", 3),
    ]
    out = run_items(items, lambda s: op.stateful("st", s, lambda r: Traced(rec, r)))
    assert out == [
        ("a", ("item", 1)),
        ("a", ("disc", 2)),
        ("a", ("item", 2)),
        ("a", ("item", "notify")),
        ("a", ("notified", 2)),
        ("b", ("item", 3)),
        ("a", ("eof", 2)),
        ("b", ("eof", 1)),
    ]
    # Logic 0 is a's first (discarded), 1 is a's second, 2 is b's. notify_at
    # follows every callback of a retained key, never a discard.
    assert rec.by_logic() == {
        0: [("build", None), ("on_item", 1), ("notify_at", False), ("on_item", "discard")],
        1: [
            ("build", None),
            ("on_item", 2),
            ("notify_at", False),
            ("on_item", "notify"),
            ("notify_at", True),
            ("on_notify",),
            ("notify_at", False),
            ("on_eof",),
            ("notify_at", False),
        ],
        2: [
            ("build", None),
            ("on_item", 3),
            ("notify_at", False),
            ("on_eof",),
            ("notify_at", False),
        ],
    }
    # Across keys, the callbacks run in the order Bytewax runs them.
    assert [(n, c[0]) for n, *c in rec.calls if c[0] != "notify_at"] == [
        (0, "build"),
        (0, "on_item"),
        (0, "on_item"),
        (1, "build"),
        (1, "on_item"),
        (1, "on_item"),
        (1, "on_notify"),
        (2, "build"),
        (2, "on_item"),
        (1, "on_eof"),
        (2, "on_eof"),
    ]


def test_discard_from_on_notify_rebuilds_on_the_next_value(run_items: Any) -> None:
    rec = Recorder()

    class DiscardOnNotify(Traced):
        def on_notify(self) -> Any:
            super().on_notify()
            return [("notified", self.n)], self.DISCARD

    items = [("a", "notify"), PAUSE(timedelta(seconds=1)), ("a", 3)]
    out = run_items(items, lambda s: op.stateful("st", s, lambda r: DiscardOnNotify(rec, r)))
    assert out == [
        ("a", ("item", "notify")),
        ("a", ("notified", 1)),
        ("a", ("item", 3)),
        ("a", ("eof", 1)),
    ]
    assert rec.by_logic() == {
        0: [("build", None), ("on_item", "notify"), ("notify_at", True), ("on_notify",)],
        1: [
            ("build", None),
            ("on_item", 3),
            ("notify_at", False),
            ("on_eof",),
            ("notify_at", False),
        ],
    }


def test_discard_from_on_eof_skips_notify_at(run_items: Any) -> None:
    rec = Recorder()

    class DiscardOnEof(Traced):
        def on_eof(self) -> Any:
            super().on_eof()
            return [("eof", self.n)], self.DISCARD

    out = run_items(
        [("b", 1), ("a", 2)], lambda s: op.stateful("st", s, lambda r: DiscardOnEof(rec, r))
    )
    assert out == [("b", ("item", 1)), ("a", ("item", 2)), ("a", ("eof", 1)), ("b", ("eof", 1))]
    assert rec.by_logic() == {
        0: [("build", None), ("on_item", 1), ("notify_at", False), ("on_eof",)],
        1: [("build", None), ("on_item", 2), ("notify_at", False), ("on_eof",)],
    }


class Batches(StatefulBatchLogic):
    """Records the batches it gets; emits them, and everything at EOF."""

    def __init__(self, rec: Recorder, resume: Any) -> None:
        self.rec, self.number = rec, rec.built
        rec.built += 1
        self.seen: List[Any] = list(resume or [])
        rec.calls.append((self.number, "build", resume))

    def on_batch(self, values: List[Any]) -> Any:
        self.rec.calls.append((self.number, "on_batch", values, type(values).__name__))
        self.seen += values
        return [("b", list(values))], self.RETAIN

    def on_eof(self) -> Any:
        self.rec.calls.append((self.number, "on_eof"))
        return [("eof", self.seen)], self.DISCARD

    def snapshot(self) -> List[Any]:
        return self.seen


@pytest.mark.parametrize("batch_size", [1, 4])
def test_stateful_batch_gets_a_list_per_key_per_batch(run_items: Any, batch_size: int) -> None:
    rec = Recorder()
    items = [("b", 1), ("a", 2), ("b", 3), ("a", 4)]
    out = run_items(
        items, lambda s: op.stateful_batch("sb", s, lambda r: Batches(rec, r)), batch_size
    )
    if batch_size == 1:
        assert out == [
            ("b", ("b", [1])),
            ("a", ("b", [2])),
            ("b", ("b", [3])),
            ("a", ("b", [4])),
            ("a", ("eof", [2, 4])),
            ("b", ("eof", [1, 3])),
        ]
        assert rec.by_logic() == {
            0: [("build", None), ("on_batch", [1], "list"), ("on_batch", [3], "list"), ("on_eof",)],
            1: [("build", None), ("on_batch", [2], "list"), ("on_batch", [4], "list"), ("on_eof",)],
        }
    else:
        # One call per key with its values in arrival order (keys in arrival
        # order too; Bytewax would take a before b).
        assert out == [
            ("b", ("b", [1, 3])),
            ("a", ("b", [2, 4])),
            ("a", ("eof", [2, 4])),
            ("b", ("eof", [1, 3])),
        ]
        assert rec.by_logic() == {
            0: [("build", None), ("on_batch", [1, 3], "list"), ("on_eof",)],
            1: [("build", None), ("on_batch", [2, 4], "list"), ("on_eof",)],
        }


def test_callbacks_may_return_any_iterable_and_any_truthy_flag(run_items: Any) -> None:
    class Lax(StatefulLogic):
        def __init__(self, resume: Any) -> None:
            self.n = 0

        def on_item(self, value: Any) -> Any:
            self.n += 1
            if value == "gen":
                return (c for c in "xy"), 0
            if value == "str":
                return "ab", "yes"  # a str emits its characters; "yes" discards
            return [self.n], None

        def snapshot(self) -> int:
            return self.n

    out = run_items([("a", "gen"), ("a", "str"), ("a", 1)], lambda s: op.stateful("st", s, Lax))
    assert out == [("a", "x"), ("a", "y"), ("a", "a"), ("a", "b"), ("a", 1)]


def test_snapshot_runs_at_epoch_ends_for_changed_retained_keys(tmp_path: Any) -> None:
    # With an epoch per item: each epoch snapshots only the key its item touched,
    # a discarded key is not snapshotted, and the last epoch (after on_eof) is.
    init_db_dir(tmp_path, 1)
    rec = Recorder()
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1), ("b", 1), ("a", "discard"), ("b", 2)]))
    op.output("out", op.stateful("st", s, lambda r: Traced(rec, r)), TestingSink(out))
    run_main(flow, epoch_interval=TINY_EPOCH, recovery_config=RecoveryConfig(tmp_path))
    assert out == [
        ("a", ("item", 1)),
        ("b", ("item", 1)),
        ("a", ("disc", 2)),
        ("b", ("item", 2)),
        ("b", ("eof", 2)),
    ]
    assert rec.calls == [
        (0, "build", None),
        (0, "on_item", 1),
        (0, "notify_at", False),
        (0, "snapshot", 1),
        (1, "build", None),
        (1, "on_item", 1),
        (1, "notify_at", False),
        (1, "snapshot", 1),
        (0, "on_item", "discard"),
        (1, "on_item", 2),
        (1, "notify_at", False),
        (1, "snapshot", 2),
        (1, "on_eof"),
        (1, "notify_at", False),
        (1, "snapshot", 2),
    ]
    # On resume the builder gets the snapshot back; the discarded key starts over.
    rec2 = Recorder()
    out2: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 5), ("b", 5)]))
    op.output("out", op.stateful("st", s, lambda r: Traced(rec2, r)), TestingSink(out2))
    run_main(flow, epoch_interval=timedelta(seconds=60), recovery_config=RecoveryConfig(tmp_path))
    assert out2 == [("a", ("item", 5)), ("b", ("item", 5)), ("a", ("eof", 1)), ("b", ("eof", 3))]
    assert sorted(call for call in rec2.calls if call[1] == "build") == [
        (0, "build", 2),
        (1, "build", None),
    ]


def test_zero_epoch_interval_snapshots_after_every_batch(tmp_path: Any) -> None:
    init_db_dir(tmp_path, 1)
    rec = Recorder()
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2)]))
    op.output("out", op.stateful("st", s, lambda r: Traced(rec, r)), TestingSink([]))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(tmp_path))
    assert [call[1:] for call in rec.calls if call[1] in ("on_item", "snapshot")] == [
        ("on_item", 1),
        ("snapshot", 1),
        ("on_item", 2),
        ("snapshot", 2),
        ("snapshot", 2),
    ]


def test_notification_time_survives_a_resume(tmp_path: Any) -> None:
    # collect buffers a1 and is due to emit it 0.2 s later, but the run aborts
    # first. On resume its restored logic still asks to be notified, so [1] is
    # emitted on time instead of being merged with a2 after the pause.
    init_db_dir(tmp_path, 1)
    items = [("a", 1), ABORT(), PAUSE(timedelta(seconds=1)), ("a", 2)]
    outs: List[List[Any]] = []
    for _run in range(2):
        out: List[Any] = []
        flow = Dataflow("df")
        s = op.input("inp", flow, TestingSource(items))
        op.output("out", op.collect("c", s, timedelta(seconds=0.2), 10), TestingSink(out))
        run_main(flow, epoch_interval=TINY_EPOCH, recovery_config=RecoveryConfig(tmp_path))
        outs.append(out)
    assert outs == [[], [("a", [1]), ("a", [2])]]


# Errors


KEYED_STEPS: List[Tuple[str, Build]] = [
    ("stateful_map", lambda s: op.stateful_map("x", s, _running_sum)),
    ("stateful_map_builder", lambda s: op.stateful_map("x", s, lambda: 0, _running_sum)),
    ("stateful_flat_map", lambda s: op.stateful_flat_map("x", s, lambda st, v: (st, [v]))),
    ("fold_final", lambda s: op.fold_final("x", s, lambda: 0, _add)),
    ("reduce_final", lambda s: op.reduce_final("x", s, _add)),
    ("max_final", lambda s: op.max_final("x", s)),
    ("min_final", lambda s: op.min_final("x", s)),
    ("collect", lambda s: op.collect("x", s, timedelta(seconds=60), 3)),
    ("stateful", lambda s: op.stateful("x", s, lambda r: Traced(Recorder(), r))),
    ("stateful_batch", lambda s: op.stateful_batch("x", s, lambda r: Batches(Recorder(), r))),
]
KEYED_IDS = [name for name, _build in KEYED_STEPS]


@pytest.mark.parametrize(
    "bad",
    [1, "ab", ("a", 1, 2), ["a", 1], (1, 1), (None, 1), (b"a", 1)],
    ids=["int", "str", "3-tuple", "list", "int-key", "none-key", "bytes-key"],
)
@pytest.mark.parametrize(("name", "build"), KEYED_STEPS, ids=KEYED_IDS)
def test_keyed_step_rejects_what_is_not_a_str_keyed_pair(
    run_items: Any, name: str, build: Build, bad: Any
) -> None:
    out: List[Any] = []
    with pytest.raises(TypeError) as info:
        out = run_items([bad], build)
    message = str(info.value)
    assert "'df.x" in message
    assert repr(bad) in message
    assert not isinstance(info.value, FastflowRuntimeError)
    assert out == []


def test_keyed_error_comes_after_the_good_items_were_emitted() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), 3]))
    op.output("out", op.stateful_map("x", s, _running_sum), TestingSink(out))
    with pytest.raises(TypeError, match="got 3"):
        run_main(flow)
    assert out == [("a", (None, 1)), ("a", (1, 2))]


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


def test_mapper_may_return_a_list_pair(run_items: Any) -> None:
    # Bytewax unpacks the mapper's result, so a 2-item list works there too.
    out = run_items(
        [("a", 1), ("a", 2)], lambda s: op.stateful_map("x", s, lambda st, v: [v, (st, v)])
    )
    assert out == [("a", (None, 1)), ("a", (1, 2))]


def _boom(*_args: Any) -> Any:
    raise ZeroDivisionError("boom")


class RaisingLogic(StatefulLogic):
    """Raises from the callback named by its first value."""

    def __init__(self, resume: Any) -> None:
        self.fail: Optional[str] = None

    def on_item(self, value: str) -> Any:
        self.fail = value
        return _boom() if value == "on_item" else ([], self.RETAIN)

    def on_eof(self) -> Any:
        return _boom() if self.fail == "on_eof" else ([], self.RETAIN)

    def notify_at(self) -> Optional[datetime]:
        if self.fail == "notify_at":
            _boom()
        if self.fail == "on_notify":
            return datetime.now(timezone.utc)
        return None

    def on_notify(self) -> Any:
        return _boom()

    def snapshot(self) -> None:
        return None


RAISING: List[Tuple[str, Build, List[Any]]] = [
    ("stateful_map", lambda s: op.stateful_map("x", s, _boom), [("a", 1)]),
    ("stateful_map builder", lambda s: op.stateful_map("x", s, _boom, _running_sum), [("a", 1)]),
    ("stateful_flat_map", lambda s: op.stateful_flat_map("x", s, _boom), [("a", 1)]),
    ("fold_final folder", lambda s: op.fold_final("x", s, lambda: 0, _boom), [("a", 1)]),
    ("fold_final builder", lambda s: op.fold_final("x", s, _boom, _add), [("a", 1)]),
    ("reduce_final", lambda s: op.reduce_final("x", s, _boom), [("a", 1), ("a", 2)]),
    ("max_final by", lambda s: op.max_final("x", s, by=_boom), [("a", 1), ("a", 2)]),
    ("count_final key", lambda s: op.count_final("x", s, _boom), ["a"]),
    ("stateful builder", lambda s: op.stateful("x", s, _boom), [("a", 1)]),
    ("stateful_batch builder", lambda s: op.stateful_batch("x", s, _boom), [("a", 1)]),
    ("on_item", lambda s: op.stateful("x", s, RaisingLogic), [("a", "on_item")]),
    ("on_eof", lambda s: op.stateful("x", s, RaisingLogic), [("a", "on_eof")]),
    ("notify_at", lambda s: op.stateful("x", s, RaisingLogic), [("a", "notify_at")]),
    ("on_notify", lambda s: op.stateful("x", s, RaisingLogic), [("a", "on_notify")]),
    (
        "enrich_cached getter",
        lambda s: op.enrich_cached("x", s, _boom, lambda cache, v: cache.get(v)),
        ["a"],
    ),
]


@pytest.mark.parametrize(("name", "build", "items"), RAISING, ids=[r[0] for r in RAISING])
def test_raising_user_code_names_the_step(
    run_items: Any, name: str, build: Build, items: List[Any]
) -> None:
    with pytest.raises(FastflowRuntimeError) as info:
        run_items(items, build)
    assert "'df.x" in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, ZeroDivisionError)
    assert str(cause) == "boom"


@pytest.mark.parametrize(
    "build",
    [
        lambda s: op.stateful_map("x", s, _boom, _running_sum),
        lambda s: op.fold_final("x", s, _boom, _add),
    ],
    ids=["stateful_map", "fold_final"],
)
def test_raising_builder_is_named_as_the_builder(run_items: Any, build: Build) -> None:
    with pytest.raises(FastflowRuntimeError, match="`builder`"):
        run_items([("a", 1)], build)


def test_join_rejects_non_pairs_and_non_str_keys(run_items: Any) -> None:
    # Like Bytewax, join tags each side's values first, so a non-pair fails there.
    with pytest.raises(FastflowRuntimeError, match="'df.x.add_side_0'") as info:
        run_items([1], lambda s: op.join("x", s))
    assert isinstance(info.value.__cause__, TypeError)
    with pytest.raises(TypeError, match="'df.x.stateful_batch'"):
        run_items([(1, 1)], lambda s: op.join("x", s))


def test_logic_error_names_the_key(run_items: Any) -> None:
    with pytest.raises(FastflowRuntimeError, match="'df.x.stateful_batch' for key 'k'"):
        run_items([("k", "on_item")], lambda s: op.stateful("x", s, RaisingLogic))


def test_callback_returning_a_bare_list_is_an_error(run_items: Any) -> None:
    class BareList(StatefulLogic):
        def __init__(self, resume: Any) -> None:
            pass

        def on_item(self, value: Any) -> Any:
            return [value]

        def snapshot(self) -> None:
            return None

    with pytest.raises(FastflowRuntimeError, match="'df.x.stateful_batch' for key 'a'") as info:
        run_items([("a", 1)], lambda s: op.stateful("x", s, BareList))
    assert isinstance(info.value.__cause__, ValueError)


def test_raising_snapshot_names_the_step_and_key(tmp_path: Any) -> None:
    class BadSnapshot(Traced):
        def snapshot(self) -> int:
            return _boom()

    init_db_dir(tmp_path, 1)
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("k", 1)]))
    op.output("out", op.stateful("x", s, lambda r: BadSnapshot(Recorder(), r)), TestingSink([]))
    with pytest.raises(FastflowRuntimeError, match="'df.x.stateful_batch'.*'k'") as info:
        run_main(flow, recovery_config=RecoveryConfig(tmp_path))
    assert isinstance(info.value.__cause__, ZeroDivisionError)

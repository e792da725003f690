"""The keyed state loops: ``fastflow._cext.state`` and the engine's fast paths.

The Cython functions are checked against plain-Python versions of the same
loops. The engine runs ``MapBuilder``/``FoldBuilder`` with those loops and any
other builder as one logic object per key (the general path); wrapping a fast
builder in a lambda forces the general path, which must give the same
outputs, states and snapshots.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastflow.operators as op
from fastflow._cext import codec, state
from fastflow._cext.routing import RoutingError
from fastflow._runtime.nodes import LogicStateNode, stateful_node
from fastflow._runtime.plan import flatten
from fastflow.dataflow import Dataflow
from fastflow.operators._logic import FoldBuilder, MapBuilder
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main

# Plain-Python versions of the loops in cext/state.pyx.


def ref_map(
    states: Dict[str, Any],
    dirty: Optional[Dict[str, bool]],
    batch: List[Any],
    mapper: Callable[[Any, Any], Any],
    builder: Optional[Callable[[], Any]],
) -> List[Any]:
    out = []
    for key, value in batch:
        had = key in states
        if had:
            current = states[key]
        else:
            current = None if builder is None else builder()
        new, emit = mapper(current, value)
        if new is None:
            states.pop(key, None)
        else:
            states[key] = new
        if dirty is not None:
            dirty.setdefault(key, had)
        out.append((key, emit))
    return out


def ref_flat_map(
    states: Dict[str, Any],
    dirty: Optional[Dict[str, bool]],
    batch: List[Any],
    mapper: Callable[[Any, Any], Any],
) -> List[Any]:
    out = []
    for key, value in batch:
        had = key in states
        new, emits = mapper(states.get(key), value)
        if new is None:
            states.pop(key, None)
        else:
            states[key] = new
        if dirty is not None:
            dirty.setdefault(key, had)
        out.extend((key, emit) for emit in emits)
    return out


def ref_fold(
    states: Dict[str, Any],
    dirty: Optional[Dict[str, bool]],
    batch: List[Any],
    folder: Callable[[Any, Any], Any],
    builder: Optional[Callable[[], Any]],
) -> None:
    for key, value in batch:
        had = key in states
        if had:
            states[key] = folder(states[key], value)
        elif builder is None:
            states[key] = value
        else:
            states[key] = folder(builder(), value)
        if dirty is not None:
            dirty.setdefault(key, had)


def assert_same_writes(
    before: Dict[str, Any],
    after: Dict[str, Any],
    tracker: Optional[state.ChangeTracker],
    ref_dirty: Optional[Dict[str, bool]],
) -> None:
    """The tracker leads to the writes the reference's changed keys call for.

    Written: every changed key that has state (its state), every changed key that
    had state and has none (a deletion). The tracker may also write live keys that
    did not change (once updates outnumber live keys it writes them all), never
    anything else; applying its writes to ``before`` gives ``after``.
    """
    if tracker is None:
        assert ref_dirty is None
        return
    changed = tracker.take(after)
    sets = {k for k in changed if k in after}
    deletes = {k for k, had in changed.items() if had and k not in after}
    assert ref_dirty is not None
    assert {k for k in ref_dirty if k in after} <= sets
    assert deletes == {k for k, had in ref_dirty.items() if had and k not in after}
    assert deletes == set(before) - set(after)
    applied = {k: v for k, v in before.items() if k not in deletes}
    applied.update({k: after[k] for k in sets})
    assert applied == after
    if sets - set(ref_dirty):  # extra writes only once updates outnumbered live keys
        assert all(after[k] == before.get(k) for k in sets - set(ref_dirty))


def ref_group(batch: List[Any]) -> Dict[str, List[Any]]:
    groups: Dict[str, List[Any]] = {}
    for key, value in batch:
        groups.setdefault(key, []).append(value)
    return groups


# A mapper whose values script what it does: a multiple of 4 discards the
# key, otherwise the value is added to the state; it emits (old state, value).
# Some results are lists: like unpacking, the loops take any 2-item iterable.


def scripted(current: Optional[int], value: int) -> Any:
    new = None if value % 4 == 0 else (current or 0) + value
    return [new, (current, value)] if value % 5 == 1 else (new, (current, value))


def scripted_flat(current: Optional[int], value: int) -> Tuple[Optional[int], List[Any]]:
    new, emit = scripted(current, value)
    return new, [emit] * (value % 3)  # zero, one or two emits


def start_at_100() -> int:
    return 100


def _add(acc: int, value: int) -> int:
    return acc + value


# map_states


def test_map_states_updates_states_and_emits_in_input_order() -> None:
    states: Dict[str, Any] = {"b": 10}
    dirty = state.ChangeTracker()
    batch = [("a", 1), ("b", 2), ("a", 3)]
    out = state.map_states(states, dirty, batch, scripted, None, "s")
    assert out == [("a", (None, 1)), ("b", (10, 2)), ("a", (1, 3))]
    assert states == {"a": 4, "b": 12}
    # Each changed key, and whether it had state before its first change.
    assert dirty.take(states) == {"a": False, "b": True}
    assert dirty.take(states) == {}  # taking starts over


def test_map_states_none_discards_and_marks_the_key_dirty() -> None:
    states: Dict[str, Any] = {"a": 5, "keep": 1}
    dirty = state.ChangeTracker()
    out = state.map_states(states, dirty, [("a", 4), ("new", 8)], scripted, None, "s")
    assert out == [("a", (5, 4)), ("new", (None, 8))]
    # a is gone (it had state: a deletion to write); "new" never had any (nothing to write).
    assert states == {"keep": 1}
    assert dirty.take(states) == {"a": True}


def test_map_states_without_dirty_tracking() -> None:
    states: Dict[str, Any] = {}
    out = state.map_states(states, None, [("a", 1), ("a", 4)], scripted, None, "s")
    assert out == [("a", (None, 1)), ("a", (1, 4))]
    assert states == {}


def test_map_states_builder_only_for_missing_keys() -> None:
    built: List[int] = []

    def builder() -> int:
        built.append(1)
        return 100

    states: Dict[str, Any] = {"b": 1}
    batch = [("a", 1), ("b", 1), ("a", 4), ("a", 2)]
    out = state.map_states(states, state.ChangeTracker(), batch, scripted, builder, "s")
    # a: built, kept, discarded (by 4), built again.
    assert out == [("a", (100, 1)), ("b", (1, 1)), ("a", (101, 4)), ("a", (100, 2))]
    assert states == {"a": 102, "b": 2}
    assert len(built) == 2


def test_map_states_accepts_any_two_item_iterable_result() -> None:
    states: Dict[str, Any] = {}
    out = state.map_states(states, None, [("a", 1)], lambda s, v: [v, "x"], None, "s")
    assert out == [("a", "x")]
    assert states == {"a": 1}


@pytest.mark.parametrize("bad", [5, None, (1,), (1, 2, 3), [1, 2, 3], "abc"])
def test_map_states_non_pair_result_names_the_step(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"`mapper` in step 'my\.step'.*2-tuple; got") as info:
        state.map_states({}, None, [("a", 1)], lambda s, v: bad, None, "my.step")
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [1, "ab", ("a",), ("a", 1, 2), ["a", 1], (1, 1), (None, 1)])
def test_state_loops_reject_non_str_keyed_pairs(bad: Any) -> None:
    calls = [
        lambda b: state.map_states({}, state.ChangeTracker(), b, scripted, None, "my.step"),
        lambda b: state.flat_map_states(
            {}, state.ChangeTracker(), b, scripted_flat, None, "my.step"
        ),
        lambda b: state.fold_states({}, state.ChangeTracker(), b, _add, None, "my.step"),
        lambda b: state.group_by_key(b, "my.step"),
    ]
    for call in calls:
        with pytest.raises(RoutingError) as info:
            call([("ok", 1), bad])
        assert isinstance(info.value, TypeError)
        assert info.value.step_id == "my.step"
        assert info.value.item is bad or info.value.item == bad
        assert "'my.step'" in str(info.value)
        assert repr(bad) in str(info.value)


def test_user_errors_propagate_unchanged() -> None:
    # The engine wraps them with the step id; the loops let them through as is.
    def boom(*_args: Any) -> Any:
        raise ZeroDivisionError("boom")

    batch = [("a", 1)]
    with pytest.raises(ZeroDivisionError, match="boom"):
        state.map_states({}, None, batch, boom, None, "s")
    with pytest.raises(ZeroDivisionError, match="boom"):
        state.flat_map_states({}, None, batch, boom, None, "s")
    with pytest.raises(ZeroDivisionError, match="boom"):
        state.fold_states({"a": 0}, None, batch, boom, None, "s")


@pytest.mark.parametrize(
    "call",
    [
        lambda boom: state.map_states({}, None, [("a", 1)], scripted, boom, "s"),
        lambda boom: state.flat_map_states({}, None, [("a", 1)], scripted_flat, boom, "s"),
        lambda boom: state.fold_states({}, None, [("a", 1)], _add, boom, "s"),
    ],
    ids=["map", "flat_map", "fold"],
)
def test_a_raising_builder_is_told_apart_from_the_mapper(call: Callable[..., Any]) -> None:
    def boom() -> Any:
        raise ZeroDivisionError("boom")

    with pytest.raises(state.BuilderError) as info:
        call(boom)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: state.map_states(None, None, [], scripted, None, "s"),
        lambda: state.map_states({}, None, None, scripted, None, "s"),
        lambda: state.map_states({}, [], [], scripted, None, "s"),
        lambda: state.map_states({}, None, [], scripted, None, None),
        lambda: state.flat_map_states({}, None, (("a", 1),), scripted_flat, None, "s"),
        lambda: state.fold_states({}, None, [], _add, None, 3),
        lambda: state.group_by_key(None, "s"),
    ],
    ids=["states", "batch", "dirty", "step_id", "tuple-batch", "int-step", "group-batch"],
)
def test_state_loops_check_their_argument_types(call: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        call()


# flat_map_states


def test_flat_map_states_flattens_in_input_order() -> None:
    states: Dict[str, Any] = {}
    dirty = state.ChangeTracker()
    batch = [("a", 1), ("b", 2), ("a", 4), ("c", 3)]
    out = state.flat_map_states(states, dirty, batch, scripted_flat, None, "s")
    assert out == [("a", (None, 1)), ("b", (None, 2)), ("b", (None, 2)), ("a", (1, 4))]
    assert states == {"b": 2, "c": 3}
    # a was created and discarded since the last snapshot: it had no state then.
    assert dirty.take(states) == {"a": False, "b": False, "c": False}


def test_flat_map_states_takes_generators() -> None:
    def counting(_state: Any, v: int) -> Any:
        return v, (i for i in range(v))

    out = state.flat_map_states({}, None, [("a", 3)], counting, None, "s")
    assert out == [("a", 0), ("a", 1), ("a", 2)]


def test_flat_map_states_non_iterable_emits_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not iterable"):
        state.flat_map_states({}, None, [("a", 1)], lambda s, v: (v, 5), None, "s")


# fold_states


def test_fold_states_with_builder() -> None:
    states: Dict[str, Any] = {"b": 1}
    dirty = state.ChangeTracker()
    assert (
        state.fold_states(states, dirty, [("a", 2), ("b", 3), ("a", 4)], _add, start_at_100, "s")
        is None
    )
    assert states == {"a": 106, "b": 4}
    assert dirty.take(states) == {"a": False, "b": True}


def test_fold_states_without_builder_starts_from_the_first_value() -> None:
    calls: List[Any] = []

    def concat(acc: str, value: str) -> str:
        calls.append((acc, value))
        return acc + value

    states: Dict[str, Any] = {}
    state.fold_states(states, None, [("a", "x"), ("b", "y"), ("a", "z")], concat, None, "s")
    assert states == {"a": "xz", "b": "y"}
    assert calls == [("x", "z")]


def test_fold_states_keeps_a_none_accumulator() -> None:
    states: Dict[str, Any] = {}
    seen: List[Any] = []

    def forget(acc: Any, value: Any) -> None:
        seen.append(acc)
        return None

    state.fold_states(states, None, [("a", 1), ("a", 2)], forget, start_at_100, "s")
    # None is a state here, not a discard: the second value folds into it.
    assert states == {"a": None}
    assert seen == [100, None]


# group_by_key


def test_group_by_key_keeps_first_arrival_order() -> None:
    groups = state.group_by_key([("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)], "s")
    assert list(groups.items()) == [("b", [1, 3]), ("a", [2, 5]), ("c", [4])]
    assert state.group_by_key([], "s") == {}


# Property tests: every loop equals its plain-Python version.

keys_st = st.sampled_from(["a", "b", "c", "é", ""])
batch_st = st.lists(st.tuples(keys_st, st.integers(-20, 20)), max_size=30)
states_st = st.dictionaries(keys_st, st.integers(-5, 5), max_size=4)


@settings(max_examples=200, deadline=None)
@given(batch=batch_st, initial=states_st, track=st.booleans(), init=st.booleans())
def test_map_states_equals_reference(batch, initial, track, init) -> None:
    builder = start_at_100 if init else None
    states, ref_states = dict(initial), dict(initial)
    dirty, ref_dirty = (state.ChangeTracker(), {}) if track else (None, None)
    out = state.map_states(states, dirty, list(batch), scripted, builder, "s")
    assert out == ref_map(ref_states, ref_dirty, batch, scripted, builder)
    assert states == ref_states
    assert_same_writes(initial, states, dirty, ref_dirty)


@settings(max_examples=200, deadline=None)
@given(batch=batch_st, initial=states_st, track=st.booleans())
def test_flat_map_states_equals_reference(batch, initial, track) -> None:
    states, ref_states = dict(initial), dict(initial)
    dirty, ref_dirty = (state.ChangeTracker(), {}) if track else (None, None)
    out = state.flat_map_states(states, dirty, list(batch), scripted_flat, None, "s")
    assert out == ref_flat_map(ref_states, ref_dirty, batch, scripted_flat)
    assert states == ref_states
    assert_same_writes(initial, states, dirty, ref_dirty)


@settings(max_examples=200, deadline=None)
@given(batch=batch_st, initial=states_st, track=st.booleans(), init=st.booleans())
def test_fold_states_equals_reference(batch, initial, track, init) -> None:
    builder = start_at_100 if init else None
    states, ref_states = dict(initial), dict(initial)
    dirty, ref_dirty = (state.ChangeTracker(), {}) if track else (None, None)
    state.fold_states(states, dirty, list(batch), _add, builder, "s")
    ref_fold(ref_states, ref_dirty, batch, _add, builder)
    assert states == ref_states
    assert_same_writes(initial, states, dirty, ref_dirty)


@settings(max_examples=200, deadline=None)
@given(batch=batch_st)
def test_group_by_key_equals_reference(batch) -> None:
    groups = state.group_by_key(list(batch), "s")
    assert list(groups.items()) == list(ref_group(batch).items())


# The engine's fast paths against its general path.

KINDS = {
    "map": lambda init: MapBuilder(scripted, init, flat=False),
    "flat_map": lambda init: MapBuilder(scripted_flat, None, flat=True),
    "fold": lambda init: FoldBuilder(_add, init),
}


def general(fast: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The same builder, hidden in a lambda so the engine does not run it as a fast path."""
    return lambda resume: fast(resume)


class Run:
    """A stateful_batch node fed batch by batch, recording its output per batch."""

    def __init__(self, builder: Callable[[Any], Any], resume: Dict[str, Any]) -> None:
        self.batches: List[List[Any]] = []
        self.node = stateful_node("df.s", builder, self.batches.append, lambda: None, True)
        self.node.restore(resume)

    def push(self, batch: List[Any]) -> List[Any]:
        before = len(self.batches)
        self.node.push(list(batch))
        return [item for out in self.batches[before:] for item in out]

    def end(self) -> List[Any]:
        """Flush as at end of input; return what the node emitted then."""
        before = len(self.batches)
        self.node.finish()
        return [item for out in self.batches[before:] for item in out]

    @property
    def fast(self) -> bool:
        """Whether the node runs a compiled fast path (raw states, not logic objects)."""
        return not isinstance(self.node, LogicStateNode)

    def states(self) -> Dict[str, Any]:
        if self.fast:
            return dict(self.node.states)
        return {key: logic.snapshot() for key, logic in self.node.states.items()}


def grouped_like_general(batch: List[Tuple[str, Any]], out: List[Any]) -> List[Any]:
    """Reorder a fast path's output (input order) the way the general path emits it.

    The general path calls each key once per batch, keys in first-arrival order.
    """
    groups: Dict[str, List[Any]] = {key: [] for key, _value in batch}
    for key, emit in out:
        groups[key].append(emit)
    return [(key, emit) for key, emits in groups.items() for emit in emits]


class Store:
    """What a recovery store would hold after applying a node's changes: key -> state."""

    def __init__(self, resume: Dict[str, Any]) -> None:
        self.states = dict(resume)

    def apply(self, changes: Tuple[Dict[str, Any], Dict[str, bool]]) -> Set[str]:
        """Encode and apply ``node.changes()`` as the engine does; return the keys written."""
        values, changed = changes
        written: Set[str] = set()
        for _count, blob in codec.encode_changes(values, changed, 3):
            sets, deleted = codec.decode_changes(blob)
            self.states.update(sets)
            for key in deleted:
                del self.states[key]  # only keys the store holds are ever deleted
            written.update(sets, deleted)
        return written


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    init=st.booleans(),
    batches=st.lists(
        st.lists(st.tuples(keys_st, st.integers(-20, 20)), min_size=1, max_size=8), max_size=8
    ),
    epoch_ends=st.sets(st.integers(0, 8)),
    resume=states_st,
)
def test_fast_path_equals_general_path(kind, init, batches, epoch_ends, resume) -> None:
    fast_builder = KINDS[kind](start_at_100 if init else None)
    fast, slow = Run(fast_builder, resume), Run(general(fast_builder), resume)
    fast_store, slow_store = Store(resume), Store(resume)
    assert fast.fast and not slow.fast
    assert fast.states() == slow.states() == resume
    touched: Set[str] = set()
    for i, batch in enumerate(batches):
        fast_out, slow_out = fast.push(batch), slow.push(batch)
        touched.update(key for key, _value in batch)
        if kind == "fold":
            assert fast_out == slow_out == []
        else:
            assert grouped_like_general(batch, fast_out) == slow_out
        assert fast.states() == slow.states()
        if i in epoch_ends:
            # Both write exactly the keys touched since the last epoch, except those
            # created and discarded in between (they never reached the store).
            # The fast path may also rewrite unchanged live keys (once its updates
            # outnumbered the live keys, it writes them all rather than track them).
            expected = {k for k in touched if k in fast_store.states or k in fast.states()}
            unchanged = dict(fast_store.states)
            fast_written = fast_store.apply(fast.node.changes())
            assert fast_written >= expected
            assert all(fast_store.states[k] == unchanged[k] for k in fast_written - expected)
            assert slow_store.apply(slow.node.changes()) == expected
            assert fast_store.states == slow_store.states == fast.states()
            touched.clear()
    before_end = fast.states()
    fast_final, slow_final = fast.end(), slow.end()
    assert fast_final == slow_final
    live = fast.states()
    if kind == "fold":
        # Every key is emitted, in key order, and discarded.
        assert fast_final == sorted(before_end.items())
        assert live == {}
    else:
        assert fast_final == []
    assert fast.states() == slow.states()
    fast_store.apply(fast.node.changes())
    slow_store.apply(slow.node.changes())
    assert fast_store.states == slow_store.states == live


def test_only_map_and_fold_builders_are_fast_paths() -> None:
    fast = MapBuilder(scripted, None, flat=False)
    assert Run(fast, {}).fast
    assert Run(FoldBuilder(_add, None), {}).fast
    assert not Run(general(fast), {}).fast


def test_public_operators_hand_the_engine_fast_builders() -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([]))
    streams = [
        op.stateful_map("sm", s, scripted),
        op.stateful_map("smb", s, start_at_100, scripted),
        op.stateful_flat_map("sfm", s, scripted_flat),
        op.fold_final("ff", s, start_at_100, _add),
        op.reduce_final("rf", s, _add),
        op.count_final("cf", s, str),
        op.max_final("mx", s),
        op.min_final("mn", s),
    ]
    for i, stream in enumerate(streams):
        op.output(f"out{i}", stream, TestingSink([]))
    builders = {
        step.step_id: type(step.args["builder"]).__name__
        for step in flatten(flow)
        if step.kind == "stateful_batch"
    }
    assert builders == {
        "df.sm.stateful_batch": "MapBuilder",
        "df.smb.stateful_batch": "MapBuilder",
        "df.sfm.stateful_batch": "MapBuilder",
        "df.ff.stateful_batch": "FoldBuilder",
        "df.rf.stateful_batch": "FoldBuilder",
        "df.cf.stateful_batch": "FoldBuilder",
        "df.mx.reduce_final.stateful_batch": "FoldBuilder",
        "df.mn.reduce_final.stateful_batch": "FoldBuilder",
    }


# End to end: two runs with recovery, so restored states matter too.

BUILDERS = {
    "map": MapBuilder(scripted, None, flat=False),
    "map_init": MapBuilder(scripted, start_at_100, flat=False),
    "flat_map": MapBuilder(scripted_flat, None, flat=True),
    "fold": FoldBuilder(_add, start_at_100),
    "reduce": FoldBuilder(_add, None),
}


def _two_runs(builder: Callable[[Any], Any], runs: List[List[Any]], batch_size: int) -> List[Any]:
    outs = []
    with tempfile.TemporaryDirectory() as db:
        init_db_dir(Path(db), 1)
        for items in runs:
            out: List[Any] = []
            flow = Dataflow("df")
            s = op.input("inp", flow, TestingSource(items, batch_size))
            op.output("out", op.stateful_batch("s", s, builder), TestingSink(out))
            run_main(flow, recovery_config=RecoveryConfig(Path(db)))
            outs.append(out)
    return outs


def _per_key(out: List[Tuple[str, Any]]) -> Dict[str, List[Any]]:
    per: Dict[str, List[Any]] = {}
    for key, emit in out:
        per.setdefault(key, []).append(emit)
    return per


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(BUILDERS)),
    runs=st.lists(
        st.lists(st.tuples(keys_st, st.integers(-20, 20)), max_size=12), min_size=2, max_size=2
    ),
    batch_size=st.sampled_from([1, 3, 50]),
)
def test_both_paths_give_the_same_results_across_a_resume(name, runs, batch_size) -> None:
    builder = BUILDERS[name]
    fast = _two_runs(builder, runs, batch_size)
    slow = _two_runs(general(builder), runs, batch_size)
    if batch_size == 1 or name in ("fold", "reduce"):
        assert fast == slow
    else:
        assert [_per_key(out) for out in fast] == [_per_key(out) for out in slow]


MUTATING_MAPPERS = """
from fastflow._cext import state

def shrink(batch, flat=False):
    def mapper(acc, value):
        batch.clear()  # user code emptying the batch the loop is reading
        return value, ([value] if flat else value)
    return mapper

def grow(batch):
    def mapper(acc, value):
        if len(batch) < 4:
            batch.append(("k", value + 1))
        return value, [value]
    return mapper

batch = [(str(i), i) for i in range(50)]
print(state.map_states({}, state.ChangeTracker(), batch, shrink(batch), None, "s"))
batch = [(str(i), i) for i in range(50)]
print(state.flat_map_states({}, None, batch, shrink(batch, flat=True), None, "s"))
batch = [("k", 0)]
print(state.flat_map_states({}, None, batch, grow(batch), None, "s"))
batch = [("k", i) for i in range(50)]
def fold(acc, value):
    batch.clear()
    return acc + value
states = {}
state.fold_states(states, None, batch, fold, None, "s")
print(states)
"""


def test_state_loops_survive_user_code_changing_the_batch() -> None:
    # In a subprocess: reading past a shrunk batch used to crash the interpreter.
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", MUTATING_MAPPERS], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[('0', 0)]",
        "[('0', 0)]",
        "[('k', 0), ('k', 1), ('k', 2), ('k', 3)]",
        "{'k': 1}",
    ]

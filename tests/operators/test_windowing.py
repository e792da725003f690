"""Tests of ``fastflow.operators.windowing``: clocks, windowers, operators, resume, parity.

Flows run through :class:`windowing_scenarios.Engine`: an ``EventClock`` with
a fixed system time over values that are seconds after ``T0``; outputs are
normalized, window metadata to ``("meta", ("at", open), ("at", close), merged)``.
The expected values were checked against Bytewax 0.21.1;
``test_parity_with_bytewax`` compares every scenario with Bytewax's recorded
result, and ``test_live_bytewax_gives_the_recorded_result`` re-runs Bytewax.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Sequence

import orjson
import pytest
from _parity import EXPECTED_WINDOWING, bytewax_python, expected_scenario, run_bytewax_scenarios
from windowing_scenarios import FIXED_NOW, SCENARIOS, T0, Engine, at, by_key, recorder_logic

import fastflow.operators as op
from fastflow._cext import codec
from fastflow.dataflow import Dataflow
from fastflow.operators import windowing as win
from fastflow.operators.windowing._state import KeyWindows
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main

E = Engine.load("fastflow")


def meta(open_s: float, close_s: float, merged: Sequence[int] = ()) -> Any:
    return ("meta", ("at", open_s), ("at", close_s), list(merged))


def collect(windower: Any, wait: float = 0, **kw: Any) -> Any:
    return lambda s: win.collect_window("cw", s, E.clock(wait), windower, **kw)


def keyed(*pairs: Any) -> List[Any]:
    return list(zip(pairs[::2], pairs[1::2], strict=True))


def roundtrip(state: Any) -> Any:
    """What a logic gets back on resume: its snapshot through the snapshot codec."""
    return codec.decode(codec.encode(state))


# Clocks.


class FakeNow:
    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now


def test_event_clock_watermark_is_max_timestamp_minus_wait_plus_system_time_since() -> None:
    now = FakeNow()
    logic = win.EventClock(at, timedelta(seconds=10), now_getter=now).build(None)
    assert logic.on_notify() == win.UTC_MIN
    logic.before_batch()
    assert logic.on_item(5) == (at(5), at(-5))
    assert logic.on_item(3) == (at(3), at(-5))
    assert logic.on_item(20) == (at(20), at(10))
    now.now += timedelta(seconds=2)
    assert logic.on_item(1) == (at(1), at(10)), "the system time is read once per batch"
    assert logic.on_notify() == at(12)
    logic.before_batch()
    assert logic.on_item(21) == (at(21), at(12)), "21 - 10 is behind the watermark"
    assert logic.on_item(30) == (at(30), at(20))
    assert logic.on_eof() == win.UTC_MAX
    assert logic.on_notify() == at(20), "end of input leaves the state alone"


def test_event_clock_watermark_holds_while_the_system_clock_steps_back() -> None:
    now = FakeNow()
    logic = win.EventClock(at, timedelta(seconds=10), now_getter=now).build(None)
    logic.before_batch()
    assert logic.on_item(20) == (at(20), at(10))
    now.now -= timedelta(seconds=30)
    assert logic.on_notify() == at(10), "not at(-20)"
    logic.before_batch()
    assert logic.on_item(5) == (at(5), at(10)), "5 stays late"
    now.now += timedelta(seconds=32)
    assert logic.on_notify() == at(12), "on from where the clock had been"


def test_event_clock_resumes_its_watermark() -> None:
    now = FakeNow()
    clock = win.EventClock(at, timedelta(seconds=10), now_getter=now)
    logic = clock.build(None)
    logic.before_batch()
    logic.on_item(20)
    resumed = clock.build(roundtrip(logic.snapshot()))
    now.now += timedelta(seconds=3)
    assert resumed.on_notify() == at(13)
    resumed.before_batch()
    assert resumed.on_item(2) == (at(2), at(13))


def test_event_clock_to_system_utc() -> None:
    now = FakeNow()
    logic = win.EventClock(at, timedelta(0), now_getter=now).build(None)
    assert logic.to_system_utc(at(30)) == at(30)
    shifted = win.EventClock(at, timedelta(0), now_getter=now,
                             to_system_utc=lambda ts: ts + timedelta(days=1))
    assert shifted.build(None).to_system_utc(at(30)) == at(30) + timedelta(days=1)
    never = win.EventClock(at, timedelta(0), to_system_utc=lambda ts: None)
    assert never.build(None).to_system_utc(at(30)) is None


def test_event_clock_on_system_time_wakes_when_the_watermark_can_close() -> None:
    """Old timestamps would be due at once; with the system clock the wake-up waits."""
    logic = win.EventClock(at, timedelta(seconds=10)).build(None)
    before = datetime.now(timezone.utc)
    logic.before_batch()
    logic.on_item(20)
    after = datetime.now(timezone.utc)
    wake = logic.to_system_utc(at(15)) - timedelta(seconds=5)
    assert before <= wake <= after
    later = win.EventClock(at, timedelta(seconds=10), to_system_utc=lambda t: t.replace(year=2200))
    logic = later.build(None)
    logic.before_batch()
    logic.on_item(20)
    assert logic.to_system_utc(at(15)) == at(15).replace(year=2200), "a later wake-up is kept"


def test_system_clock_stamps_values_with_the_batch_time() -> None:
    logic = win.SystemClock().build(None)
    before = datetime.now(timezone.utc)
    logic.before_batch()
    stamp, watermark = logic.on_item("x")
    assert before <= stamp == watermark <= datetime.now(timezone.utc)
    assert logic.on_item("y") == (stamp, stamp)
    assert logic.on_notify() >= stamp
    assert logic.on_eof() == win.UTC_MAX
    assert logic.snapshot() is None


# Windowers.


def test_tumbling_windows_include_open_and_exclude_close_time() -> None:
    logic = E.tumbling(10).build(None)
    assert logic.is_empty() and logic.notify_at() is None
    assert [logic.open_for(at(s)) for s in (5, 9.999, 10, -3)] == [[0], [0], [1], [-1]]
    assert logic.notify_at() == at(0)
    assert logic.late_for(at(100)) == [10]
    assert logic.close_for(at(9.999)) == [(-1, win.WindowMetadata(at(-10), at(0)))]
    assert logic.close_for(at(20)) == [
        (0, win.WindowMetadata(at(0), at(10))),
        (1, win.WindowMetadata(at(10), at(20))),
    ]
    assert logic.is_empty()


def test_sliding_windows_overlap() -> None:
    logic = E.sliding(10, 3, align=1).build(None)
    assert logic.open_for(at(7)) == [-1, 0, 1, 2]
    assert logic.late_for(at(-20)) == [-10, -9, -8, -7]
    assert logic.notify_at() == at(8)
    resumed = E.sliding(10, 3, align=1).build(roundtrip(logic.snapshot()))
    assert [(i, m.open_time, m.close_time) for i, m in resumed.close_for(at(11))] == [
        (-1, at(-2), at(8)),
        (0, at(1), at(11)),
    ]
    assert resumed.snapshot() == [1, 2]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: E.sliding(5, 10), "^sliding window `offset` can't be longer than `length`; "
                                   "there would be undefined gaps between windows$"),
        (lambda: E.sliding(5, 0), "`offset` must be positive"),
        (lambda: E.tumbling(0), "`length` must be positive"),
        (lambda: E.session(-1), "^session window `gap` must not be negative$"),
    ],
)
def test_windower_parameters_are_checked(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_session_windows_join_merge_and_close() -> None:
    logic = E.session(5).build(None)
    opened = [logic.open_for(at(s)) for s in (10, 12, 17, 22.5, 30, 1)]
    assert opened == [(0,), (0,), (0,), (1,), (2,), (3,)], "`gap` apart is close enough"
    assert logic.merged() == []
    assert logic.open_for(at(26)) == (1,), "joins the first session it is within `gap` of"
    assert logic.merged() == [(2, 1)] and logic.merged() == []
    assert logic.notify_at() == at(6)
    assert logic.late_for(at(5)) == (win.LATE_SESSION_ID,)
    resumed = E.session(5).build(roundtrip(logic.snapshot()))
    assert resumed.close_for(at(35)) == [
        (0, win.WindowMetadata(at(10), at(17))),
        (3, win.WindowMetadata(at(1), at(1))),
    ]
    assert resumed.close_for(at(35.5)) == [(1, win.WindowMetadata(at(22.5), at(30), {2}))]
    assert not resumed.is_empty(), "kept, so that session ids are never reused"
    assert resumed.open_for(at(50)) == (4,)


def test_session_merges_into_the_earlier_session() -> None:
    logic = E.session(5).build(None)
    for s in (40, 30, 20, 10, 0, 35, 25, 15, 5):
        logic.open_for(at(s))
    assert logic.merged() == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert logic.close_for(win.UTC_MAX) == [(4, win.WindowMetadata(at(0), at(40), {3}))]


# Operators on values in order, out of order, late, and at end of input.


def test_tumbling_in_order_closes_windows_as_the_watermark_passes() -> None:
    items = keyed("a", 1, "a", 2, "b", 3, "a", 12, "b", 25, "a", 19.5, "a", 20)
    assert E.run([items], collect(E.tumbling())) == {
        "down": [("a", (0, [1, 2])), ("b", (0, [3])), ("a", (1, [12, 19.5])),
                 ("a", (2, [20])), ("b", (2, [25]))],
        "late": [],
        "meta": [("a", (0, meta(0, 10))), ("b", (0, meta(0, 10))), ("a", (1, meta(10, 20))),
                 ("a", (2, meta(20, 30))), ("b", (2, meta(20, 30)))],
    }


OUT_OF_ORDER = keyed("a", 3, "a", 1, "a", 12, "a", 8, "a", 2, "a", 16, "a", 9.999, "a", 10,
                     "b", 4, "a", 30, "b", 2, "b", 21)


@pytest.mark.parametrize("ordered, window_0", [(True, [1, 3, 8]), (False, [3, 1, 8])])
def test_out_of_order_and_late_values(ordered: bool, window_0: List[int]) -> None:
    got = E.run([OUT_OF_ORDER], collect(E.tumbling(), wait=5, ordered=ordered))
    assert got["down"] == [("a", (0, window_0)), ("a", (1, [12, 16])),
                           ("b", (0, [2, 4] if ordered else [4, 2])), ("a", (3, [30])),
                           ("b", (2, [21]))]
    assert got["late"] == [("a", (0, 2)), ("a", (0, 9.999)), ("a", (1, 10))]


def test_empty_windows_are_never_emitted() -> None:
    items = keyed("a", -15, "a", 1, "a", 45, "a", 46)
    assert E.run([items], collect(E.tumbling())) == {
        "down": [("a", (-2, [-15])), ("a", (0, [1])), ("a", (4, [45, 46]))],
        "late": [],
        "meta": [("a", (-2, meta(-20, -10))), ("a", (0, meta(0, 10))), ("a", (4, meta(40, 50)))],
    }


def test_end_of_input_closes_every_open_window() -> None:
    items = keyed("b", 7, "a", 30, "a", 1, "b", 100)
    got = E.run([items], collect(E.session(2), wait=1000))
    assert got["down"] == [("a", (0, [1])), ("a", (1, [30])), ("b", (0, [7])), ("b", (1, [100]))]


def test_equal_timestamps_are_on_time() -> None:
    items = keyed("a", 5, "a", 5, "a", 10, "a", 10, "a", 7, "a", 10)
    got = E.run([items], collect(E.tumbling()))
    assert got["down"] == [("a", (0, [5, 5])), ("a", (1, [10, 10, 10]))]
    assert got["late"] == [("a", (0, 7))]


def test_sliding_values_go_to_every_window_they_are_in() -> None:
    items = keyed("a", 1, "b", 3, "a", 12, "a", 2, "b", 25, "a", 5, "a", 7)
    got = E.run([items], collect(E.sliding(10, 5), wait=5))
    assert got["down"] == [("a", (-1, [1])), ("b", (-1, [3])), ("b", (0, [3])),
                           ("a", (0, [1, 7])), ("a", (1, [7, 12])), ("a", (2, [12])),
                           ("b", (4, [25])), ("b", (5, [25]))]
    assert got["late"] == [("a", (-1, 2)), ("a", (0, 2)), ("a", (0, 5)), ("a", (1, 5))]


@pytest.mark.parametrize(
    "ordered, down, meta_",
    [
        (True, [("a", (0, [1, 5, 7.5, 10, 15, 20])), ("a", (1, [100]))],
         [("a", (0, meta(1, 20))), ("a", (1, meta(100, 100)))]),
        (False, [("a", (2, [1, 10, 20, 15, 5, 7.5])), ("a", (3, [100]))],
         [("a", (2, meta(1, 20, [1]))), ("a", (3, meta(100, 100)))]),
    ],
)
def test_session_merges(ordered: bool, down: Any, meta_: Any) -> None:
    items = keyed("a", 20, "a", 10, "a", 15, "a", 1, "a", 5, "a", 7.5, "a", 100)
    got = E.run([items], collect(E.session(5), wait=100, ordered=ordered))
    assert got == {"down": down, "late": [], "meta": meta_}


@pytest.mark.parametrize(
    "ordered, down, meta_",
    [
        (False,
         [("a", (0, ("value", 10))), ("a", (1, ("value", 20))), ("a", (0, ("value", 15))),
          ("a", (0, ("merge", [20]))), ("a", (2, ("value", 30))), ("a", (2, ("value", 26))),
          ("a", (0, ("value", 22))), ("a", (0, ("merge", [30, 26]))), ("a", (3, ("value", 60))),
          ("a", (0, ("close", [10, 15, 20, 22, 30, 26]))), ("a", (3, ("close", [60])))],
         [("a", (0, meta(10, 30, [1, 2]))), ("a", (3, meta(60, 60)))]),
        (True,
         [("a", (0, ("value", v))) for v in (10, 15, 20, 22, 26, 30)]
         + [("a", (0, ("close", [10, 15, 20, 22, 26, 30]))), ("a", (1, ("value", 60))),
            ("a", (1, ("close", [60])))],
         [("a", (0, meta(10, 30))), ("a", (1, meta(60, 60)))]),
    ],
)
def test_window_calls_each_windows_logic(ordered: bool, down: Any, meta_: Any) -> None:
    items = keyed("a", 10, "a", 20, "a", 2, "a", 15, "a", 30, "a", 26, "a", 22, "a", 60)
    got = E.run([items], lambda s: win.window(
        "w", s, E.clock(10), E.session(5), Recorder, ordered=ordered))
    assert got == {"down": down, "late": [("a", (-1, 2))], "meta": meta_}


Recorder = recorder_logic(E)


# The operators built on ``window``.


def test_fold_window_merges_accumulators_of_merged_windows() -> None:
    got = SCENARIOS["fold_and_reduce"](E)["fold"]
    assert got["down"] == [("a", (0, [1])), ("a", (2, ["merged", [5], [10, 7.5]])),
                           ("a", (3, [30])), ("b", (0, [3]))]
    assert got["meta"][1] == ("a", (2, meta(5, 10, [1])))


def test_reduce_window_reduces_in_arrival_order() -> None:
    got = SCENARIOS["fold_and_reduce"](E)["reduce"]
    assert got["down"] == [("a", (0, 1)), ("a", (2, 5 * 100 + (10 * 100 + 7.5))),
                           ("a", (3, 30)), ("b", (0, 3))]


def test_max_and_min_window_keep_the_first_of_ties() -> None:
    got = SCENARIOS["max_min_ties"](E)
    assert got["max"]["down"] == [("a", (0, (7, "tie"))), ("a", (1, (3, "next")))]
    assert got["min"]["down"] == [("a", (0, (1, "first"))), ("a", (1, (3, "next")))]
    assert got["max_identity"]["down"] == [("a", (0, 3))]


def test_count_window_keys_items_and_counts_them() -> None:
    got = SCENARIOS["count"](E)
    assert got["tumbling"]["down"] == [
        ("banana", (0, 1)), ("apple", (0, 2)), ("apple", (1, 1)), ("banana", (1, 1)),
        ("cherry", (1, 1)),
    ]
    assert got["tumbling"]["late"] == [
        ("apple", (0, ("apple", 2))), ("apple", (0, ("apple", 5))), ("apple", (0, ("apple", 7.5))),
    ]
    assert got["session"]["down"] == [
        ("apple", (0, 5)), ("apple", (2, 1)), ("banana", (0, 1)), ("banana", (1, 1)),
        ("cherry", (0, 1)),
    ]


def test_collect_window_into_list_set_and_dict() -> None:
    got = SCENARIOS["collect_into"](E)
    assert got["list"]["down"] == [("a", (0, [("k", 1), ("j", 3), ("k", 2)])),
                                   ("a", (1, [("z", 12)]))]
    assert got["set"]["down"] == [("a", (0, ("set", [("j", 3), ("k", 1), ("k", 2)]))),
                                  ("a", (1, ("set", [("z", 12)])))]
    assert got["dict"]["down"] == [("a", (0, {"k": 2, "j": 3})), ("a", (1, {"z": 12}))]
    assert got["dict"]["late"] == [("a", (-1, ("j", 2.5)))]


def test_collect_window_refuses_other_containers() -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(TypeError, match="can't collect into <class 'tuple'>"):
        win.collect_window("cw", s, E.clock(), E.tumbling(), into=tuple)


def test_join_window_modes() -> None:
    got = SCENARIOS["join_tumbling"](E)
    assert got[("first", "complete")]["down"] == [
        ("a", (0, (("L1", 1), ("R1", 2)))), ("a", (0, (("L2", 3), ("R2", 4)))),
        ("a", (1, (("L4", 12), ("R3", 15)))),
    ]
    assert got[("last", "final")]["down"] == [
        ("a", (0, (("L2", 3), ("R2", 4)))), ("c", (0, (None, ("R4", 1)))),
        ("a", (1, (("L4", 12), ("R3", 15)))), ("b", (0, (("L3", 4), None))),
        ("c", (3, (("L5", 30), None))),
    ]
    assert got[("first", "running")]["down"][:4] == [
        ("a", (0, (("L1", 1), None))), ("a", (0, (("L1", 1), ("R1", 2)))),
        ("a", (0, (("L1", 1), ("R1", 2)))), ("a", (0, (("L1", 1), ("R1", 2)))),
    ]
    for out in got.values():
        assert out["late"] == [("a", (0, (0, ("L6", 5))))], "late values carry their side"


def test_join_window_merges_sessions() -> None:
    got = {modes: out["down"]["a"] for modes, out in SCENARIOS["join_session_merges"](E).items()}
    # Windows 1 (R1, R0, L3) and 2 (L2) merge; on a merge "first" keeps the
    # merged-in window's value, "last" the surviving window's, "product" both.
    assert got[("first", "final", False)] == [(0, (("L1", 1), None)), (2, (("L3", 6), ("R1", 10)))]
    assert got[("last", "final", False)] == [(0, (("L1", 1), None)), (2, (("L2", 5), ("R2", 7.5)))]
    assert got[("product", "final", False)] == [(0, (("L1", 1), None))] + [
        (2, (left, right)) for left in (("L2", 5), ("L3", 6))
        for right in (("R1", 10), ("R0", 9), ("R2", 7.5))
    ]
    assert got[("first", "complete", False)] == [(1, (("L3", 6), ("R1", 10))),
                                                 (2, (("L2", 5), ("R2", 7.5)))]
    assert got[("last", "running", False)][-3:] == [
        (1, (("L3", 6), ("R0", 9))), (2, (("L2", 5), ("R0", 9))), (2, (("L2", 5), ("R2", 7.5))),
    ]


def test_join_window_with_one_and_three_sides() -> None:
    got = SCENARIOS["join_one_and_three_sides"](E)
    assert got["one"]["down"] == [("a", (0, (("L2", 3),))), ("a", (1, (("L4", 12),))),
                                  ("b", (0, (("L3", 4),))), ("c", (3, (("L5", 30),)))]
    assert got["three"]["down"] == [("a", (0, (("L1", 1), ("R1", 2), ("T1", 2))))]


@pytest.mark.parametrize("kwargs, error", [
    ({"insert_mode": "bogus"}, "unknown join insert mode 'bogus'"),
    ({"emit_mode": "bogus"}, "unknown join emit mode 'bogus'"),
])
def test_join_window_checks_its_modes(kwargs: Dict[str, str], error: str) -> None:
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    with pytest.raises(ValueError, match=error):
        win.join_window("j", E.clock(), E.tumbling(), s, **kwargs)


def test_join_window_gives_other_clocks_the_side_tagged_values() -> None:
    seen: List[Any] = []

    class Logic(win.ClockLogic):
        def before_batch(self) -> None:
            pass

        def on_item(self, value: Any) -> Any:
            seen.append(value)
            return T0, T0

        def on_notify(self) -> datetime:
            return T0

        def on_eof(self) -> datetime:
            return win.UTC_MAX

        def to_system_utc(self, timestamp: datetime) -> None:
            return None

        def snapshot(self) -> None:
            return None

    class Fixed(win.Clock):
        def build(self, resume_state: Any) -> Logic:
            return Logic()

    got = E.run([keyed("a", 1), keyed("a", 2)],
                lambda left, right: win.join_window("j", Fixed(), E.tumbling(), left, right))
    assert seen == [(0, 1), (1, 2)]
    assert got["down"] == [("a", (0, (1, 2)))]


def test_step_ids_match_bytewax() -> None:
    """The stateful step's id names the snapshots, so it is the one Bytewax uses."""
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1)]))
    win.max_window("m", s, E.clock(), E.tumbling())
    win.join_window("j", E.clock(), E.tumbling(), s, s)
    win.count_window("c", s, E.clock(), E.tumbling(), key=lambda v: v[0])

    def leaves(step: Any) -> List[str]:
        return [step.step_id] if not step.substeps else [i for sub in step.substeps
                                                         for i in leaves(sub)]

    stateful = [i for step in flow.substeps for i in leaves(step) if i.endswith("stateful_batch")]
    assert stateful == [
        "df.m.reduce_window.fold_window.window.stateful_batch",
        "df.j.window.stateful_batch",
        "df.c.sum.window.stateful_batch",
    ]


# Time passing with no new values.


def test_windows_close_when_their_time_passes_without_new_values() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    items = [("a", 1), TestingSource.PAUSE(timedelta(seconds=0.5)), ("a", 2)]
    s = op.input("inp", flow, TestingSource(items))
    # Tag each value with how many windows had been emitted when it arrived.
    tagged = op.map_value("spy", s, lambda v: (v, len(out)))
    tenth = win.TumblingWindower(timedelta(seconds=0.1), datetime.now(timezone.utc))
    op.output("out", win.collect_window("cw", tagged, win.SystemClock(), tenth).down,
              TestingSink(out))
    run_main(flow)
    assert [values for _key, (_id, values) in out] == [[(1, 0)], [(2, 1)]]
    assert out[0][1][0] < out[1][1][0]


# Snapshots and resume.


def test_key_state_snapshots_to_plain_json() -> None:
    """A key's windows snapshot into JSON with tagged datetimes (no pickles)."""
    logic = KeyWindows(E.clock(20), E.session(5), Recorder, True, None)
    assert logic.on_batch([12, 9, 30]) == ([(0, 0, ("value", 9))], False)
    state = logic.snapshot()
    assert state == {
        "clock": [FIXED_NOW, at(10)],
        "windower": {"last_id": 0, "sessions": [[0, at(9), at(9), []]], "merges": []},
        "windows": [[0, [9]]],
        "queue": [[12, at(12)], [30, at(30)]],
    }
    blob = codec.encode(state)
    assert b"$pickle" not in blob and orjson.loads(blob)["windows"] == [[0, [9]]]
    resumed = KeyWindows(E.clock(20), E.session(5), Recorder, True, codec.decode(blob))
    assert resumed.on_eof() == ([
        (0, 0, ("value", 12)), (1, 0, ("value", 30)),
        (0, 0, ("close", [9, 12])), (0, 2, win.WindowMetadata(at(9), at(12))),
        (1, 0, ("close", [30])), (1, 2, win.WindowMetadata(at(30), at(30))),
    ], False)


# Written by fastflow before the window state had typed records (same layout since).
STORED_SESSION = (
    b'{"clock":[{"$datetime":"2030-01-01T00:00:00+00:00"},{"$datetime":"2024-01-01T00:00:10+00:00"}'
    b'],"windower":{"last_id":0,"sessions":[[0,{"$datetime":"2024-01-01T00:00:09+00:00"},{"$datet'
    b'ime":"2024-01-01T00:00:09+00:00"},[]]],"merges":[]},"windows":[[0,[9]]],"queue":[[12,{"$dat'
    b'etime":"2024-01-01T00:00:12+00:00"}],[30,{"$datetime":"2024-01-01T00:00:30+00:00"}]]}'
)
STORED_SLIDING = (
    b'{"clock":[{"$datetime":"2030-01-01T00:00:00+00:00"},{"$datetime":"2024-01-01T00:00:09+00:00"}'
    b'],"windower":[0,1],"windows":[[0,[9]],[1,[9]]],"queue":[[12,{"$datetime":"2024-01-01T00:00:'
    b'12+00:00"}]]}'
)


def test_state_stored_in_the_old_layout_resumes_identically() -> None:
    session = KeyWindows(E.clock(20), E.session(5), Recorder, True, codec.decode(STORED_SESSION))
    assert codec.encode(session.snapshot()) == STORED_SESSION, "same bytes written back"
    assert session.on_batch([25]) == ([], False), "25 - 20 is behind the restored watermark"
    assert session.on_eof() == ([
        (0, 0, ("value", 12)), (1, 0, ("value", 25)), (1, 0, ("value", 30)),
        (0, 0, ("close", [9, 12])), (0, 2, win.WindowMetadata(at(9), at(12))),
        (1, 0, ("close", [25, 30])), (1, 2, win.WindowMetadata(at(25), at(30))),
    ], False)
    sliding = KeyWindows(E.clock(3), E.sliding(10, 5), Recorder, True,
                         codec.decode(STORED_SLIDING))
    assert codec.encode(sliding.snapshot()) == STORED_SLIDING
    assert sliding.on_eof() == ([
        (1, 0, ("value", 12)), (2, 0, ("value", 12)),
        (0, 0, ("close", [9])), (0, 2, win.WindowMetadata(at(0), at(10))),
        (1, 0, ("close", [9, 12])), (1, 2, win.WindowMetadata(at(5), at(15))),
        (2, 0, ("close", [12])), (2, 2, win.WindowMetadata(at(10), at(20))),
    ], True)


def test_ordered_queue_is_part_of_the_snapshot() -> None:
    logic = KeyWindows(E.clock(10), E.tumbling(), Recorder, True, None)
    assert logic.on_batch([12, 3]) == ([], False)
    assert logic.notify_at() == at(3)
    resumed = KeyWindows(E.clock(10), E.tumbling(), Recorder, True,
                              roundtrip(logic.snapshot()))
    assert resumed.notify_at() == at(3)
    assert resumed.on_batch([20]) == ([(0, 0, ("value", 3)), (0, 0, ("close", [3])),
                                       (0, 2, win.WindowMetadata(at(0), at(10)))], False)
    assert resumed.on_eof() == ([
        (1, 0, ("value", 12)), (2, 0, ("value", 20)),
        (1, 0, ("close", [12])), (1, 2, win.WindowMetadata(at(10), at(20))),
        (2, 0, ("close", [20])), (2, 2, win.WindowMetadata(at(20), at(30))),
    ], True)


def test_resume_in_the_middle_of_open_windows() -> None:
    """Aborted with windows open, resumed: each window is emitted once, with all its values."""
    got = SCENARIOS["resume_mid_window_after_abort"](E)
    first, second = got["tumbling"]
    assert first == {"down": [], "late": [("a", (0, 4))], "meta": []}
    assert second["down"] == [("a", (0, [1])), ("a", (1, [12, 14])), ("b", (0, [2, 3, 6, 8])),
                              ("a", (2, [25])), ("a", (3, [30])), ("b", (3, [31]))]
    first, second = got["session"]
    assert first["down"] == [("a", (0, [1]))]
    assert second["down"] == [("a", (1, [12, 14])), ("b", (0, [2, 3, 6, 8])),
                              ("a", (2, [25, 30])), ("b", (1, [31]))]
    first, second = got["sliding"]
    emitted = [item for run in (first, second) for item in run["down"]]
    assert len(emitted) == len(set(map(repr, emitted))) == 12


def test_resume_after_end_of_input_keeps_the_watermark() -> None:
    got = SCENARIOS["resume_after_eof"](E)
    # Session windowers are never empty, so the key (and its clock) is kept:
    # on resume a value older than the watermark is late.
    assert [run["down"] for run in got["session"]] == [
        [("a", (0, [1])), ("a", (1, [12])), ("b", (0, [3]))],
        [("a", (2, [14])), ("b", (1, [25]))],
        [("a", (3, [13])), ("a", (4, [40]))],
    ]
    assert [run["late"] for run in got["session"]] == [[], [("a", (-1, 5))], []]
    # With no window open a tumbling key is forgotten, clock and all (as in
    # Bytewax): after a resume its old windows can open again.
    assert [run["down"] for run in got["tumbling"]] == [
        [("a", (0, [1])), ("a", (1, [12])), ("b", (0, [3]))],
        [("a", (0, [5])), ("a", (1, [14])), ("b", (2, [25]))],
        [("a", (1, [13])), ("a", (4, [40]))],
    ]


def test_resume_keeps_join_state_with_tuples_and_sets() -> None:
    abort = TestingSource.ABORT()
    items = [("a", ({"x"}, 1)), ("b", (("t", 1), 2)), abort, ("a", ({"y"}, 3)), ("b", (None, 12))]
    with tempfile.TemporaryDirectory() as db_dir:
        init_db_dir(db_dir, 1)
        runs = [
            E.run([items], lambda s: win.join_window(
                "j", E.clock(5, lambda v: v[1]), E.tumbling(), s, insert_mode="product"),
                recovery_config=RecoveryConfig(db_dir), epoch_interval=E.tiny_epoch)
            for _ in range(2)
        ]
    assert runs[0]["down"] == []
    assert runs[1]["down"] == [
        ("a", (0, ((("set", ["x"]), 1),))), ("a", (0, ((("set", ["y"]), 3),))),
        ("b", (0, ((("t", 1), 2),))), ("b", (1, ((None, 12),))),
    ]


# The ends of time: waiting forever, and timestamps next to datetime.min/max.

US = timedelta(microseconds=1)


def test_event_clock_saturates_at_the_ends_of_time() -> None:
    now = FakeNow()
    forever = win.EventClock(at, timedelta.max, now_getter=now).build(None)
    forever.before_batch()
    assert forever.on_item(5) == (at(5), win.UTC_MIN), "waiting forever: nothing is late"
    now.now += timedelta(seconds=2)
    assert forever.on_notify() == win.UTC_MIN + timedelta(seconds=2)
    on_system_time = win.EventClock(at, timedelta.max).build(None)
    on_system_time.before_batch()
    on_system_time.on_item(5)
    assert on_system_time.to_system_utc(at(5)).year > 4000, "the watermark starts at year 1"
    assert on_system_time.to_system_utc(win.UTC_MAX) == win.UTC_MAX
    no_wait = win.EventClock(lambda ts: ts, timedelta(0), now_getter=now).build(None)
    no_wait.before_batch()
    assert no_wait.on_item(win.UTC_MIN) == (win.UTC_MIN, win.UTC_MIN)
    assert no_wait.on_item(win.UTC_MAX - US) == (win.UTC_MAX - US, win.UTC_MAX - US)
    now.now += timedelta(days=1)
    assert no_wait.on_notify() == win.UTC_MAX, "system time passing saturates too"
    assert no_wait.on_item(win.UTC_MAX) == (win.UTC_MAX, win.UTC_MAX)
    waiting = win.EventClock(lambda ts: ts, timedelta(seconds=5), now_getter=now).build(None)
    waiting.before_batch()
    assert waiting.on_item(win.UTC_MIN + US) == (win.UTC_MIN + US, win.UTC_MIN)


def test_system_clock_with_a_window_as_long_as_time() -> None:
    everything = win.TumblingWindower(timedelta.max, align_to=win.UTC_MIN)
    got = E.run([keyed("a", 1, "a", 2)], lambda s: win.collect_window(
        "cw", s, win.SystemClock(), everything))
    assert got["down"] == [("a", (0, [1, 2]))]
    assert got["meta"] == [("a", (0, ("meta", ("at", (win.UTC_MIN - T0).total_seconds()),
                                      ("at", (win.UTC_MAX - T0).total_seconds()), [])))]


def test_tumbling_and_sliding_bounds_saturate() -> None:
    logic = E.tumbling(10).build(None)
    last, first = logic.open_for(win.UTC_MAX), logic.open_for(win.UTC_MIN)
    assert logic.open_for(win.UTC_MAX - US) == last and logic.late_for(win.UTC_MIN + US) == first
    closed = dict(logic.close_for(win.UTC_MAX))
    assert closed[last[0]] == win.WindowMetadata(win.UTC_MAX - timedelta(seconds=9.999999),
                                                 win.UTC_MAX)
    assert closed[first[0]] == win.WindowMetadata(win.UTC_MIN,
                                                  win.UTC_MIN + timedelta(seconds=10))
    endless = win.TumblingWindower(timedelta.max, align_to=T0).build(None)
    assert [endless.open_for(t) for t in (win.UTC_MIN, at(0), win.UTC_MAX)] == [[-1], [0], [0]]
    assert endless.close_for(win.UTC_MAX) == [(-1, win.WindowMetadata(win.UTC_MIN, T0)),
                                              (0, win.WindowMetadata(T0, win.UTC_MAX))]
    half = timedelta.max // 2
    sliding = win.SlidingWindower(timedelta.max, half, align_to=win.UTC_MIN).build(None)
    assert sliding.open_for(win.UTC_MIN) == [-2, -1, 0], "2 * half is 1 µs short of max"
    assert sliding.open_for(win.UTC_MAX) == [-1, 0]
    assert sliding.close_for(win.UTC_MAX - US) == [(-2, win.WindowMetadata(win.UTC_MIN,
                                                                           win.UTC_MIN + US))]
    assert sliding.notify_at() == win.UTC_MAX
    assert sliding.close_for(win.UTC_MAX) == [(-1, win.WindowMetadata(win.UTC_MIN, win.UTC_MAX)),
                                              (0, win.WindowMetadata(win.UTC_MIN, win.UTC_MAX))]


def test_sessions_with_an_endless_gap_close_at_the_end() -> None:
    logic = win.SessionWindower(timedelta.max).build(None)
    assert [logic.open_for(t) for t in (win.UTC_MAX, win.UTC_MIN, at(0))] == [(0,), (0,), (0,)]
    assert logic.notify_at() == win.UTC_MAX
    assert logic.close_for(win.UTC_MAX - US) == []
    assert logic.close_for(win.UTC_MAX) == [(0, win.WindowMetadata(win.UTC_MIN, win.UTC_MAX))]
    zero_gap = win.SessionWindower(timedelta(0)).build(None)
    assert [zero_gap.open_for(t) for t in (win.UTC_MAX, win.UTC_MAX - US, win.UTC_MAX)] == [
        (0,), (1,), (0,)]
    assert zero_gap.close_for(win.UTC_MAX - US) == []
    assert zero_gap.close_for(win.UTC_MAX) == [
        (0, win.WindowMetadata(win.UTC_MAX, win.UTC_MAX)),
        (1, win.WindowMetadata(win.UTC_MAX - US, win.UTC_MAX - US)),
    ], "the end of time closes even a session whose gap reaches it (Bytewax keeps it open)"


@pytest.mark.parametrize("windower", [E.tumbling(), E.sliding(10, 5), E.session(5),
                                      win.TumblingWindower(timedelta.max, T0),
                                      win.SessionWindower(timedelta.max)])
@pytest.mark.parametrize("wait", [timedelta(0), timedelta(seconds=5), timedelta.max])
def test_every_operator_runs_at_the_ends_of_time(windower: Any, wait: timedelta) -> None:
    """Values at datetime.min/max and everything between: every value comes out once."""
    stamps = [win.UTC_MIN, win.UTC_MIN + US, at(3), win.UTC_MAX - US, win.UTC_MAX]
    clock = win.EventClock(lambda ts: ts, wait, now_getter=lambda: FIXED_NOW)
    side_clock = win.EventClock(lambda v: v, wait, now_getter=lambda: FIXED_NOW)
    builds = {
        "collect": lambda s: win.collect_window("o", s, clock, windower),
        "count": lambda s: win.count_window("o", op.key_rm("rm", s), clock, windower,
                                            key=lambda _ts: "a"),
        "max": lambda s: win.max_window("o", s, clock, windower),
        "join": lambda s: win.join_window("o", side_clock, windower, s, insert_mode="product"),
    }
    for order in (stamps, stamps[::-1]):
        items = [("a", ts) for ts in order]
        for name, build in builds.items():
            got = E.run([items], build)
            assert got["down"], name
            if name == "collect":
                emitted = [v for _k, (_i, vs) in got["down"] for v in vs]
                late = [v for _k, (_i, v) in got["late"]]
                values = [("at", (ts - T0).total_seconds()) for ts in order]
                assert set(emitted + late) == set(values), "each value: in a window, or late"
            if wait == timedelta.max:
                assert got["late"] == [], name


def test_waiting_forever_matches_bytewax() -> None:
    """Checked against Bytewax 0.21.1 (``wait_forever`` scenario): nothing is late."""
    got = SCENARIOS["wait_forever"](E)
    assert got["collect"]["down"] == [("a", (0, [1, 2, 3, 8, 9.999])), ("a", (1, [10, 12, 16])),
                                      ("a", (3, [30])), ("b", (0, [2, 4])), ("b", (2, [21]))]
    assert all(run["late"] == [] for run in got.values())
    assert got["count"]["down"] == [("all", (0, 7)), ("all", (1, 3)), ("late ones", (3, 1)),
                                    ("late ones", (2, 1))], "closed in the order they opened"


# Parity with Bytewax: its results are recorded in tests/parity/windowing/ (see _parity.py).


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_parity_with_bytewax(name: str) -> None:
    assert SCENARIOS[name](E) == expected_scenario(name)


def test_every_scenario_has_exactly_one_recording() -> None:
    assert sorted(p.name for p in EXPECTED_WINDOWING.iterdir()) == sorted(
        f"{name}.txt" for name in SCENARIOS
    ), "a scenario without a recording, or a recording without a scenario: scripts/parity-update"


@pytest.fixture(scope="module")
def live_bytewax_results() -> Dict[str, Any]:
    python = bytewax_python()
    if python is None:
        pytest.skip("no .bytewax-venv and no FASTFLOW_BYTEWAX_PYTHON (scripts/test builds it)")
    return run_bytewax_scenarios(python)


@pytest.mark.bytewax
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_live_bytewax_gives_the_recorded_result(
    name: str, live_bytewax_results: Dict[str, Any]
) -> None:
    assert live_bytewax_results[name] == expected_scenario(name), (
        "Bytewax's result changed; check it and run scripts/parity-update"
    )


def test_scenarios_group_by_key() -> None:
    assert by_key({"down": [("a", 1), ("b", 2), ("a", 3)]}) == {"down": {"a": [1, 3], "b": [2]}}


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))

"""State TTL: ``ttl=`` on ``stateful_map``, ``stateful_flat_map`` and ``stateful``.

The system clock is replaced by a fake one (``time.time``; epochs are paced by
``time.monotonic``, untouched), advanced by marker items of the input. With
``epoch_interval=0`` and one item per batch, every item is a round and an epoch, so
each test knows exactly which epoch end sees which time.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from _stores import change_sets, stored_state

import fastflow.operators as op
from fastflow._cext.codec import encode_changes
from fastflow._contracts import ExpiringBuilder, MapSpec
from fastflow._engine.ttl import Timed
from fastflow._runtime.nodes import stateful_node
from fastflow._runtime.ttl import Expiry, plain
from fastflow._store_tools.status import read_status
from fastflow.dataflow import Dataflow
from fastflow.operators import StatefulLogic
from fastflow.operators._logic import ItemsAsBatch
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main

TTL = timedelta(seconds=10)
START = 1_000_000.0


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = START
        monkeypatch.setattr(time, "time", lambda: self.now)

    def advance(self, item: tuple[str, Any]) -> tuple[str, Any] | None:
        """``("advance", seconds)`` moves the clock and goes no further; others pass."""
        if item[0] == "advance":
            self.now += item[1]
            return None
        return item


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def count(n: int | None, _value: Any) -> tuple[int, int]:
    n = (n or 0) + 1
    return n, n


def run_counts(clock: Clock, items: list[Any], ttl: timedelta | None,
               db: Path | None = None, batch_size: int = 1,
               backup: timedelta | None = None) -> list[tuple[str, int]]:
    """Count items per key with ``stateful_map(..., ttl=ttl)``; return what it emitted."""
    flow = Dataflow("ttl")
    keyed = op.filter_map("clock", op.input("inp", flow, TestingSource(items, batch_size)),
                          clock.advance)
    out: list[tuple[str, int]] = []
    op.output("out", op.stateful_map("count", keyed, count, ttl=ttl), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0),
             recovery_config=None if db is None else RecoveryConfig(db, backup))
    return out


COUNT = "ttl.count.stateful_batch"


def test_a_key_idle_for_ttl_starts_over(clock: Clock) -> None:
    items = [("a", 1), ("advance", 5), ("b", 1), ("advance", 5), ("a", 1), ("b", 1)]
    # At the epoch ending at +10, a's last item (stamped at +0) is 10 s old: expired.
    assert run_counts(clock, items, TTL) == [("a", 1), ("b", 1), ("a", 1), ("b", 2)]
    assert run_counts(clock, items, None) == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_just_under_ttl_the_key_is_kept(clock: Clock) -> None:
    items = [("a", 1), ("advance", 9.999), ("a", 1), ("advance", 9.999), ("a", 1)]
    assert run_counts(clock, items, TTL) == [("a", 1), ("a", 2), ("a", 3)]


def test_expiry_is_checked_at_epoch_ends_only(clock: Clock) -> None:
    # One batch, so one epoch: the clock passes ttl inside it, nothing expires mid-epoch.
    items = [("a", 1), ("advance", 30), ("a", 1)]
    assert run_counts(clock, items, TTL, batch_size=3) == [("a", 1), ("a", 2)]


@pytest.mark.parametrize("spec", [
    MapSpec(count, None, False, ttl=TTL),
    ExpiringBuilder(lambda resume: ItemsAsBatch(Session, resume), TTL),
])
def test_an_expired_key_is_snapshotted_as_a_deletion(spec: Any) -> None:
    node = stateful_node("s", spec, lambda _batch: None, lambda: None, track_changes=True)
    node.push([("a", 1), ("b", 1)])
    node.expire(100.0)
    assert node.changes() == ({"a": Timed(100.0, 1), "b": Timed(100.0, 1)},
                              {"a": False, "b": False})
    node.push([("b", 1)])
    node.expire(105.0)
    assert node.changes() == ({"b": Timed(105.0, 2)}, {"b": True})
    node.expire(110.0)
    values, changed = node.changes()
    assert (values, changed) == ({}, {"a": True})
    assert encode_changes(values, changed, 100) == [(1, b'{"set":{},"del":["a"]}')]
    assert sorted(node.states) == ["b"]


def test_stamps_are_stored_with_the_state(clock: Clock, tmp_path: Path) -> None:
    init_db_dir(tmp_path / "db", 1)
    items = [("a", 1), ("b", 1), ("advance", 6), ("b", 1), ("advance", 6)]
    run_counts(clock, items, TTL, tmp_path / "db")
    assert stored_state(tmp_path / "db", COUNT) == {"b": Timed(START + 6, 2)}
    (*_, last) = change_sets(tmp_path / "db" / "part-0.sqlite3", COUNT)
    assert last[3]["set"]["b"] == {"$dataclass": [
        "fastflow._engine.ttl:Timed", {"updated_at": START + 6, "state": 2}]}


def test_stamps_survive_a_resume(clock: Clock, tmp_path: Path) -> None:
    init_db_dir(tmp_path / "db", 2)
    assert run_counts(clock, [("a", 1), ("b", 1)], TTL, tmp_path / "db") == [("a", 1), ("b", 1)]
    clock.now += 4  # the flow is down 4 s: downtime counts
    items = [("b", 1), ("advance", 5), ("x", 1), ("advance", 1), ("a", 1), ("b", 1)]
    # a was last updated at +0: still there at +9, gone at the epoch end at +10.
    assert run_counts(clock, items, TTL, tmp_path / "db") == [
        ("b", 2), ("x", 1), ("a", 1), ("b", 3)]
    assert stored_state(tmp_path / "db", COUNT) == {
        "a": Timed(START + 10, 1), "b": Timed(START + 10, 3), "x": Timed(START + 9, 1)}


def test_a_key_idle_longer_than_ttl_while_down_expires_at_the_first_epoch_end(
    clock: Clock, tmp_path: Path
) -> None:
    init_db_dir(tmp_path / "db", 1)
    run_counts(clock, [("a", 1), ("b", 1)], TTL, tmp_path / "db")
    clock.now += 3600
    # b gets an item in the first epoch after the resume: kept. a does not: discarded.
    assert run_counts(clock, [("b", 1), ("a", 1)], TTL, tmp_path / "db") == [
        ("b", 2), ("a", 1)]


def test_adding_or_removing_a_ttl_keeps_the_state(clock: Clock, tmp_path: Path) -> None:
    init_db_dir(tmp_path / "db", 1)
    run_counts(clock, [("a", 1)], None, tmp_path / "db")  # no stamps stored
    clock.now += 3600
    # Without a stored stamp, a key counts from the resume: kept at +9.5, gone at +10.
    items = [("x", 1), ("advance", 9.5), ("x", 1), ("advance", 0.5), ("a", 1)]
    assert run_counts(clock, items, TTL, tmp_path / "db") == [("x", 1), ("x", 2), ("a", 1)]
    assert stored_state(tmp_path / "db", COUNT)["a"] == Timed(START + 3610, 1)
    # Resumed without ttl, the stamped states are plain states again.
    assert run_counts(clock, [("advance", 100), ("a", 2)], None, tmp_path / "db") == [("a", 2)]
    # x got no item: its stored snapshot stays stamped (a resume unwraps it) until rewritten.
    assert stored_state(tmp_path / "db", COUNT) == {"a": 2, "x": Timed(START + 3609.5, 2)}


def test_ttl_bounds_a_churning_key_space(clock: Clock, tmp_path: Path) -> None:
    """Fresh keys every epoch: live keys and stored bytes stay flat with a ttl."""
    probes: dict[bool, list[tuple[int, int]]] = {}
    for with_ttl in (True, False):
        db = tmp_path / f"db-{with_ttl}"
        init_db_dir(db, 2)
        seen: list[tuple[int, int]] = []
        probes[with_ttl] = seen

        def probe(item: tuple[str, Any], db: Path = db, seen: list = seen) -> tuple[str, Any]:
            if item[0] == "advance":
                status = read_status(db)
                live = sum(s.live_keys for s in status.steps if s.step_id == COUNT)
                seen.append((live, sum(p.change_set_bytes for p in status.partitions)))
            return item

        items = [(f"e{epoch}k{i}", 1) if i < 99 else ("advance", 5)
                 for epoch in range(20) for i in range(100)]
        flow = Dataflow("ttl")
        stream = op.map("probe", op.input("inp", flow, TestingSource(items, 100)), probe)
        keyed = op.filter_map("clock", stream, clock.advance)
        op.output("out", op.stateful_map("count", keyed, count,
                                         ttl=TTL if with_ttl else None), TestingSink([]))
        run_main(flow, epoch_interval=timedelta(0),
                 recovery_config=RecoveryConfig(db, backup_interval=timedelta(0)))
    # Every epoch brings 99 fresh keys; with a 10 s ttl and 5 s epochs a key lives 2 epochs.
    late = probes[True][10:]
    assert {live for live, _ in late} == {198}
    assert max(size for _, size in late) <= 2 * min(size for _, size in late)
    grown = [live for live, _ in probes[False]]
    assert grown == sorted(grown) and grown[-1] >= 99 * 18  # the store lags an epoch or two
    assert probes[False][-1][1] > 3 * probes[False][5][1]
    assert len(stored_state(tmp_path / "db-True", COUNT)) == 198


def test_stateful_flat_map_with_ttl(clock: Clock) -> None:
    flow = Dataflow("ttl")
    items = [("a", 1), ("advance", 10), ("a", 1)]
    keyed = op.filter_map("clock", op.input("inp", flow, TestingSource(items, 1)), clock.advance)
    out: list[Any] = []

    def seen(n: int | None, _: Any) -> tuple[int, list[int]]:
        n = (n or 0) + 1
        return n, [n, n]

    op.output("out", op.stateful_flat_map("count", keyed, seen, TTL), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0))
    assert out == [("a", 1), ("a", 1), ("a", 1), ("a", 1)]


class Session(StatefulLogic):
    """Counts values; asks to be notified far in the future; reports its count at EOF."""

    def __init__(self, resume: int | None) -> None:
        self.n = resume or 0

    def on_item(self, value: Any) -> tuple[list[Any], bool]:
        self.n += 1
        return [("item", self.n)], self.RETAIN

    def notify_at(self) -> Any:
        from datetime import datetime, timezone
        return datetime(2999, 1, 1, tzinfo=timezone.utc)

    def on_eof(self) -> tuple[list[Any], bool]:
        return [("eof", self.n)], self.DISCARD

    def snapshot(self) -> int:
        return self.n


def test_stateful_with_ttl_drops_the_logic_and_its_timer_uncalled(
    clock: Clock, tmp_path: Path
) -> None:
    init_db_dir(tmp_path / "db", 1)
    items = [("a", 1), ("b", 1), ("advance", 6), ("b", 1), ("advance", 6), ("c", 1)]
    flow = Dataflow("ttl")
    keyed = op.filter_map("clock", op.input("inp", flow, TestingSource(items, 1)), clock.advance)
    out: list[Any] = []
    op.output("out", op.stateful("session", keyed, Session, TTL), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(tmp_path / "db"))
    assert out == [("a", ("item", 1)), ("b", ("item", 1)), ("b", ("item", 2)),
                   ("c", ("item", 1)), ("b", ("eof", 2)), ("c", ("eof", 1))]


def test_stateful_with_ttl_resumes_its_logic(clock: Clock, tmp_path: Path) -> None:
    init_db_dir(tmp_path / "db", 1)

    def run(items: list[Any]) -> list[Any]:
        flow = Dataflow("ttl")
        keyed = op.filter_map("clock", op.input("inp", flow, TestingSource(items, 1)),
                              clock.advance)
        out: list[Any] = []
        op.output("out", op.stateful("session", keyed, Session, ttl=TTL), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(0),
                 recovery_config=RecoveryConfig(tmp_path / "db"))
        return out

    # Keys are discarded at EOF by this logic; the abort keeps them in the snapshot.
    # Inputs differ from run to run, so TestingSource reads each from its start.
    assert run([("a", 1), TestingSource.ABORT()]) == [("a", ("item", 1))]
    stored = stored_state(tmp_path / "db", "ttl.session.stateful_batch")
    assert stored == {"a": Timed(START, 1)}
    clock.now += 5
    assert run([("a", 2), TestingSource.ABORT()]) == [("a", ("item", 2))]
    clock.now += 10
    assert run([("x", 3), ("a", 3), TestingSource.ABORT()]) == [
        ("x", ("item", 1)), ("a", ("item", 1))]


@pytest.mark.parametrize("ttl, error, message", [
    (10, TypeError, "ttl of step 's' must be a datetime.timedelta or None; got int"),
    (timedelta(0), ValueError, "ttl of step 's' must be positive; got 0:00:00"),
    (timedelta(seconds=-1), ValueError, "ttl of step 's' must be positive; got -1 day, 23:59:59"),
])
def test_bad_ttl_is_refused_when_the_flow_is_built(ttl: Any, error: type, message: str) -> None:
    for build in (
        lambda up: op.stateful_map("s", up, count, ttl=ttl),
        lambda up: op.stateful_map("s", up, lambda: 0, count, ttl=ttl),
        lambda up: op.stateful_flat_map("s", up, count, ttl),
        lambda up: op.stateful("s", up, Session, ttl),
    ):
        flow = Dataflow("bad")
        with pytest.raises(error) as raised:
            build(op.input("inp", flow, TestingSource([])))
        assert str(raised.value) == message


def test_the_legacy_builder_form_takes_ttl_by_keyword(clock: Clock) -> None:
    flow = Dataflow("ttl")
    items = [("a", 1), ("advance", 10), ("a", 1)]
    keyed = op.filter_map("clock", op.input("inp", flow, TestingSource(items, 1)), clock.advance)
    out: list[Any] = []
    op.output("out", op.stateful_map("sum", keyed, lambda: 100, lambda s, v: (s + v, s + v),
                                     ttl=TTL), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0))
    assert out == [("a", 101), ("a", 101)]


# The bookkeeping on its own.


def test_expiry_stamps_touched_keys_and_returns_the_expired_in_stamp_order() -> None:
    expiry = Expiry(TTL)
    live = {"a", "b", "c"}
    expiry.touch(["a", "b"])
    assert expiry.due(live, 100.0) == []
    expiry.touch(["c", "a"])
    assert expiry.due(live, 105.0) == []
    assert expiry.due(live, 109.9) == []
    assert expiry.due(live, 110.0) == ["b"]
    live.discard("c")  # its logic discarded it: forgotten once touched
    expiry.touch(["c"])
    assert expiry.due(live, 200.0) == ["a"]


def test_expiry_restore_and_wrap() -> None:
    expiry = Expiry(TTL)
    states = expiry.restore({"old": Timed(50.0, "o"), "plain": "p", "new": Timed(95.0, "n")},
                            now=100.0)
    assert states == {"old": "o", "plain": "p", "new": "n"}
    assert expiry.wrap(states, ["old", "plain", "gone"]) == {
        "old": Timed(50.0, "o"), "plain": Timed(100.0, "p")}
    assert expiry.due(set(states), 60.0) == ["old"]
    assert expiry.due(set(states), 105.0) == ["new"]
    assert expiry.due(set(states), 110.0) == ["plain"]


def test_plain_unwraps_only_when_needed() -> None:
    states = {"a": 1}
    assert plain(states) is states
    assert plain({"a": Timed(1.0, 2), "b": 3}) == {"a": 2, "b": 3}

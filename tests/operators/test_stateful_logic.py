"""``stateful`` / ``stateful_batch`` with ``StatefulLogic`` / ``StatefulBatchLogic``.

The order of the hook calls (build, on_item, on_batch, notify_at, on_notify,
on_eof, snapshot), discards, snapshots at epoch ends and on resume, and errors
raised from the hooks. The recording logics live in ``_helpers.py``.
Expected outputs are the ones observed with Bytewax 0.21.1 (see the team's
behaviour notes, section 3), except where a comment says fastflow differs on
purpose: within one batch, fastflow handles keys in arrival order (Bytewax
sorts them); at end of input both go in sorted key order.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, List

import pytest
from _helpers import PAUSE, TINY_EPOCH, Batches, RaisingLogic, Recorder, Traced, boom

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.operators import StatefulBatchLogic, StatefulLogic
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main

# The logic classes themselves


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


# Call sequences


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


def test_callbacks_may_return_any_iterable_and_any_truthy_flag(run_items_on: Any) -> None:
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

    out = run_items_on([("a", "gen"), ("a", "str"), ("a", 1)], lambda s: op.stateful("st", s, Lax))
    assert out == [("a", "x"), ("a", "y"), ("a", "a"), ("a", "b"), ("a", 1)]


# Snapshots (with recovery)


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


# Errors from the hooks


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
            return boom()

    init_db_dir(tmp_path, 1)
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("k", 1)]))
    op.output("out", op.stateful("x", s, lambda r: BadSnapshot(Recorder(), r)), TestingSink([]))
    with pytest.raises(FastflowRuntimeError, match="'df.x.stateful_batch'.*'k'") as info:
        run_main(flow, recovery_config=RecoveryConfig(tmp_path))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# When a time already due is notified (Bytewax 0.21.1's timing; parity flow
# flows/stateful_notify_timing.py).


class NotifyNow(StatefulLogic):
    """Asks to be notified at once after each item (``datetime.now()``), then calls."""

    def __init__(self, calls: List[str], discard: bool) -> None:
        self.calls = calls
        self.discard = discard
        self.due: Any = None

    def on_item(self, value: Any) -> Any:
        self.calls.append(f"on_item {value}")
        self.due = datetime.now(timezone.utc)
        return [value], self.RETAIN

    def on_notify(self) -> Any:
        self.calls.append("on_notify")
        self.due = None
        return ["NOTIFY"], self.discard

    def on_eof(self) -> Any:
        self.calls.append("on_eof")
        return ["EOF"], self.RETAIN

    def notify_at(self) -> Any:
        return self.due

    def snapshot(self) -> None:
        return None


def _notify_now(items: List[Any], discard: bool = False, **run_kw: Any) -> List[Any]:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(items))
    calls: List[str] = []
    op.output("out", op.stateful("s", s, lambda _r: NotifyNow(calls, discard)), TestingSink(out))
    run_main(flow, **run_kw)
    return out


@pytest.mark.parametrize("discard", [True, False])
def test_closing_an_epoch_notifies_what_is_due_before_reading_on(discard: bool) -> None:
    """Bytewax's test_stateful_on_notify_discard / _retain: each item, then its notification."""
    items = [("a", "ITEM")] * 3 + [("b", "ITEM")]
    out = _notify_now(items, discard, epoch_interval=timedelta(0))
    pairs = [("a", "ITEM"), ("a", "NOTIFY")] * 3 + [("b", "ITEM"), ("b", "NOTIFY")]
    assert out == pairs + ([] if discard else [("a", "EOF"), ("b", "EOF")])


def test_a_time_a_batch_asks_for_is_notified_after_the_next_batch() -> None:
    """Keys due are the ones due when the round begins; the next batch comes first."""
    out = _notify_now([("a", 1), ("a", 2), ("a", 3)])  # an epoch lasts the whole run
    assert out == [("a", 1), ("a", 2), ("a", "NOTIFY"), ("a", 3), ("a", "NOTIFY"), ("a", "EOF")]


def test_a_key_due_at_the_end_of_input_is_notified_before_on_eof() -> None:
    class LastAtEof(StatefulLogic):
        def on_item(self, value: Any) -> Any:
            return [value], self.RETAIN

        def on_eof(self) -> Any:
            return ["LAST"], self.RETAIN

        def snapshot(self) -> None:
            return None

    calls: List[str] = []
    out: List[Any] = []
    flow = Dataflow("df")
    # LAST (emitted at the end of the first step) and the end of input reach `s` together.
    last = op.stateful("last", op.input("inp", flow, TestingSource([("a", 1)])),
                       lambda _r: LastAtEof())
    op.output("out", op.stateful("s", last, lambda _r: NotifyNow(calls, False)),
              TestingSink(out))
    run_main(flow)
    assert out == [("a", 1), ("a", "NOTIFY"), ("a", "LAST"), ("a", "NOTIFY"), ("a", "EOF")]
    assert calls == ["on_item 1", "on_notify", "on_item LAST", "on_notify", "on_eof"]

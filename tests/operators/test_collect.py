"""``collect``: lists per key, emitted when full, after a timeout, or at end of input.

Expected outputs are the ones observed with Bytewax 0.21.1 (see the team's
behaviour notes, section 3), except where a comment says fastflow differs on
purpose. The timeout tests pause the input for 1 s against a 0.2 s timeout.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, List

import pytest
from _helpers import ABORT, BATCH_SIZES, PAUSE, TINY_EPOCH

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main


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


def test_collect_emits_after_timeout(run_items_on: Any) -> None:
    # a1, a2 arrive in one batch; the 0.2 s timeout passes during the 1 s pause.
    out = run_items_on(
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


def test_collect_can_wait_forever(run_items_on: Any) -> None:
    # timedelta.max used to overflow the due time (now + timeout); it saturates instead.
    out = run_items_on(
        [("a", 1), ("a", 2), ("a", 3)],
        lambda s: op.collect("c", s, timedelta.max, 2),
    )
    assert out == [("a", [1, 2]), ("a", [3])]

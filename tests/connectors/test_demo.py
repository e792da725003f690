"""RandomMetricSource: values, schedule, count, and resume."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, List

import pytest

import fastflow.operators as op
from fastflow._cext import codec
from fastflow.connectors.demo import RandomMetricSource
from fastflow.dataflow import Dataflow
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, run_main

TICK = timedelta(milliseconds=1)


def counter() -> Any:
    numbers = iter(range(100))
    return lambda: float(next(numbers))


def test_emits_named_values_count_times() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, RandomMetricSource("cpu", TICK, 3, counter())),
              TestingSink(out))
    run_main(flow)
    assert out == [("cpu", 0.0), ("cpu", 1.0), ("cpu", 2.0)]


def test_default_values_are_digits() -> None:
    source = RandomMetricSource("m", TICK, 200)
    (name,) = source.list_parts()
    assert name == "m"
    part = source.build_part("df.inp", name, None)
    values = {part.next_batch()[0][1] for _ in range(200)}
    assert values <= set(range(10)) and len(values) > 1


def test_schedules_one_value_per_interval() -> None:
    before = datetime.now(timezone.utc)
    part = RandomMetricSource("m", timedelta(seconds=5), 2, counter()).build_part("s", "m", None)
    first = part.next_awake()
    assert first is not None and first >= before
    part.next_batch()
    assert part.next_awake() == first + timedelta(seconds=5)
    part.next_batch()
    with pytest.raises(StopIteration):
        part.next_batch()


def test_resumes_after_the_values_already_emitted() -> None:
    part = RandomMetricSource("m", TICK, 3, counter()).build_part("s", "m", None)
    part.next_batch()
    state = codec.decode(codec.encode(part.snapshot()))
    resumed = RandomMetricSource("m", TICK, 3, counter()).build_part("s", "m", state)
    assert resumed.next_awake() == part.next_awake()
    assert [resumed.next_batch(), resumed.next_batch()] == [[("m", 0.0)], [("m", 1.0)]]
    with pytest.raises(StopIteration):
        resumed.next_batch()


def test_finished_source_resumed_emits_nothing(tmp_path: Any) -> None:
    init_db_dir(tmp_path, 1)
    runs = []
    for _ in range(2):
        out: List[Any] = []
        flow = Dataflow("df")
        source = RandomMetricSource("m", TICK, 2, counter())
        op.output("out", op.input("inp", flow, source), TestingSink(out))
        run_main(flow, recovery_config=RecoveryConfig(tmp_path))
        runs.append(out)
    assert runs == [[("m", 0.0), ("m", 1.0)], []]


def test_rejects_a_foreign_partition() -> None:
    with pytest.raises(ValueError, match="has no partition 'disk'"):
        RandomMetricSource("cpu").build_part("s", "disk", None)

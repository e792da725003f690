"""The worker loop: rounds, idling without spinning, epochs, and ending."""

from datetime import datetime, timedelta, timezone

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.inputs import DynamicSource, StatelessSourcePartition
from fastflow.testing import TestingSink, TestingSource, run_main


class CountingPart(StatelessSourcePartition):
    """Emits nothing until ``ready_at``, then one item and ends; counts its polls."""

    def __init__(self, ready_at, wake_at):
        self.ready_at, self.wake_at, self.polls, self.done = ready_at, wake_at, 0, False

    def next_batch(self):
        self.polls += 1
        if self.done:
            raise StopIteration()
        if datetime.now(timezone.utc) < self.ready_at:
            return []
        self.done = True
        return ["ready"]

    def next_awake(self):
        return self.wake_at(self)


class CountingSource(DynamicSource):
    def __init__(self, part):
        self.part = part

    def build(self, step_id, worker_index, worker_count):
        return self.part


def run_source(part):
    flow = Dataflow("idle")
    out = []
    op.output("out", op.input("inp", flow, CountingSource(part)), TestingSink(out))
    run_main(flow)
    return out


def test_a_partition_asking_to_wake_later_is_not_polled_before():
    ready = datetime.now(timezone.utc) + timedelta(milliseconds=300)
    part = CountingPart(ready, lambda p: None if p.done else p.ready_at)
    assert run_source(part) == ["ready"]
    assert part.polls <= 3  # first poll, the one at ready_at, the one that ends


def test_an_idle_partition_without_a_wake_time_is_polled_gently():
    ready = datetime.now(timezone.utc) + timedelta(milliseconds=300)
    part = CountingPart(ready, lambda _p: None)
    assert run_source(part) == ["ready"]
    # One poll per idle millisecond at most, not a busy loop (which polls ~1e5 times).
    assert part.polls <= 400


def test_epochs_advance_with_the_interval():
    seen = []
    flow = Dataflow("epochs")
    items = [1, TestingSource.PAUSE(timedelta(milliseconds=120)), 2]
    s = op.input("inp", flow, TestingSource(items))
    op.inspect_debug("i", s, lambda _s, item, epoch, _w: seen.append((item, epoch)))
    run_main(flow, epoch_interval=timedelta(milliseconds=20))
    (first, e1), (second, e2) = seen
    assert (first, second, e1) == (1, 2, 1)
    assert e2 > e1 + 2


def test_one_round_carries_a_batch_through_every_step_before_the_next_poll():
    log = []
    flow = Dataflow("rounds")
    s = op.input("inp", flow, TestingSource([1, 2, 3, 4], batch_size=2))
    a = op.inspect("a", s, lambda _s, x: log.append(("a", x)))
    op.inspect("b", op.map("double", a, lambda x: 2 * x), lambda _s, x: log.append(("b", x)))
    run_main(flow)
    assert log == [("a", 1), ("a", 2), ("b", 2), ("b", 4), ("a", 3), ("a", 4), ("b", 6), ("b", 8)]


def test_a_step_gets_a_rounds_input_as_one_batch_inputs_in_merge_order():
    batches = []
    flow = Dataflow("merged")
    a = op.input("a", flow, TestingSource([1, 2, 3], batch_size=2))
    b = op.input("b", flow, TestingSource([10, 20], batch_size=2))
    merged = op.merge("m", b, a)
    op.output("out", op.flat_map_batch("seen", merged, lambda xs: [list(xs)]), TestingSink(batches))
    run_main(flow)
    assert batches == [[10, 20, 1, 2], [3]]


def test_all_inputs_must_end_before_the_run_does():
    out = []
    flow = Dataflow("ends")
    short = op.input("short", flow, TestingSource([1]))
    pause = TestingSource.PAUSE(timedelta(milliseconds=50))
    long = op.input("long", flow, TestingSource([2, pause, 3]))
    counts = op.count_final("n", op.merge("m", short, long), lambda _x: "all")
    op.output("out", counts, TestingSink(out))
    run_main(flow)
    assert out == [("all", 3)]

"""The worker loop: rounds, idling without spinning, epochs, and ending."""

import time
from datetime import datetime, timedelta, timezone

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main

# These tests check *how often* the loop does things, on machines that may be
# busy (2 cores running other suites). Load only ever makes sleeps longer and
# loops slower, so every check below is either a lower bound on elapsed time,
# an upper bound on a count with a wide margin, or waits for an event (with a
# long guard against hanging) instead of for a fixed time.


class CountingPart(StatelessSourcePartition):
    """Emits nothing until ``ready_at``, then one item and ends; counts its polls."""

    def __init__(self, ready_at, wake_at):
        self.ready_at, self.wake_at, self.polls, self.done = ready_at, wake_at, 0, False
        self.poll_times = []

    def next_batch(self):
        self.polls += 1
        now = datetime.now(timezone.utc)
        self.poll_times.append(now)
        if self.done:
            raise StopIteration()
        if now < self.ready_at:
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
    # After the first poll, no poll comes before the wake time (5 ms of slack
    # for the wall clock against the monotonic one the engine sleeps on); a
    # busy machine only makes the engine wake later.
    early = [t for t in part.poll_times[1:] if t < ready - timedelta(milliseconds=5)]
    assert early == []
    # First poll, the one at ready_at, the one that ends (one more if a sleep
    # ended a hair early); polling every idle millisecond would give ~300.
    assert part.polls <= 4


def test_an_idle_partition_without_a_wake_time_is_polled_gently():
    ready = datetime.now(timezone.utc) + timedelta(milliseconds=300)
    part = CountingPart(ready, lambda _p: None)
    assert run_source(part) == ["ready"]
    # Idle polling sleeps about a millisecond between polls: ~260 polls over
    # these 300 ms, fewer on a busy machine. Busy-spinning polls ~100,000 times
    # (measured), and still tens of thousands on a core shared with others.
    assert part.polls < 3_000


class EpochWatchingPart(StatefulSourcePartition):
    """Emits 1, then holds 2 back, idle, until ``epochs`` epochs have closed.

    With recovery on, the engine snapshots every source partition at each epoch
    end, so ``snapshot`` calls count closed epochs. Between polls the partition
    asks to sleep ``nap``, longer than the epoch interval, so epochs must close
    while the input is idle. ``guard`` only keeps a broken engine from hanging.
    """

    def __init__(self, epochs, nap, guard):
        self.epochs, self.nap, self.guard = epochs, nap, time.monotonic() + guard
        self.closed, self.sent, self.times = 0, [], []

    def next_batch(self):
        if not self.sent or (
            len(self.sent) == 1 and (self.closed >= self.epochs or time.monotonic() > self.guard)
        ):
            self.sent.append(len(self.sent) + 1)
            self.times.append(time.monotonic())
            return [self.sent[-1]]
        if len(self.sent) == 2:
            raise StopIteration()
        return []

    def next_awake(self):
        return None if len(self.sent) != 1 else datetime.now(timezone.utc) + self.nap

    def snapshot(self):
        self.closed += 1
        return None


class EpochWatchingSource(FixedPartitionedSource):
    def __init__(self, part):
        self.part = part

    def list_parts(self):
        return ["p"]

    def build_part(self, step_id, for_part, resume_state):
        return self.part


def test_epochs_advance_with_the_interval(tmp_path):
    interval = timedelta(milliseconds=20)
    part = EpochWatchingPart(epochs=3, nap=5 * interval, guard=10)
    seen = []
    flow = Dataflow("epochs")
    s = op.input("inp", flow, EpochWatchingSource(part))
    op.inspect_debug("i", s, lambda _s, item, epoch, _w: seen.append((item, epoch)))
    init_db_dir(tmp_path, 1)
    run_main(flow, epoch_interval=interval, recovery_config=RecoveryConfig(tmp_path))
    (first, e1), (second, e2) = seen
    assert (first, second, e1) == (1, 2, 1)
    # The epochs closed while the input was idle are the epochs 2 was held
    # back for (the guard would let it through after 10 s with fewer).
    assert e2 >= e1 + 3
    # ... and they did not close faster than the interval: three intervals at
    # least between the two items (a lower bound, which load cannot break).
    assert part.times[1] - part.times[0] >= 3 * interval.total_seconds() - 0.005


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

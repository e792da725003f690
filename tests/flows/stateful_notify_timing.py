"""When ``on_notify`` runs for a time that is already due (Bytewax 0.21.1's timing).

Bytewax decides which keys are due when a step's activation begins: a
``notify_at`` that a batch asks for (even one already past) is notified in a
later activation, after that one's batch. Closing an epoch activates the step
once more, for the notifications due, before the next input is read, so with
an epoch interval of 0 each item is followed by its notification (Bytewax's
``test_stateful_on_notify_discard`` / ``_retain``). A key due when the input
ends (also one its last batch asked for) is notified before ``on_eof``.
"""

from datetime import datetime, timedelta, timezone

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSink, TestingSource, run_main

PAST = datetime(2000, 1, 1, tzinfo=timezone.utc)


class NotifyNow(StatefulLogic):
    """Asks to be notified at once after each item; ``discard`` on notify or not."""

    def __init__(self, discard):
        self.discard = discard
        self.due = None

    def on_item(self, value):
        self.due = datetime.now(timezone.utc)
        return [value], False

    def on_notify(self):
        self.due = None
        return ["NOTIFY"], self.discard

    def on_eof(self):
        return [], False

    def notify_at(self):
        return self.due

    def snapshot(self):
        return None


for discard in (True, False):
    out = []
    zero = Dataflow("epoch_interval_0")
    items = op.input("inp", zero, TestingSource([("a", "ITEM")] * 3 + [("b", "ITEM")]))
    notified = op.stateful("s", items, lambda _resume, d=discard: NotifyNow(d))
    op.output("out", notified, TestingSink(out))
    run_main(zero, epoch_interval=timedelta(0))
    print(f"discard={discard}: {out}")


class LastAtEof(StatefulLogic):
    """Passes items on and emits ``LAST`` at the end of input."""

    def on_item(self, value):
        return [value], False

    def on_eof(self):
        return ["LAST"], False

    def snapshot(self):
        return None


# The last batch (LAST, at the previous step's end) and the end of input reach the step
# together while a key is due: it is notified (after the batch) before on_eof.
for interval in (timedelta(0), timedelta(seconds=10)):
    out = []
    chain = Dataflow("chain")
    last = op.stateful("last", op.input("inp", chain, TestingSource([("a", 1)])),
                       lambda _resume: LastAtEof())
    op.output("out", op.stateful("s", last, lambda _resume: NotifyNow(False)), TestingSink(out))
    run_main(chain, epoch_interval=interval)
    print(f"chain, epoch interval {interval}: {out}")


BATCHES = [[("a", 1)], [("a", 2)], [("b", 3)], [("a", 4), ("b", 5)]]


class Batches(StatefulSourcePartition):
    """``BATCHES``, one per poll, saying what it gives."""

    def __init__(self):
        self.polls = 0

    def next_batch(self):
        if self.polls == len(BATCHES):
            print("poll: end of input")
            raise StopIteration()
        batch = BATCHES[self.polls]
        self.polls += 1
        print(f"poll: {batch}")
        return batch

    def snapshot(self):
        return None


class BatchesSource(FixedPartitionedSource):
    def list_parts(self):
        return ["only"]

    def build_part(self, step_id, for_part, resume_state):
        return Batches()


class Traced(StatefulLogic):
    """Asks to be notified at once after each item, and says what it is called with."""

    def __init__(self):
        self.seen = []
        self.due = None

    def on_item(self, value):
        self.seen.append(value)
        self.due = datetime.now(timezone.utc)
        print(f"on_item {value}")
        return [f"item {value}"], False

    def on_notify(self):
        print(f"on_notify after {self.seen}")
        self.due = None
        return [f"notified after {self.seen}"], False

    def on_eof(self):
        print(f"on_eof after {self.seen}")
        return [f"eof after {self.seen}"], False

    def notify_at(self):
        return self.due

    def snapshot(self):
        return None


flow = Dataflow("notify_timing")  # run with the default epoch interval (10 s)
s = op.input("inp", flow, BatchesSource())
op.output("out", op.stateful("traced", s, lambda _resume: Traced()), StdOutSink())

"""Stateful logic whose notification is due in the round an item arrives.

Bytewax calls ``on_batch`` (``on_item``) for the round's items first, then
``on_notify`` for the keys due, then ``on_eof`` at the end of input; the
emits go downstream in that order.
"""

from datetime import datetime, timezone

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic, StatefulLogic
from bytewax.testing import TestingSource

PAST = datetime(2000, 1, 1, tzinfo=timezone.utc)


class BatchLogic(StatefulBatchLogic):
    """Asks to be notified (at once) once it has seen an item, until notified."""

    def __init__(self):
        self.seen = []
        self.notified = False

    def on_batch(self, values):
        self.seen.extend(values)
        print(f"on_batch {values}", flush=True)
        return [f"batch {values}"], False

    def on_notify(self):
        print(f"on_notify after {self.seen}", flush=True)
        self.notified = True
        return [f"notified after {self.seen}"], False

    def on_eof(self):
        print(f"on_eof after {self.seen}", flush=True)
        return [f"eof after {self.seen}"], True

    def notify_at(self):
        return PAST if self.seen and not self.notified else None

    def snapshot(self):
        return None


class ItemLogic(StatefulLogic):
    """The same, one item at a time."""

    def __init__(self):
        self.seen = []
        self.notified = False

    def on_item(self, value):
        self.seen.append(value)
        print(f"on_item {value}", flush=True)
        return [f"item {value}"], False

    def on_notify(self):
        print(f"item logic on_notify after {self.seen}", flush=True)
        self.notified = True
        return [f"item logic notified after {self.seen}"], False

    def on_eof(self):
        return [], True

    def notify_at(self):
        return PAST if self.seen and not self.notified else None

    def snapshot(self):
        return None


flow = Dataflow("notify_order")
items = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2), ("b", 3)]
s = op.input("inp", flow, TestingSource(items, batch_size=2))
op.output("batch_out", op.stateful_batch("batch", s, lambda _resume: BatchLogic()), StdOutSink())
op.output("item_out", op.stateful("item", s, lambda _resume: ItemLogic()), StdOutSink())

"""stateful with a StatefulLogic: per-key state, discard, and on_eof in key order."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.testing import TestingSource


class Tally(StatefulLogic):
    def __init__(self, resume_state):
        self.seen = resume_state or []

    def on_item(self, value):
        if value == "drop":
            return [("dropped", list(self.seen))], StatefulLogic.DISCARD
        self.seen.append(value)
        return [("seen", len(self.seen))], StatefulLogic.RETAIN

    def on_eof(self):
        return [("eof", list(self.seen))], StatefulLogic.RETAIN

    def snapshot(self):
        return list(self.seen)


items = [("y", 1), ("x", 2), ("y", "drop"), ("x", 3), ("y", 4), ("w", 5)]
flow = Dataflow("logic")
inp = op.input("inp", flow, TestingSource(items))
op.output("out", op.stateful("tally", inp, Tally), StdOutSink())

"""Keyed stateful steps with batch_size=4: each batch is handled key by key, keys sorted."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSource


class Batches(StatefulBatchLogic):
    def __init__(self, resume_state):
        self.n = resume_state or 0

    def on_batch(self, values):
        self.n += 1
        return [("batch", self.n, values)], StatefulBatchLogic.RETAIN

    def snapshot(self):
        return self.n


items = [("b", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5), ("a", 6)]
flow = Dataflow("sbo")
inp = op.input("inp", flow, TestingSource(items, batch_size=4))
op.output("maps", op.stateful_map("sum", inp, lambda s, v: ((s or 0) + v,) * 2), StdOutSink())
flat = op.stateful_flat_map("flat", inp, lambda s, v: ((s or 0) + 1, [v, -v]))
op.output("flat_maps", flat, StdOutSink())
op.output("batches_out", op.stateful_batch("batches", inp, Batches), StdOutSink())

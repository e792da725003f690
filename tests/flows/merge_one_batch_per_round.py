"""Two inputs merged: what arrives in one round reaches the next steps as one batch."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSource


class Batches(StatefulBatchLogic):
    def __init__(self, resume_state):
        pass

    def on_batch(self, values):
        return [tuple(values)], StatefulBatchLogic.RETAIN

    def snapshot(self):
        return None


flow = Dataflow("mob")
a = op.input("a", flow, TestingSource([1, 2, 3], batch_size=2))
b = op.input("b", flow, TestingSource([10, 20, 30], batch_size=2))
merged = op.merge("merge", a, b)
op.output("batches", op.flat_map_batch("whole", merged, lambda xs: [xs]), StdOutSink())
keyed = op.key_on("key", merged, lambda _x: "K")
op.output("per_key", op.stateful_batch("logic", keyed, Batches), StdOutSink())

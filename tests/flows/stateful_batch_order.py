"""Keyed stateful steps with batch_size=4: each batch is handled key by key, keys sorted."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

items = [("b", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5), ("a", 6)]
flow = Dataflow("sbo")
inp = op.input("inp", flow, TestingSource(items, batch_size=4))
op.output("maps", op.stateful_map("sum", inp, lambda s, v: ((s or 0) + v,) * 2), StdOutSink())

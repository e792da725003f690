"""A mapper that raises mid-stream: what was printed before the error is the same."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("raising")
inp = op.input("inp", flow, TestingSource([4, 2, 0, 1]))
op.output("out", op.map("inv", inp, lambda x: 8 // x), StdOutSink())

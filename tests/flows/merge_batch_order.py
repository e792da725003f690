"""branch then merge with batch_size=4: within a batch, merge emits its ups in argument order."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("mbo")
nums = op.input("inp", flow, TestingSource(range(1, 9), batch_size=4))
parts = op.branch("even", nums, lambda x: x % 2 == 0)
evens = op.map("tag_even", parts.trues, lambda x: ("T", x))
odds = op.map("tag_odd", parts.falses, lambda x: ("F", x))
op.output("out", op.merge("merge", odds, evens), StdOutSink())

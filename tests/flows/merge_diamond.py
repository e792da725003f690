"""A diamond: the same item reaches merge along two paths; inspect and output both print."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("bm")
nums = op.input("inp", flow, TestingSource(range(1, 9)))
parts = op.branch("even", nums, lambda x: x % 2 == 0)
evens = op.map("tag_even", parts.trues, lambda x: ("T", x))
odds = op.map("tag_odd", parts.falses, lambda x: ("F", x))
thirds = op.filter("thirds", nums, lambda x: x % 3 == 0)
merged = op.merge("merge", evens, odds, thirds)
op.inspect("seen", merged)
op.output("out", merged, StdOutSink())

"""flat_map_batch sees the source's batches (batch_size=3)."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("fmb")
nums = op.input("inp", flow, TestingSource(list(range(10)), batch_size=3))
batches = op.flat_map_batch("batches", nums, lambda xs: [(len(xs), sum(xs), type(xs).__name__)])
op.output("out", batches, StdOutSink())
doubled = op.flat_map_batch("double", nums, lambda xs: xs + xs)
evens = op.filter("even", doubled, lambda x: x % 2 == 0)
op.output("out2", evens, StdOutSink())

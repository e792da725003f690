"""TestingSource EOF marker: everything after it is never read."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("eof")
items = ["a", "b", TestingSource.EOF(), "c"]
s = op.input("inp", flow, TestingSource(items))
op.output("out", op.map("up", s, str.upper), StdOutSink())

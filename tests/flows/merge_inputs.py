"""merge of three inputs: each round polls every input once; merge keeps its argument order."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("mi")
a = op.input("a", flow, TestingSource(["a1", "a2", "a3"]))
b = op.input("b", flow, TestingSource(["b1", "b2"]))
c = op.input("c", flow, TestingSource(["c1", "c2", "c3", "c4"]))
merged = op.merge("merge", b, c, a)
op.output("out", merged, StdOutSink())

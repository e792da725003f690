"""bytewax.operators.helpers.map_dict_value: map one value of each dict, in place."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.operators.helpers import map_dict_value
from bytewax.testing import TestingSource

rows = [{"name": "ann", "n": 1}, {"name": "bob", "n": 2, "extra": None}]
flow = Dataflow("helpers")
s = op.input("inp", flow, TestingSource(rows, batch_size=2))
s = op.map("upper", s, map_dict_value("name", str.upper))
s = op.map("times_ten", s, map_dict_value("n", lambda n: n * 10))
op.output("out", s, StdOutSink())

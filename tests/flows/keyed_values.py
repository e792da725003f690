"""key_on, map_value, filter_value, filter_map_value, flat_map_value, key_rm."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

events = [
    {"user": "ann", "n": 3},
    {"user": "bob", "n": 0},
    {"user": "ann", "n": 7},
    {"user": "cy", "n": 2},
    {"user": "bob", "n": 5},
]
flow = Dataflow("kv")
inp = op.input("inp", flow, TestingSource(events))
keyed = op.key_on("by_user", inp, lambda e: e["user"])
counts = op.map_value("n", keyed, lambda e: e["n"])
nonzero = op.filter_value("nonzero", counts, lambda n: n > 0)
halves = op.filter_map_value("half", nonzero, lambda n: n // 2 if n > 2 else None)
spread = op.flat_map_value("spread", halves, lambda n: range(n))
op.inspect("spread_seen", spread)
op.output("keyed_out", spread, StdOutSink())
values = op.key_rm("unkey", counts)
op.output("values_out", values, StdOutSink())

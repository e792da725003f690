"""join with every insert and emit mode; both sides come from one input (fixed arrival order)."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

events = [
    ("L", "a", 1),
    ("R", "a", "x"),
    ("L", "a", 2),
    ("R", "a", "y"),
    ("L", "b", 10),
    ("R", "c", "z"),
    ("L", "c", 20),
]
flow = Dataflow("joins")
inp = op.input("inp", flow, TestingSource(events))
sides = op.branch("side", inp, lambda e: e[0] == "L")
left = op.map("left", sides.trues, lambda e: (e[1], e[2]))
right = op.map("right", sides.falses, lambda e: (e[1], e[2]))
for insert in ["first", "last", "product"]:
    for emit in ["complete", "final", "running"]:
        joined = op.join(f"{insert}_{emit}", left, right, insert_mode=insert, emit_mode=emit)
        tagged = op.map(f"tag_{insert}_{emit}", joined, lambda kv, t=(insert, emit): (t, kv))
        op.output(f"out_{insert}_{emit}", tagged, StdOutSink())

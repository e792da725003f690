"""stateful_map (3-argument form): a running sum per key, dropping state at a reset."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource


def running_sum(total, value):
    if value == "reset":
        return None, ("reset", total)
    total = (total or 0) + value
    return total, (total, value)


readings = [("b", 1), ("a", 2), ("b", 3), ("a", "reset"), ("a", 4), ("é", 5), ("B", 6), ("b", 7)]
flow = Dataflow("sm")
inp = op.input("inp", flow, TestingSource(readings))
sums = op.stateful_map("sum", inp, running_sum)
op.output("out", sums, StdOutSink())

"""map, filter, filter_map, flat_map, flatten and redistribute into StdOutSink."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("chain")
lines = op.input("inp", flow, TestingSource(["the quick", "", "brown fox jumps", "over"]))
words = op.flat_map("split", lines, str.split)
lengths = op.map("len", words, lambda w: (w, len(w)))
long_ones = op.filter("long", lengths, lambda wl: wl[1] > 3)
parsed = op.filter_map("odd_only", long_ones, lambda wl: wl if wl[1] % 2 else None)
pairs = op.map("pair", parsed, lambda wl: [wl[0], wl[0].upper()])
flat = op.flatten("flat", pairs)
spread = op.redistribute("spread", flat)
op.output("out", spread, StdOutSink())

"""fold_final, count_final, reduce_final, max_final, min_final: emitted at EOF in key order."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

words = ["b", "a", "10", "9", "B", "é", "_", "a", "Z", "b", "a"]
flow = Dataflow("agg")
inp = op.input("inp", flow, TestingSource(words))
op.output("counts", op.count_final("count", inp, lambda w: w), StdOutSink())
keyed = op.key_on("first", op.map("pos", inp, lambda w: (w, len(w))), lambda wl: wl[0][0])
lengths = op.map_value("len", keyed, lambda wl: wl[1])
op.output("folds", op.fold_final("fold", lengths, list, lambda acc, n: acc + [n]), StdOutSink())
op.output("sums", op.reduce_final("sum", lengths, lambda a, b: a + b), StdOutSink())
scored = op.map_value("score", keyed, lambda wl: {"w": wl[0], "n": wl[1]})
op.output("max_out", op.max_final("max", scored, lambda d: d["n"]), StdOutSink())
op.output("min_out", op.min_final("min", scored, lambda d: d["n"]), StdOutSink())

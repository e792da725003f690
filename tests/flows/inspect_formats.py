"""inspect and inspect_debug default output, custom inspectors, nested step ids."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.testing import TestingSource


@operator
def shout(step_id: str, up: Stream[str]) -> Stream[str]:
    loud = op.map("upper", up, str.upper)
    return op.inspect("loud", loud)


def show(step_id, item):
    print(f"custom {step_id} got {item!r}", flush=True)


def show_debug(step_id, item, epoch, worker):
    print(f"debug {step_id} {item!r} epoch={epoch} worker={worker}", flush=True)


flow = Dataflow("insp")
words = op.input("inp", flow, TestingSource(["a", "b c", ("t", 1), None, 1.5, b"x", {"k": [1]}]))
op.inspect("plain", words)
op.inspect_debug("dbg", words)
strs = op.map("as_str", words, str)
op.inspect("custom", strs, show)
op.inspect_debug("custom_dbg", strs, show_debug)
loud = shout("shout", strs)
loud.then(op.map, "exclaim", lambda s: s + "!").then(op.output, "out", StdOutSink())

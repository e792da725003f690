"""enrich_cached, key_rm, Stream.then chains and a custom operator's nested step ids."""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.testing import TestingSource

lookups = []


def lookup(code):
    lookups.append(code)
    return {"us": "United States", "fr": "France"}.get(code, "?")


@operator
def label(step_id: str, up: Stream[str]) -> Stream[str]:
    named = op.enrich_cached("name", up, lookup, lambda cache, code: (code, cache.get(code)))
    op.inspect("named", named)
    keyed = op.key_on("key", named, lambda cn: cn[0])
    return op.key_rm("unkey", op.map_value("only_name", keyed, lambda cn: cn[1]))


flow = Dataflow("enrich")
codes = op.input("inp", flow, TestingSource(["us", "fr", "us", "xx", "fr"]))
(
    label("label", codes)
    .then(op.map, "shout", str.upper)
    .then(op.inspect, "shouted")
    .then(op.map, "with_lookups", lambda name: (name, len(lookups)))
    .then(op.output, "out", StdOutSink())
)

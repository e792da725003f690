"""Build-time errors: stream scoping, step ids, non-`Stream` arguments.

Each case prints the exception type and which of Bytewax's key phrases its
message has, so code matching on them works with both.
"""

from typing import List

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.testing import TestingSource

PHRASES = [
    "inconsistent stream scoping",
    "must be a `str`",
    "can't contain any periods",
    "must be a `Stream`",
]


def attempt(label, build):
    try:
        build()
    except Exception as ex:
        found = [phrase for phrase in PHRASES if phrase in str(ex)]
        print(f"{label}: {type(ex).__name__} {found}")
    else:
        print(f"{label}: built")


@operator
def merge_with_list(step_id: str, up: Stream, others: List[Stream]) -> Stream:
    return op.merge("m", up, *others)


@operator
def merge_all(step_id: str, *ups: Stream) -> Stream:
    return op.merge("m", *ups)


def inputs(flow, count):
    return [op.input(f"in{i}", flow, TestingSource([i])) for i in range(count)]


def list_of_streams():
    flow = Dataflow("df")
    a, b, c = inputs(flow, 3)
    merge_with_list("all", a, [b, c])


def captured_stream():
    flow = Dataflow("df")
    a, b = inputs(flow, 2)

    @operator
    def with_b(step_id: str, up: Stream) -> Stream:
        return op.merge("m", up, b)

    with_b("w", a)


def two_dataflows():
    (a,) = inputs(Dataflow("df"), 1)
    (b,) = inputs(Dataflow("other"), 1)
    op.merge("m", a, b)


def step_id_not_str():
    (a,) = inputs(Dataflow("df"), 1)
    op.map(1, a, str)


def step_id_with_period():
    (a,) = inputs(Dataflow("df"), 1)
    op.map("a.b", a, str)


def up_not_a_stream():
    inputs(Dataflow("df"), 1)
    op.map("m", 42, str)


def up_is_a_list():
    (a,) = inputs(Dataflow("df"), 1)
    op.map("m", [a], str)


def merge_of_a_non_stream():
    (a,) = inputs(Dataflow("df"), 1)
    op.merge("m", a, 42)


for case in [
    list_of_streams,
    captured_stream,
    two_dataflows,
    step_id_not_str,
    step_id_with_period,
    up_not_a_stream,
    up_is_a_list,
    merge_of_a_non_stream,
]:
    attempt(case.__name__, case)

flow = Dataflow("scoping")
op.output("out", merge_all("all", *inputs(flow, 3)), StdOutSink())

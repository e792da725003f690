"""``SimplePollingSource[int]``: the state type may be left out (it defaults to ``None``).

As in Bytewax's ``examples/batch_operator.py``.
"""

from datetime import timedelta

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.inputs import SimplePollingSource


class CounterSource(SimplePollingSource[int]):
    """Counts to 5, then ends; keeps no resume state."""

    def __init__(self):
        super().__init__(interval=timedelta(microseconds=1))
        self.count = 0

    def next_item(self):
        self.count += 1
        if self.count > 5:
            raise StopIteration()
        return self.count


flow = Dataflow("counter")
counts = op.input("inp", flow, CounterSource())
op.output("out", op.map("label", counts, lambda n: f"count {n}"), StdOutSink())
print(f"snapshot of a fresh source: {CounterSource().snapshot()}")

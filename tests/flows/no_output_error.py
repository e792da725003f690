"""A flow without an output step: every way to run it raises a RuntimeError.

Its cause is the ValueError that says what is missing; code catches
``RuntimeError`` around a run (Bytewax's own tests do). The file's ``flow``
itself is fine, so ``python -m bytewax.run`` prints what was caught and exits 0.
"""

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.run import cli_main
from bytewax.testing import TestingSource, run_main

for missing in ("output", "input"):
    broken = Dataflow(f"no_{missing}")
    if missing == "output":
        op.map("m", op.input("inp", broken, TestingSource([1])), str)
    for run in (run_main, cli_main):
        try:
            run(broken)
        except RuntimeError as ex:
            cause = ex.__cause__
            print(f"{missing}: {run.__name__}: {isinstance(ex, BytewaxRuntimeError)} "
                  f"{type(cause).__name__}: {'at least one ' + missing in str(cause)}")

flow = Dataflow("fine")
op.output("out", op.input("inp", flow, TestingSource(["ran"])), StdOutSink())

"""Errors that users' code and tests match on read word for word as Bytewax's.

Each case builds something wrong and prints the error's type and message.
(Where the messages are not the same, e.g. the valid join modes listed after
``unknown join insert mode 'x'``, Bytewax's words come first.)
"""

from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import bytewax.operators.windowing as win
from bytewax.connectors.files import DirSource, FileSource
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource


def show(case, make):
    try:
        make()
    except Exception as ex:  # noqa: BLE001 - every error is shown
        print(f"{case}: {type(ex).__name__}: {ex}")
    else:
        print(f"{case}: no error")


tmp = Path(".")  # the run's own directory
(tmp / "file").write_text("x\n")


def first_step(flow_id):
    flow = Dataflow(flow_id)
    op.input("inp", flow, TestingSource([]))


def twice():
    flow = Dataflow("df")
    op.input("inp", flow, TestingSource([]))
    op.input("inp", flow, TestingSource([]))


show("dir missing", lambda: DirSource(tmp / "nope").list_parts())
show("dir is a file", lambda: DirSource(tmp / "file").list_parts())
show("dir fs id", lambda: DirSource(tmp, get_fs_id=lambda _d: "a::b").list_parts())
show("file fs id", lambda: FileSource(tmp / "file", get_fs_id=lambda _p: "a::b").list_parts())
show("flow id period", lambda: first_step("a.b"))
show("step twice", twice)
show("sliding offset", lambda: win.SlidingWindower(timedelta(1), timedelta(2), win.UTC_MIN))
show("session gap", lambda: win.SessionWindower(timedelta(-1)))

flow = Dataflow("error_messages")
op.output("out", op.input("inp", flow, TestingSource(["done"])), StdOutSink())

"""Fixtures shared by the test suite.

Keep this small; add new fixtures at the end of the file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, List

import pytest

import fastflow.operators as op
from fastflow.dataflow import Dataflow, Stream
from fastflow.testing import TestingSink, TestingSource, run_main

Build = Callable[[Stream[Any]], Stream[Any]]


@pytest.fixture
def run_items() -> Callable[..., List[Any]]:
    """Return ``run(items, build, batch_size=1)``: what ``build(stream)`` emits for ``items``.

    The flow is ``Dataflow("df")`` with an input step ``inp``, so the steps
    ``build`` adds get ids ``df.<step>``.
    """

    def run(items: Iterable[Any], build: Build, batch_size: int = 1) -> List[Any]:
        out: List[Any] = []
        flow = Dataflow("df")
        stream = op.input("inp", flow, TestingSource(items, batch_size))
        op.output("out", build(stream), TestingSink(out))
        run_main(flow)
        return out

    return run


@pytest.fixture(scope="session")
def fastflow_command() -> List[str]:
    """The installed ``fastflow`` console command (``python -m fastflow`` if not found)."""
    exe = shutil.which("fastflow", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "fastflow"]


# tests/flows/ holds Bytewax flow files run by test_bytewax_parity.py in
# subprocesses; they import `bytewax`, so pytest must not import them.
collect_ignore = ["flows"]

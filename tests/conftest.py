"""Fixtures shared by the test suite.

Keep this small; add new fixtures at the end of the file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, List

import pytest
from _entry_points import ENTRY_POINTS, EntryPoint, FileSink, collected

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


@pytest.fixture(params=sorted(ENTRY_POINTS))
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    """Run a flow to the end with one worker, with two workers, and with ``-p 2`` (one each)."""
    return ENTRY_POINTS[request.param]


@pytest.fixture
def run_items_on(entry_point: EntryPoint, tmp_path: Path) -> Callable[..., List[Any]]:
    """``run_items`` under every ``entry_point``; the output of worker 0, then of worker 1.

    Use it where the output does not depend on the worker count, or sort it: keyed steps
    spread keys over the workers, so the order across keys changes.
    """

    def run(items: Iterable[Any], build: Build, batch_size: int = 1) -> List[Any]:
        out_dir = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        flow = Dataflow("df")
        stream = op.input("inp", flow, TestingSource(items, batch_size))
        op.output("out", build(stream), FileSink(out_dir))
        entry_point(flow)
        return collected(out_dir)

    return run

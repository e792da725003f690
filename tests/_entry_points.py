"""Running a test flow three ways: one worker, two workers in one process, two processes.

Why a sink that writes files: with ``-p 2`` the flow runs in forked processes, so a
``TestingSink`` list would fill in the children and stay empty here. ``FileSink`` pickles each
batch to one file per worker; ``collected`` reads them back, worker 0's items first.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from fastflow.dataflow import Dataflow
from fastflow.outputs import DynamicSink, StatelessSinkPartition
from fastflow.run import cli_main
from fastflow.testing import cluster_main, run_main

EntryPoint = Callable[[Dataflow], None]

ENTRY_POINTS: dict[str, EntryPoint] = {
    "one_worker": run_main,
    "two_workers": lambda flow: cluster_main(flow, [], 0, worker_count_per_proc=2),
    "two_processes": lambda flow: cli_main(flow, processes=2),
}
"""By test id: how ``fastflow run``, ``-w 2`` and ``-p 2`` run a flow, from Python."""


class FileSink(DynamicSink[Any]):
    """Pickles every batch a worker writes to ``directory/<worker index>.pickle``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FilePartition:
        return _FilePartition(self.directory / f"{worker_index}.pickle")


class _FilePartition(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()

    def write_batch(self, items: list[Any]) -> None:
        pickle.dump(items, self._file)
        self._file.flush()  # a forked process leaves without running finalizers

    def close(self) -> None:
        self._file.close()


def collected(directory: Path) -> list[Any]:
    """Every item a ``FileSink`` got, worker by worker, each worker's in the order written."""
    items: list[Any] = []
    for path in sorted(directory.glob("*.pickle"), key=lambda p: int(p.stem)):
        with open(path, "rb") as file:
            while True:
                try:
                    items.extend(pickle.load(file))
                except EOFError:
                    break
    return items

"""``fastflow dashboard DB_DIR``: the dashboard page for a store at rest.

Why: an operator looking at a stopped (or crashed) flow wants what `fastflow recovery
status` says -- executions, epochs, partitions, sizes, live keys per step -- on the same
page a running flow shows. The page polls ``/status``; this module answers it in the
contract's shape (``state: "at_rest"``) from ``_store_tools/status.read_status``, which only
reads the store (safe while a flow runs on it) and never decodes a state.

Why cached: reading the status merges every change set of the store, and the page asks
twice a second. The answer is kept until a partition file (or its write-ahead log) changes.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from fastflow._observe.api import ApiSources

VERSION = 1

Signature = tuple[tuple[str, int, int], ...]
"""Name, modification time and size of every file of the store directory."""


class AtRestStatus:
    """``/status`` of the store in one directory, read again when its files change."""

    def __init__(self, db_dir: Path) -> None:
        self._db_dir = db_dir
        self._lock = threading.Lock()
        self._seen: tuple[Signature | None, dict[str, Any]] | None = None

    def _signature(self) -> Signature | None:
        """None if the directory cannot be listed (reading the store will say why)."""
        found = []
        try:
            for entry in os.scandir(self._db_dir):
                if entry.name.startswith("part-"):
                    stat = entry.stat()
                    found.append((entry.name, stat.st_mtime_ns, stat.st_size))
        except OSError:
            return None
        return tuple(sorted(found))

    def status(self) -> dict[str, Any]:
        """The JSON document, now (``RecoveryError`` if the store cannot be read)."""
        with self._lock:
            signature = self._signature()
            if signature is None or self._seen is None or self._seen[0] != signature:
                self._seen = (signature, _document(self._db_dir))
            return {**self._seen[1], "now": time.time()}


def _document(db_dir: Path) -> dict[str, Any]:
    """The contract's ``/status`` for a store at rest."""
    from fastflow._store_tools.status import read_status

    store = read_status(db_dir).as_dict()
    executions = store["executions"]
    resume = store["resume_epoch"]
    return {
        "version": VERSION,
        "flow_id": None,  # a store does not record which flow wrote it
        "state": "at_rest",
        "error": store["problem"],
        "started_at": None,
        "now": time.time(),
        "epoch": {
            "current": None,
            "committed": resume - 1 if executions and resume > 1 else None,
            "resume": resume,
            "interval_seconds": None,
        },
        "commits": [],
        "steps": [],
        "processes": [],
        "sources": [],
        "sinks": [],
        "store": {
            "directory": store["db_dir"],
            "partitions": len(store["partitions"]),
            "bytes": sum(p["size_bytes"] for p in store["partitions"]),
            "live_keys": {s["step_id"]: s["live_keys"] for s in store["steps"]},
        },
        "executions": executions,
        "partitions": store["partitions"],
        "frontiers": store["frontiers"],
    }


def _no_flow() -> dict[str, Any]:
    """``/dataflow`` at rest: a store holds state, not the flow's graph."""
    return {"typ": "RenderedDataflow", "flow_id": None, "substeps": []}


def _no_metrics() -> bytes:
    return b""


def sources(db_dir: Path) -> ApiSources:
    """What the API serves for the store in ``db_dir`` (its ``/status`` is read on each call)."""
    return ApiSources(AtRestStatus(db_dir).status, _no_flow, _no_metrics)

"""``/status``: the run as JSON for programs and the dashboard (version 1).

The shape is fixed by the contract with the dashboard (docs/observability.md): every
key is always there, unknown values are null. Rates are over the last few seconds:
each request keeps the totals it saw, and the rate is the change since the oldest
totals kept that are at most ``RATE_WINDOW`` seconds old (or the newest older ones).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from fastflow._observe.metrics import store_bytes
from fastflow._observe.observer import Observer
from fastflow._observe.samples import ProcessSample

VERSION = 1
RATE_WINDOW = 5.0

Totals = dict[str, tuple[int, int]]  # step id (or "process:N") -> items in, items out


class StatusView:
    """Builds ``/status`` from an observer, remembering recent totals for the rates."""

    def __init__(self, observer: Observer) -> None:
        self._observer = observer
        self._seen: deque[tuple[float, Totals]] = deque()
        self._lock = threading.Lock()

    def _rates(self, now: float, totals: Totals) -> dict[str, tuple[float | None, float | None]]:
        with self._lock:
            while len(self._seen) > 1 and now - self._seen[1][0] >= RATE_WINDOW:
                self._seen.popleft()
            base = self._seen[0] if self._seen else None
            self._seen.append((now, totals))
        if base is None or now - base[0] <= 0:
            return {}
        then, old = base
        return {
            key: ((inp - old.get(key, (0, 0))[0]) / (now - then),
                  (out - old.get(key, (0, 0))[1]) / (now - then))
            for key, (inp, out) in totals.items()
        }

    def status(self) -> dict[str, Any]:
        """The JSON document, now."""
        observer, info = self._observer, self._observer.info
        samples = observer.samples()
        now = time.time()
        steps = _steps(info.kinds, samples)
        totals: Totals = {s["step_id"]: (s["items_in"], s["items_out"]) for s in steps}
        for sample in samples:
            polled = sum(step.items_out for step in sample.steps
                         if info.kinds.get(step.step_id) == "input")
            totals[f"process:{sample.process}"] = (polled, 0)
        rates = self._rates(now, totals)
        for step in steps:
            step["in_per_second"], step["out_per_second"] = rates.get(
                step["step_id"], (None, None))
        commits = observer.commit_list()
        return {
            "version": VERSION,
            "flow_id": info.flow_id,
            "state": observer.state,
            "error": observer.error,
            "started_at": observer.started_at,
            "now": now,
            "epoch": {
                "current": observer.current_epoch,
                "committed": observer.committed_epoch,
                "resume": observer.resume_epoch,
                "interval_seconds": info.interval_seconds,
            },
            "commits": [
                {"epoch": c.epoch, "at": c.at, "encode_seconds": c.encode_seconds,
                 "write_seconds": c.write_seconds,
                 "duration_seconds": c.write_seconds + (c.encode_seconds or 0.0),
                 "bytes": c.bytes, "keys": c.keys}
                for c in commits
            ],
            "steps": steps,
            "processes": _processes(observer, samples, rates),
            "sources": [
                {"step_id": lag.step_id, "partition": lag.partition, "position": None,
                 "lag": lag.lag}
                for sample in samples for lag in sample.lags
            ],
            "sinks": [{"step_id": s["step_id"], "items": s["items_in"]}
                      for s in steps if s["kind"] == "output"],
            "store": None if info.store is None else {
                "directory": str(info.store),
                "partitions": _partition_count(info.store),
                "bytes": store_bytes(info.store),
                "live_keys": {s["step_id"]: s["live_keys"] for s in steps
                              if s["live_keys"] is not None},
            },
        }


def _steps(kinds: dict[str, str], samples: list[ProcessSample]) -> list[dict[str, Any]]:
    """One entry per core step, in plan order, summed over workers and processes."""
    items_in = dict.fromkeys(kinds, 0)
    items_out = dict.fromkeys(kinds, 0)
    busy = dict.fromkeys(kinds, 0.0)
    live: dict[str, int] = {}
    for sample in samples:
        for step in sample.steps:
            if step.step_id not in kinds:
                continue
            items_in[step.step_id] += step.items_in
            items_out[step.step_id] += step.items_out
            busy[step.step_id] += step.durations[1]
            if step.live_keys is not None:
                live[step.step_id] = live.get(step.step_id, 0) + step.live_keys
    return [
        {"step_id": step_id, "kind": kind, "items_in": items_in[step_id],
         "items_out": items_out[step_id], "in_per_second": None, "out_per_second": None,
         "busy_seconds": busy[step_id], "live_keys": live.get(step_id)}
        for step_id, kind in kinds.items()
    ]


def _processes(
    observer: Observer, samples: list[ProcessSample],
    rates: dict[str, tuple[float | None, float | None]],
) -> list[dict[str, Any]]:
    by_process = {sample.process: sample for sample in samples}
    per = observer.info.workers_per_process
    running = observer.state == "running"
    return [
        {"process": p, "workers": list(range(p * per, (p + 1) * per)),
         "alive": running and p in by_process,
         "items_per_second": rates.get(f"process:{p}", (None, None))[0],
         "restarts": observer.restarts,
         "error": None if running or observer.error is None else observer.error}
        for p in range(observer.info.processes)
    ]


def _partition_count(directory: Any) -> int | None:
    try:
        return sum(1 for path in directory.glob("part-*.sqlite3"))
    except OSError:
        return None

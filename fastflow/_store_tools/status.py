"""``fastflow recovery status``: what a store holds and what a resume now would do.

Why apart from the store: the engine never needs this report. It reads the store through
a read-only ``RecoveryStore.inspect`` (safe while a flow runs) and counts live keys by
merging change sets with plain orjson: states are never decoded, so a pickled state in a
store from elsewhere is never unpickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fastflow._store.changesets import merge_change_set
from fastflow._store.store import Execution, RecoveryStore
from fastflow._store_tools.kafka_offsets import KafkaOffset, OffsetCollector


@dataclass(frozen=True)
class PartitionStatus:
    """One partition file: its size, GC horizon and what a resume would read from it."""

    index: int
    path: Path
    size_bytes: int
    """Bytes on disk, the database plus its write-ahead log if any."""
    gc_horizon: int
    """Resumes at or before this epoch are impossible: their state was collected."""
    base_epoch: int | None
    """Epoch of the base a resume now would start from (None: no base yet)."""
    deltas: int
    """Delta change sets a resume now would apply after the base."""
    live_keys: int
    change_set_bytes: int
    """Bytes of all change sets kept, including those kept for the backup window."""


@dataclass(frozen=True)
class StepStatus:
    """Per-step storage use, to spot the step whose state grows."""

    step_id: str
    live_keys: int
    """Keys a resume now would restore."""
    change_sets: int
    """Change-set blobs kept (bases and deltas, backup window included)."""
    blob_bytes: int


@dataclass(frozen=True)
class StoreStatus:
    """The operator's view of a store: what a resume now would do, and what it costs on disk."""

    db_dir: Path
    init_id: str
    created_at: str
    partitions: tuple[PartitionStatus, ...]
    executions: tuple[Execution, ...]
    frontiers: tuple[int, ...]
    """Frontier of each worker (by index) of the last execution, lowest over partitions."""
    resume_epoch: int
    """Epoch the next execution would start at."""
    steps: tuple[StepStatus, ...]
    problem: str | None = None
    """Why the next run would be refused, if it would."""
    kafka_offsets: tuple[KafkaOffset, ...] = ()
    """Where each Kafka input would continue reading, per topic partition."""

    def as_dict(self) -> dict[str, Any]:
        """Return plain JSON-ready data, for scripts and logs."""
        return {
            "db_dir": str(self.db_dir),
            "init_id": self.init_id,
            "created_at": self.created_at,
            "partitions": [{**vars(p), "path": str(p.path)} for p in self.partitions],
            "executions": [vars(e) for e in self.executions],
            "frontiers": list(self.frontiers),
            "resume_epoch": self.resume_epoch,
            "steps": [vars(s) for s in self.steps],
            "problem": self.problem,
            "kafka_offsets": [vars(o) for o in self.kafka_offsets],
        }


def read_status(db_dir: Path | str) -> StoreStatus:
    """Inspect ``db_dir`` without locking or writing it."""
    with RecoveryStore.inspect(db_dir) as store:
        plan = store.plan()
        steps: dict[str, list[int]] = {}  # step id -> [live keys, change sets, bytes]
        offsets = OffsetCollector()
        partitions = []
        for index, path in enumerate(store.paths):
            live: dict[str, dict[str, None]] = {}  # step id -> its live keys
            base_epoch, deltas = None, 0
            for epoch, kind, step_id, _, blob in store.changes_to_apply(index, plan.epoch):
                if kind == "base":
                    base_epoch = epoch
                else:
                    deltas += 1
                changes = orjson.loads(blob)
                offsets.apply(step_id, changes)
                merge_change_set(live, step_id, dict.fromkeys(changes["set"]), changes["del"])
            for step_id, keys in live.items():
                steps.setdefault(step_id, [0, 0, 0])[0] += len(keys)
            total = 0
            for step_id, count, size in store.stored_change_sets(index):
                stats = steps.setdefault(step_id, [0, 0, 0])
                stats[1] += count
                stats[2] += size
                total += size
            size_bytes, horizon = store.partition_stats(index)
            partitions.append(PartitionStatus(
                index, path, size_bytes, horizon, base_epoch, deltas,
                sum(len(keys) for keys in live.values()), total,
            ))
        return StoreStatus(
            db_dir=store.db_dir,
            init_id=store.init_id,
            created_at=store.created_at,
            partitions=tuple(partitions),
            executions=tuple(store.executions()),
            frontiers=plan.frontiers,
            resume_epoch=plan.epoch,
            steps=tuple(StepStatus(s, *steps[s]) for s in sorted(steps)),
            problem=plan.problem,
            kafka_offsets=tuple(offsets.offsets()),
        )


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def format_status(status: StoreStatus) -> str:
    """Describe partitions, executions, the resume epoch, frontiers and per-step storage."""
    lines = [
        f"recovery directory: {status.db_dir}",
        f"init id: {status.init_id} (created {status.created_at})",
        f"partitions: {len(status.partitions)}",
    ]
    lines += _table(
        ("index", "file", "bytes", "gc horizon", "base epoch", "deltas", "live keys",
         "change set bytes"),
        [(p.index, p.path.name, p.size_bytes, p.gc_horizon,
          "-" if p.base_epoch is None else p.base_epoch, p.deltas, p.live_keys,
          p.change_set_bytes)
         for p in status.partitions],
    )
    lines.append(f"executions: {len(status.executions)}")
    if status.executions:
        lines += _table(
            ("execution", "workers", "resume epoch", "started at"),
            [(e.execution, e.worker_count, e.resume_epoch, e.started_at)
             for e in status.executions],
        )
        frontiers = ", ".join(f"worker {i}: {f}" for i, f in enumerate(status.frontiers))
        lines.append(f"frontiers of the last execution: {frontiers or 'none'}")
    lines.append(f"next run resumes at epoch: {status.resume_epoch}")
    lines.append(f"state per step: {len(status.steps)} step(s)")
    if status.steps:
        lines += _table(
            ("step", "live keys", "change sets", "bytes"),
            [(s.step_id, s.live_keys, s.change_sets, s.blob_bytes) for s in status.steps],
        )
    if status.kafka_offsets:
        lines.append("Kafka offsets (where a resume reads on, per topic partition):")
        lines += _table(
            ("step", "topic", "partition", "next offset"),
            [(o.step_id, o.topic, o.partition, o.next_offset) for o in status.kafka_offsets],
        )
    if status.problem:
        lines.append(f"problem: {status.problem}")
    return "\n".join(lines)

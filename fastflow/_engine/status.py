"""Render a recovery store's status for ``fastflow recovery status``."""

from __future__ import annotations

from typing import List, Sequence

from fastflow._engine.store import StoreStatus


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> List[str]:
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
        f"partitions: {status.part_count}",
    ]
    lines += _table(
        ("index", "file", "bytes", "gc horizon"),
        [(p.index, p.path.name, p.size_bytes, p.gc_horizon) for p in status.partitions],
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
    lines.append(f"snapshots per step: {len(status.steps)} step(s)")
    if status.steps:
        lines += _table(
            ("step", "live keys", "rows", "blob bytes"),
            [(s.step_id, s.live_keys, s.snapshot_rows, s.blob_bytes) for s in status.steps],
        )
    if status.problem:
        lines.append(f"problem: {status.problem}")
    return "\n".join(lines)

"""Reading recovery stores in tests: the state a resume gets, and the raw change sets."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson

from fastflow._runtime.snapshot import read_state


def stored_state(db_dir: Path, step_id: str) -> dict[str, Any]:
    """The state a resume would restore for ``step_id``, decoded, by key."""
    return read_state(db_dir).get(step_id, {})


def change_sets(part: Path, step_id: str | None = None) -> list[tuple[int, str, int, Any]]:
    """``(epoch, kind, key_count, changes as JSON)`` of a partition file, in epoch order."""
    conn = sqlite3.connect(part)
    try:
        rows = conn.execute(
            "SELECT epoch, kind, step_id, key_count, blob FROM changesets"
            " ORDER BY epoch, kind, step_id, writer, chunk"
        ).fetchall()
    finally:
        conn.close()
    return [
        (epoch, kind, count, orjson.loads(blob))
        for epoch, kind, step, count, blob in rows
        if step_id is None or step == step_id
    ]


def change_set_count(db_dir: Path) -> int:
    """Change-set rows in every partition of ``db_dir``."""
    total = 0
    for part in db_dir.glob("part-*.sqlite3"):
        conn = sqlite3.connect(part)
        try:
            total += conn.execute("SELECT count(*) FROM changesets").fetchone()[0]
        finally:
            conn.close()
    return total

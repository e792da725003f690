"""A source partition's optional ``snapshot_committed(state)``: called once the epoch is durable.

The Kafka source uses it to commit offsets to a consumer group; any source can. The
spy partition below reads the store from inside the hook: whatever it is told must
already be what a resume would start from.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, List, Optional, Tuple

from _stores import stored_state

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, run_main

ITEMS = 12


class _Counting(StatefulSourcePartition[int, int]):
    def __init__(self, source: SpySource, done: int) -> None:
        self.source, self.done = source, done

    def next_batch(self) -> List[int]:
        if self.done >= ITEMS:
            raise StopIteration()
        self.done += 3
        return list(range(self.done - 3, self.done))

    def snapshot(self) -> int:
        return self.done

    def snapshot_committed(self, state: int) -> None:
        stored = stored_state(self.source.db_dir, "hook.inp").get("only")
        self.source.told.append((state, stored))


class SpySource(FixedPartitionedSource[int, int]):
    def __init__(self, db_dir: Path) -> None:
        self.db_dir = db_dir
        self.told: List[Tuple[int, Optional[int]]] = []

    def list_parts(self) -> List[str]:
        return ["only"]

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> Any:
        return _Counting(self, resume_state or 0)


def test_snapshot_committed_gets_each_durable_snapshot_in_order(tmp_path: Path) -> None:
    init_db_dir(tmp_path, 1)
    source = SpySource(tmp_path)
    flow = Dataflow("hook")
    out: List[int] = []
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
    assert out == list(range(ITEMS))
    states = [state for state, _stored in source.told]
    assert states == sorted(states) and states[-1] == ITEMS  # every epoch's, the last too
    assert len(states) >= ITEMS // 3
    # Each was durable when the partition heard of it: a resume would start there or later.
    assert all(stored is not None and stored >= state for state, stored in source.told)


def test_snapshot_committed_is_not_called_without_recovery(tmp_path: Path) -> None:
    source = SpySource(tmp_path)
    flow = Dataflow("hook")
    op.output("out", op.input("inp", flow, source), TestingSink([]))
    run_main(flow, epoch_interval=timedelta(0))
    assert source.told == []

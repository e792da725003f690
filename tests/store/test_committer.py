"""The committer (``fastflow._store.committer``): commits in order on its own thread, and
how it reports a failed write."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from _stores import (
    new_store,
    per_part,
    rows,
    sets,
)

from fastflow import errors
from fastflow._runtime.snapshot import load_resume, read_state
from fastflow._store import store as st
from fastflow._store.committer import EpochCommitter
from fastflow._store.store import RecoveryStore

# EpochCommitter.


def test_committer_commits_in_order_on_another_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(2)
        calls: list[tuple[Any, ...]] = []
        real_commit, real_compact = store.commit, store.compact

        def spy_commit(epoch: int, workers: list[int], changes: Any, gc_before: Any) -> None:
            calls.append(("commit", epoch, workers, gc_before, threading.current_thread().name))
            real_commit(epoch, workers, changes, gc_before=gc_before)

        def spy_compact(index: int) -> bool:
            calls.append(("compact", index, threading.current_thread().name))
            return real_compact(index)

        monkeypatch.setattr(store, "commit", spy_commit)
        monkeypatch.setattr(store, "compact", spy_compact)
        committer = EpochCommitter(store, [0, 1], backup_epochs=2)
        try:
            committer.compact()
            for epoch in (1, 2, 3):
                committer.commit(epoch, per_part(2, {epoch % 2: sets("s", {"k": epoch})}),
                                 last=epoch == 3)
            committer.wait()
            committer.wait()  # nothing in flight: returns
        finally:
            committer.close()
        threads = {call[-1] for call in calls}
        assert len(threads) == 1 and threads.pop().startswith("fastflow-commit")
        assert [call[:-1] for call in calls] == [
            ("compact", 0), ("compact", 1),
            ("commit", 1, [0, 1], -2), ("compact", 0), ("compact", 1),
            ("commit", 2, [0, 1], -1), ("compact", 0), ("compact", 1),
            ("commit", 3, [0, 1], 0),  # the last epoch leaves compaction to the next run
        ]
        assert store.plan().frontiers == (4, 4)
        assert load_resume(store, 4) == {"s": {"k": 3}}


def test_committer_raises_a_writer_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db_dir = new_store(tmp_path, 1)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        committer = EpochCommitter(store, [0], backup_epochs=0)
        try:
            committer.commit(1, [sets("s", {"k": 1})], last=False)
            committer.wait()

            def failing(*args: Any, **kwargs: Any) -> None:
                raise errors.StoreWriteError(f"cannot write the recovery store {db_dir}: boom")

            monkeypatch.setattr(store, "commit", failing)
            committer.commit(2, [sets("s", {"k": 2})], last=False)
            with pytest.raises(errors.StoreWriteError, match=f"recovery store {db_dir}: boom"):
                committer.wait()
            committer.commit(3, [sets("s", {"k": 3})], last=False)
            # the next boundary raises a failure too
            with pytest.raises(errors.StoreWriteError, match="boom"):
                committer.commit(4, [sets("s", {"k": 4})], last=True)
        finally:
            committer.close()  # drops the error of the write in flight
    assert read_state(db_dir) == {"s": {"k": 1}}


def test_committer_reports_a_full_disk(tmp_path: Path) -> None:
    db_dir = new_store(tmp_path, 2)
    with RecoveryStore.open(db_dir) as store:
        store.start_execution(1)
        committer = EpochCommitter(store, [0], backup_epochs=1)
        try:
            committer.commit(1, per_part(2, {0: sets("s", {"k0": 1}), 1: sets("s", {"k1": 1})}),
                             last=False)
            committer.wait()
            conn = store._parts[1].conn
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count={pages + 1}")
            big = {f"k{2 * i + 1}": "z" * 2000 for i in range(20)}
            committer.commit(2, per_part(2, {0: sets("s", {"k0": 2}), 1: sets("s", big)}),
                             last=False)
            with pytest.raises(errors.StoreWriteError) as info:
                committer.wait()
        finally:
            committer.close()
        message = str(info.value)
        assert message.startswith(f"cannot write the recovery store {db_dir} (part-1.sqlite3)"
                                  " while committing epoch 2: database or disk is full")
        assert "the store holds its last committed epoch" in message
        assert [r[0] for r in rows(db_dir / "part-1.sqlite3")] == [1]
        assert store.plan().epoch == 2  # partition 0 got epoch 2: a resume drops it
    assert read_state(db_dir) == {"s": {"k0": 1, "k1": 1}}
    with RecoveryStore.open(db_dir) as store:
        assert store.start_execution(1).epoch == 2
        assert [r[0] for r in rows(db_dir / "part-0.sqlite3")] == [1]



def test_resume_is_right_while_the_start_compaction_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    import fastflow.operators as op
    from fastflow._runtime import snapshot
    from fastflow.dataflow import Dataflow
    from fastflow.recovery import RecoveryConfig
    from fastflow.testing import TestingSink, TestingSource, run_main

    def run(out: list[Any]) -> None:
        flow = Dataflow("df")
        items = [("a", 1), ("a", 2), ("a", 3), TestingSource.EOF(), ("a", 4)]
        s = op.input("inp", flow, TestingSource(items))
        s = op.stateful_map("sum", s, lambda acc, v: ((acc or 0) + v, (acc or 0) + v))
        op.output("out", s, TestingSink(out))
        run_main(flow, epoch_interval=timedelta(microseconds=1),
                 recovery_config=RecoveryConfig(db_dir))

    db_dir = new_store(tmp_path, 1)
    monkeypatch.setattr(st, "MAX_DELTAS", 0)  # the last epoch's delta is folded at the start
    first: list[Any] = []
    run(first)
    assert first == [("a", 1), ("a", 3), ("a", 6)]
    # Make the race deterministic: the compaction the run starts in the background lands
    # while load_resume reads (after its first blob). Bounded waits: a fixed engine that
    # loads first, or a store that serializes the two, passes (at most 0.5 s later).
    started, done = threading.Event(), threading.Event()
    real_compact_all, real_decode = EpochCommitter._compact_all, snapshot.decode_changes

    def compact_all(self: EpochCommitter) -> None:
        started.set()
        try:
            real_compact_all(self)
        finally:
            done.set()

    decoded: list[bytes] = []

    def decode(blob: bytes, *how: Any) -> Any:
        decoded.append(blob)
        if len(decoded) == 1 and started.wait(0.5):
            done.wait(2)
        return real_decode(blob, *how)

    monkeypatch.setattr(EpochCommitter, "_compact_all", compact_all)
    monkeypatch.setattr(snapshot, "decode_changes", decode)
    second: list[Any] = []
    run(second)
    assert second == [("a", 10)]

"""The one run path (`_runtime/recording.py`): resume, start, then the committer's thread."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from _stores import new_store, per_part, sets

from fastflow._runtime.recording import RunSettings, Start, open_recording


def _commit_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fastflow-commit")]


def test_without_a_store_the_run_starts_at_epoch_one_recording_nothing() -> None:
    settings = RunSettings([], 2, 3, timedelta(seconds=1))
    with open_recording(settings, lambda begin: begin) as run:
        assert run.started == run.start == Start(1, {}, 0)
        assert not run.start.recording and run.committer is None


def test_the_run_starts_before_the_committers_thread_and_resumes_what_it_committed(
    tmp_path: Path,
) -> None:
    settings = RunSettings([], 1, 2, timedelta(seconds=1), new_store(tmp_path, 2))
    seen: list[tuple[Start, list[str]]] = []

    def start(begin: Start) -> str:
        seen.append((begin, _commit_threads()))  # forking now must copy no thread
        return "the workers"

    with open_recording(settings, start) as run:
        assert run.started == "the workers" and run.start.recording
        assert run.committer is not None and _commit_threads() != []  # compacting
        run.committer.commit(1, per_part(2, {0: sets("s", {"k": 1})}), last=True)
    assert seen == [(Start(1, {}, 2), [])]
    with open_recording(settings, start) as run:  # the commit was durable on leaving
        assert run.start == Start(2, {"s": {"k": 1}}, 2)
    assert seen[1] == (run.start, [])

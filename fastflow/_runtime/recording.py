"""The one run path: a run's settings, and opening its recording to the store.

Why a module of its own: one process, forked processes (``-p N``) and Ray actors start a
run the same way: decode the stored state to resume with, start the execution, start the
workers or processes, then the committer (the only writer of the store) and the start-up
compaction; at the end wait until every epoch is durable. :func:`open_recording` does it
once, for all three, in the order the reasons below demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Generic, TypeVar

from fastflow._runtime.plan import CoreStep
from fastflow._runtime.snapshot import Restore, ResumeState, resume_state
from fastflow._store.committer import EpochCommitter
from fastflow._store.store import RecoveryStore

Started = TypeVar("Started")


@dataclass(frozen=True)
class RunSettings:
    """What a run is asked to do, the same however its processes are started."""

    plan: list[CoreStep]
    """The flattened flow."""
    processes: int
    """Worker processes (or Ray actors); 1 runs the workers in this process."""
    per_process: int
    """Workers in each process."""
    interval: timedelta
    """How long an epoch lasts."""
    db_dir: Path | str | None = None
    """The recovery store's directory; None records nothing."""
    backup_epochs: int = 0
    """Epochs the store keeps restorable behind the last one (its garbage collection)."""
    restore: Restore | None = None
    """Which stored states a resume decodes, and how far it trusts the store."""

    @property
    def worker_count(self) -> int:
        """Workers of the whole run."""
        return self.processes * self.per_process


@dataclass(frozen=True)
class Start:
    """Where the workers start: their first epoch, the state they resume with."""

    epoch: int
    """The first epoch of this run."""
    resume: ResumeState
    """Every step's state at the end of the epoch before ``epoch``."""
    part_count: int
    """The store's recovery partitions an epoch's changes are split into; 0 records none."""

    @property
    def recording(self) -> bool:
        """Whether the workers keep track of what changed, to be committed."""
        return self.part_count > 0


@dataclass(frozen=True)
class Recording(Generic[Started]):
    """A run being recorded: where it started, what was started, who commits its epochs."""

    start: Start
    """The first epoch and the resume state the workers were started with."""
    started: Started
    """The workers, or the group of processes, that ``open_recording`` started."""
    committer: EpochCommitter | None
    """Commits the epochs (None without a store)."""


@contextmanager
def open_recording(
    settings: RunSettings, start: Callable[[Start], Started]
) -> Iterator[Recording[Started]]:
    """Open the store, ``start`` the run from what it holds, and commit until the end.

    The stored state is decoded (``settings.restore``) before the store is written, so a
    state that may not be rebuilt refuses the run with the store untouched. ``start`` runs
    before the committer's thread does (its first job is the start-up compaction): forking
    processes must not copy a thread. On leaving, every epoch committed is durable (or the
    error of the write that failed is raised); after an error the committer only stops.
    """
    if settings.db_dir is None:
        begin = Start(1, {}, 0)
        yield Recording(begin, start(begin), None)
        return
    with RecoveryStore.open(settings.db_dir) as store:
        resume = resume_state(store, store.plan().epoch, settings.restore)
        execution = store.start_execution(worker_count=settings.worker_count)
        committer = EpochCommitter(store, list(range(settings.worker_count)),
                                   settings.backup_epochs)
        try:
            begin = Start(execution.epoch, resume, store.part_count)
            started = start(begin)
            committer.compact()  # what the last run left, while this one starts
            yield Recording(begin, started, committer)
            committer.wait()
        finally:
            committer.close()

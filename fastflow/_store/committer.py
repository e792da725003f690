"""Epoch commits on a background thread, at most one epoch in flight.

Why: writing an epoch's change sets (and compacting them now and then) is disk work the
flow need not wait for. At the epoch boundary the processing thread encodes what changed
(``snapshot.py``), which is the consistent cut; this thread writes it while the flow goes
on with the next epoch. The next boundary waits for it (backpressure: memory holds at most
one epoch's encoded changes), and a failed write surfaces there, or at the end of the run,
as the ``StoreWriteError`` that stopped it. sqlite3 releases the GIL while SQLite works.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from fastflow import _hooks as hooks
from fastflow._store.changesets import ChangeSet
from fastflow._store.store import RecoveryStore

log = logging.getLogger("fastflow.recovery")


class EpochCommitter:
    """Commits closed epochs to ``store`` in order, one at a time, off the calling thread."""

    def __init__(self, store: RecoveryStore, workers: list[int], backup_epochs: int) -> None:
        """Commit for ``workers`` (this process's); GC keeps ``backup_epochs`` restorable."""
        self._store = store
        self._workers = workers
        self._backup_epochs = backup_epochs
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastflow-commit")
        self._in_flight: Future[None] | None = None

    def compact(self) -> None:
        """Fold every partition's deltas that outgrew their base, in the background."""
        self._submit(self._compact_all)

    def commit(self, epoch: int, changes: list[list[ChangeSet]], *, last: bool) -> None:
        """Write ``epoch``'s change sets (``changes[i]`` for partition ``i``) in the background.

        Waits for the previous epoch's write first, raising its error if it failed. After
        an epoch that is not the ``last``, partitions whose deltas outgrew their base are
        compacted in the same background job; the last one leaves that to the next run.
        An epoch that changed nothing (and is not the last) writes nothing, not even the
        frontiers: a resume from the epoch before it finds the same state. It still waits,
        so that on return every epoch before ``epoch`` is durable, whatever it held.
        """
        if not last and not any(changes):
            self.wait()
            return

        def write() -> None:
            gc_before = epoch - 1 - self._backup_epochs
            started = time.perf_counter()
            self._store.commit(epoch, self._workers, changes, gc_before=gc_before)
            seconds = time.perf_counter() - started
            size = sum(len(change.blob) for sets in changes for change in sets)
            keys = sum(change.key_count for sets in changes for change in sets)
            log.debug("epoch %d committed: %d key(s), %d byte(s) in %.6f s",
                      epoch, keys, size, seconds)
            hooks.current().committed(epoch, seconds, size, keys)
            if not last:
                self._compact_all()

        self._submit(write)

    def wait(self) -> None:
        """Wait until everything submitted is durable; raise the error of a failed write."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def close(self) -> None:
        """Wait for the write in flight (its error is dropped: the run already failed)."""
        try:
            self.wait()
        except Exception:  # noqa: S110 - only called while another error propagates
            pass
        finally:
            self._thread.shutdown(wait=True)

    def _submit(self, job: Callable[[], None]) -> None:
        self.wait()
        self._in_flight = self._thread.submit(job)

    def _compact_all(self) -> None:
        for index in range(self._store.part_count):
            if self._store.compact(index):
                log.info("compacted partition %d of %s", index, self._store.db_dir)

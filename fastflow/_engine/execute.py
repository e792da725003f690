"""Running a flow: in this process, or on several (behind ``run_main`` and ``fastflow run``).

Why a module of its own: it is the one place that puts the pieces together: the plan
(``plan.py``), the recovery store and its committer, and either this process's workers
(``worker.py``) or a coordinator of worker processes (``cluster.py``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from datetime import timedelta

from fastflow._engine.cluster import run_processes
from fastflow._engine.committer import EpochCommitter
from fastflow._engine.plan import CoreStep, flatten
from fastflow._engine.snapshot import Recorded, encode_epoch, load_resume
from fastflow._engine.store import RecoveryStore
from fastflow._engine.worker import LocalPacer, Workers
from fastflow.dataflow import Dataflow
from fastflow.recovery import RecoveryConfig

DEFAULT_EPOCH_INTERVAL = timedelta(seconds=10)


@dataclass(frozen=True)
class RayOptions:
    """Run the processes as Ray actors (``fastflow run --ray``; see ``ray_cluster.py``)."""

    address: str | None = None
    """The cluster (``auto``, ``ray://host:port``); None starts a local Ray instance."""
    max_restarts: int = 3
    """Times the run restarts from the last committed epoch when an actor dies."""
    placement: str = "spread"
    """Placement group strategy for the actors: ``spread`` or ``pack``."""


def run_flow(
    flow: Dataflow,
    *,
    epoch_interval: timedelta | None = None,
    recovery_config: RecoveryConfig | None = None,
    worker_count: int = 1,
    processes: int = 1,
    ray: RayOptions | None = None,
) -> None:
    """Run ``flow``: ``processes`` processes (or Ray actors) of ``worker_count`` workers each."""
    interval = DEFAULT_EPOCH_INTERVAL if epoch_interval is None else epoch_interval
    if interval < timedelta(0):
        raise ValueError(f"epoch_interval must not be negative; got {interval}")
    for name, value in (("worker_count", worker_count), ("processes", processes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1; got {value!r}")
    plan = flatten(flow)
    if ray is not None:
        _run_on_ray(plan, processes, worker_count, interval, recovery_config, ray)
        return
    if recovery_config is None:
        if processes > 1:
            run_processes(plan, processes, worker_count, interval, None, 0)
        else:
            Workers(plan, worker_count, 1, {}, recording=False).run(LocalPacer(interval, None))
        return
    backup_epochs = _backup_epochs(recovery_config, interval)
    with RecoveryStore.open(recovery_config.db_dir) as store:
        if processes > 1:
            run_processes(plan, processes, worker_count, interval, store, backup_epochs)
            return
        start = store.start_execution(worker_count=worker_count)
        resume = load_resume(store, start.epoch)
        committer = EpochCommitter(store, list(range(worker_count)), backup_epochs)
        try:
            committer.compact()  # what the last run left, while this one starts
            workers = Workers(plan, worker_count, start.epoch, resume, recording=True)

            in_flight = False

            def commit(epoch: int, recorded: list[tuple[int, Recorded]], last: bool) -> None:
                nonlocal in_flight
                committer.commit(epoch, encode_epoch(recorded, store.part_count), last=last)
                if in_flight:  # commit() waited for the epoch before this one: it is durable
                    workers.confirm_epoch()
                in_flight = True
                if last:  # while the sources are still open
                    committer.wait()
                    workers.confirm_epoch()

            workers.run(LocalPacer(interval, commit))
            committer.wait()
        finally:
            committer.close()


def _backup_epochs(recovery_config: RecoveryConfig, interval: timedelta) -> int:
    """The backup window in epochs; with a zero interval every round is an epoch of 1 µs."""
    backup = recovery_config.backup_interval or timedelta(0)
    return math.ceil(backup / max(interval, timedelta(microseconds=1)))


def _run_on_ray(
    plan: list[CoreStep],
    processes: int,
    worker_count: int,
    interval: timedelta,
    recovery_config: RecoveryConfig | None,
    options: RayOptions,
) -> None:
    from fastflow._engine.ray_cluster import run_on_ray

    open_store = None
    backup_epochs = 0
    if recovery_config is not None:
        db_dir = recovery_config.db_dir
        RecoveryStore.open(db_dir).close()  # refuse a bad store before starting Ray

        def open_store() -> RecoveryStore:
            return RecoveryStore.open(db_dir)

        backup_epochs = _backup_epochs(recovery_config, interval)

    def log(message: str) -> None:
        print(f"fastflow: {message}", file=sys.stderr, flush=True)

    run_on_ray(plan, processes, worker_count, interval, open_store, backup_epochs,
               address=options.address, max_restarts=options.max_restarts,
               placement=options.placement, log=log)

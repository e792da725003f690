"""Running a flow: in this process, or on several (behind ``run_main`` and ``fastflow run``).

Why a module of its own: it is the one place that puts the pieces together: the plan
(``plan.py``), the recovery store and its committer, and either this process's workers
(``worker.py``) or a coordinator of worker processes (``distributed/``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

from fastflow import _hooks as hooks
from fastflow._runtime.distributed.process_limit import check_process_count
from fastflow._runtime.distributed.processes import run_processes
from fastflow._runtime.plan import CoreStep, flatten
from fastflow._runtime.recording import RunSettings, Start, open_recording
from fastflow._runtime.snapshot import Recorded, Restore, encode_epoch
from fastflow._runtime.worker import Commit, LocalPacer, Workers
from fastflow._store.committer import EpochCommitter
from fastflow._store.config import RecoveryConfig
from fastflow._store.store import RecoveryStore
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError

DEFAULT_EPOCH_INTERVAL = timedelta(seconds=10)


@dataclass(frozen=True)
class RayOptions:
    """Run the processes as Ray actors (``fastflow run --ray``; ``distributed/ray_actors.py``)."""

    address: str | None = None
    """The cluster (``auto``, ``ray://host:port``); None starts a local Ray instance."""
    max_restarts: int = 3
    """Times the run restarts from the last committed epoch when an actor dies."""
    placement: str = "spread"
    """Placement group strategy for the actors: ``spread`` or ``pack``."""
    timeout: float = 30.0
    """Seconds to wait for the Ray cluster to answer before giving up."""


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
    if ray is None:
        check_process_count(processes)  # before the store is touched or a process forked
    try:
        plan = flatten(flow)
    except ValueError as ex:  # Bytewax's type and wording, so `except RuntimeError` catches it
        raise FastflowRuntimeError("error building production dataflow") from ex
    settings = _settings(plan, processes, worker_count, interval, recovery_config)
    if ray is not None:
        _run_on_ray(settings, ray)
    elif processes > 1:
        run_processes(settings)
    else:
        _run_here(settings)


def _settings(
    plan: list[CoreStep],
    processes: int,
    worker_count: int,
    interval: timedelta,
    recovery_config: RecoveryConfig | None,
) -> RunSettings:
    """The run's settings; what the recovery config asks for, if there is one."""
    if recovery_config is None:
        return RunSettings(plan, processes, worker_count, interval)
    return RunSettings(plan, processes, worker_count, interval, recovery_config.db_dir,
                       _backup_epochs(recovery_config, interval),
                       _restore(plan, recovery_config))


def _run_here(settings: RunSettings) -> None:
    """Run every worker in this process, its epochs closed by the clock."""

    def start(begin: Start) -> Workers:
        workers = Workers(settings.plan, settings.worker_count, begin.epoch, begin.resume,
                          recording=begin.recording)
        hooks.current().workers_built(workers)
        return workers

    with open_recording(settings, start) as run:
        commit = None
        if run.committer is not None:
            commit = _committing(run.committer, run.start.part_count, run.started)
        run.started.run(LocalPacer(settings.interval, commit))


def _committing(committer: EpochCommitter, part_count: int, workers: Workers) -> Commit:
    """Encode an epoch's changes on the processing thread (the cut), commit them off it.

    Once an epoch is durable the sources hear of it (``Workers.confirm_epoch``): a commit
    waits for the epoch before it, and the last one is waited for while they are open.
    """
    in_flight = False

    def commit(epoch: int, recorded: list[tuple[int, Recorded]], last: bool) -> None:
        nonlocal in_flight
        started = time.perf_counter()
        changes = encode_epoch(recorded, part_count)
        hooks.current().encoded(epoch, time.perf_counter() - started)
        committer.commit(epoch, changes, last=last)
        if in_flight:  # commit() waited for the epoch before this one: it is durable
            workers.confirm_epoch()
        in_flight = True
        if last:  # while the sources are still open
            committer.wait()
            workers.confirm_epoch()

    return commit


def _restore(plan: list[CoreStep], recovery_config: RecoveryConfig) -> Restore:
    """Decode only the flow's own steps' states, as far as the config trusts the store."""
    return Restore(frozenset(step.step_id for step in plan), recovery_config.trust_store_pickles)


def check_one_process(addresses: list[str], proc_id: int) -> None:
    """Refuse a Bytewax-style cluster of several processes (``cluster_main``'s arguments).

    Only a one-process cluster is supported: ``addresses`` of at most one entry, ``proc_id`` 0.
    """
    if len(addresses) > 1:
        raise NotImplementedError(
            f"cluster_main runs one process; got {len(addresses)} addresses. For several "
            "processes use fastflow.run.cli_main(flow, processes=N) (`fastflow run -p N`), "
            "and for several machines `fastflow run --ray` (docs/distributed.md)"
        )
    if proc_id != 0:
        raise ValueError(f"proc_id must be 0 in a one-process cluster; got {proc_id}")


def _backup_epochs(recovery_config: RecoveryConfig, interval: timedelta) -> int:
    """The backup window in epochs; with a zero interval every round is an epoch of 1 µs."""
    backup = recovery_config.backup_interval or timedelta(0)
    return math.ceil(backup / max(interval, timedelta(microseconds=1)))


def _run_on_ray(settings: RunSettings, options: RayOptions) -> None:
    from fastflow._runtime.distributed.ray_actors import run_on_ray

    if settings.db_dir is not None:
        RecoveryStore.open(settings.db_dir).close()  # refuse a bad store before starting Ray

    def log(message: str) -> None:
        print(f"fastflow: {message}", file=sys.stderr, flush=True)

    run_on_ray(settings, address=options.address, max_restarts=options.max_restarts,
               placement=options.placement, timeout=options.timeout, log=log)

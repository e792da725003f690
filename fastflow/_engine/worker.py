"""The worker: runs a flattened plan in one loop, epoch by epoch.

The loop polls every source partition that is awake, pushes what it returns
through the fused chain of nodes, fires due notifications, and closes the
epoch when its interval has passed. With recovery on, closing an epoch
commits the state every step changed in it (and every source and sink
partition's resume state) in one transaction per partition. When all inputs
have ended, the last epoch is closed the same way and the run is over.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from fastflow._cext import codec
from fastflow._engine.io import InputNode, OutputNode
from fastflow._engine.nodes import (
    BranchNode,
    Clock,
    End,
    FlatMapBatchNode,
    InspectDebugNode,
    Node,
    PassNode,
    Push,
    StatefulNode,
)
from fastflow._engine.plan import CoreStep, flatten
from fastflow._engine.store import RecoveryStore
from fastflow.dataflow import Dataflow
from fastflow.inputs import AbortExecution
from fastflow.recovery import RecoveryConfig

DEFAULT_EPOCH_INTERVAL = timedelta(seconds=10)
_SMALLEST_EPOCH = timedelta(microseconds=1)

# How long to wait before polling again a partition that returned nothing
# without saying when to come back: long enough not to spin a core.
_IDLE_POLL_SECONDS = 0.001


def _nothing(_batch: Optional[List[Any]] = None) -> None:
    pass


def _fan_out(targets: List[Tuple[Node, int]]) -> Tuple[Push, End]:
    """One stream's emit (into each consumer's inbox for it) and end."""
    if not targets:
        return _nothing, _nothing
    inboxes = [node.inboxes[port] for node, port in targets]
    ends = [node.upstream_ended for node, _port in targets]
    if len(targets) == 1:
        return inboxes[0].append, ends[0]

    def emit(batch: List[Any]) -> None:
        for inbox in inboxes:
            inbox.append(batch)

    def end() -> None:
        for ended in ends:
            ended()

    return emit, end


Snapshotter = Union[InputNode, OutputNode, StatefulNode]
Commit = Callable[[int, List[Any]], None]


class Worker:
    """Builds the nodes of a plan and runs them until every input has ended."""

    def __init__(
        self,
        plan: List[CoreStep],
        clock: Clock,
        epoch_interval: timedelta,
        resume: Dict[str, Dict[str, bytes]],
        recording: bool,
    ) -> None:
        self.clock = clock
        self._interval = epoch_interval.total_seconds()
        self.inputs: List[InputNode] = []
        self.outputs: List[OutputNode] = []
        self.stateful: List[StatefulNode] = []
        self.nodes: List[Node] = []
        consumers: Dict[str, List[Tuple[Node, int]]] = {}
        # Build downstream first, so every node is handed its consumers' inboxes.
        for step in reversed(plan):
            ports = {
                port: _fan_out(consumers.get(stream, [])) for port, stream in step.downs.items()
            }
            node = self._build(step, ports, resume.get(step.step_id, {}), recording)
            if node is not None:
                self.nodes.append(node)
                for port, stream_id in enumerate(step.ups):
                    consumers.setdefault(stream_id, []).insert(0, (node, port))
        for nodes in (self.nodes, self.inputs, self.outputs, self.stateful):
            nodes.reverse()  # back into plan order
        self._snapshotters: List[Snapshotter] = [*self.inputs, *self.stateful, *self.outputs]

    def _build(
        self,
        step: CoreStep,
        ports: Dict[str, Tuple[Push, End]],
        resume: Dict[str, bytes],
        recording: bool,
    ) -> Optional[Node]:
        kind, args, step_id = step.kind, step.args, step.step_id
        down, end = ports.get("down", (_nothing, _nothing))
        if kind == "input":
            decoded = {key: codec.decode(blob) for key, blob in resume.items()}
            self.inputs.append(InputNode(step_id, args["source"], self.clock, decoded, down, end))
            return None
        if kind == "output":
            decoded = {key: codec.decode(blob) for key, blob in resume.items()}
            node: Node = OutputNode(step_id, args["sink"], self.clock, decoded, _nothing)
            self.outputs.append(node)  # type: ignore[arg-type]
            return node
        if kind == "flat_map_batch":
            return FlatMapBatchNode(step_id, args["mapper"], down, end)
        if kind == "branch":
            (trues, end_t), (falses, end_f) = ports["trues"], ports["falses"]

            def end_both() -> None:
                end_t()
                end_f()

            return BranchNode(step_id, args["predicate"], (trues, falses), end_both)
        if kind in ("merge", "redistribute"):
            return PassNode(step_id, len(step.ups), down, end)
        if kind == "inspect_debug":
            return InspectDebugNode(step_id, args["inspector"], self.clock, down, end)
        if kind == "stateful_batch":
            stateful = StatefulNode(step_id, args["builder"], down, end, recording)
            stateful.restore(resume)
            self.stateful.append(stateful)
            return stateful
        raise AssertionError(f"unknown core step kind {kind!r}")

    def run(self, commit: Optional[Commit]) -> None:
        """Run until all inputs end (or one aborts); ``commit`` stores each closed epoch."""
        interval = self._interval
        deadline = time.monotonic() + interval
        live = [node for node in self.inputs if node.live]
        nodes = self.nodes
        timed = [node for node in self.stateful if node.notifies]
        try:
            while True:
                worked = False
                for node in live:
                    worked |= node.poll(None)
                live = [node for node in live if node.live]
                if timed:
                    self._notify(timed)
                for step in nodes:
                    step.run()
                if not live:
                    break
                if time.monotonic() >= deadline:
                    self._close_epoch(commit)
                    deadline = time.monotonic() + interval
                if not worked:
                    self._sleep(live, timed, deadline)
            self._close_epoch(commit)
        except AbortExecution:
            return
        finally:
            for closable in (*self.inputs, *self.outputs):
                closable.close()

    def _notify(self, timed: List[StatefulNode]) -> None:
        now = datetime.now(timezone.utc)
        for node in timed:
            due = node.next_notify()
            if due is not None and due <= now:
                node.notify(now)

    def _close_epoch(self, commit: Optional[Commit]) -> None:
        if commit is not None:
            rows: List[Any] = []
            for node in self._snapshotters:
                rows.extend(node.snapshot_rows())
            commit(self.clock.epoch, rows)
        self.clock.epoch += 1

    def _sleep(self, live: List[InputNode], timed: List[StatefulNode], deadline: float) -> None:
        """Wait for the first thing that can happen: a poll, a notification or the epoch end."""
        wakes = [w for w in (n.next_wake() for n in live) if w is not None]
        wakes += [w for w in (n.next_notify() for n in timed) if w is not None]
        wait = deadline - time.monotonic()
        if wakes:
            wait = min(wait, (min(wakes) - datetime.now(timezone.utc)).total_seconds())
        if any(node.idle_poll for node in live):
            wait = min(wait, _IDLE_POLL_SECONDS)
        if wait > 0:
            time.sleep(wait)


def run_flow(
    flow: Dataflow,
    *,
    epoch_interval: Optional[timedelta] = None,
    recovery_config: Optional[RecoveryConfig] = None,
) -> None:
    """Run ``flow`` with one worker in this thread (the engine behind ``run_main``)."""
    interval = DEFAULT_EPOCH_INTERVAL if epoch_interval is None else epoch_interval
    if interval < timedelta(0):
        raise ValueError(f"epoch_interval must not be negative; got {interval}")
    plan = flatten(flow)
    if recovery_config is None:
        Worker(plan, Clock(1, 0, 1), interval, {}, recording=False).run(None)
        return
    backup = recovery_config.backup_interval or timedelta(0)
    # With a zero interval every round is an epoch; count the window in 1 µs epochs.
    backup_epochs = math.ceil(backup / max(interval, _SMALLEST_EPOCH))
    with RecoveryStore.open(recovery_config.db_dir) as store:
        start = store.start_execution(worker_count=1)
        resume: Dict[str, Dict[str, bytes]] = {}
        for step_id, blobs in store.load_by_step(start.epoch):
            resume.setdefault(step_id, {}).update(blobs)
        worker = Worker(plan, Clock(start.epoch, 0, 1), interval, resume, recording=True)

        def commit(epoch: int, rows: List[Any]) -> None:
            store.commit_epoch(epoch, 0, rows, gc_before=epoch - 1 - backup_epochs)

        worker.run(commit)

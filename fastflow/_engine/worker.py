"""The workers: run a flattened plan in rounds, epoch by epoch.

Each worker has its own nodes of the plan (:class:`Worker`). The workers of a
process run together in this thread (:class:`Workers`), round by round: every
worker polls its source partitions that are awake, then each node position of
the plan takes its turn on every worker, so a batch routed to another worker
(see ``exchange.py``) is handled in the same round. Due notifications of
stateful steps fire, and the epoch closes for all workers at once when its
interval has passed. With recovery on, closing an epoch commits, per worker,
the state every step changed in it (and every source and sink partition's
resume state) in one transaction per partition. When all inputs of all workers
have ended, the last epoch is closed the same way and the run is over.
"""

from __future__ import annotations

import functools
import math
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from fastflow._cext.routing import split_by_worker, split_dict
from fastflow._engine.committer import EpochCommitter
from fastflow._engine.exchange import Exchange, RoundRobin, Split, fan_out, local, nothing
from fastflow._engine.io import InputNode, OutputNode, output_node
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
    stateful_node,
)
from fastflow._engine.plan import CoreStep, flatten
from fastflow._engine.snapshot import Recorded, Resume, encode_epoch, load_resume
from fastflow._engine.store import RecoveryStore
from fastflow.dataflow import Dataflow
from fastflow.inputs import AbortExecution
from fastflow.outputs import FixedPartitionedSink
from fastflow.recovery import RecoveryConfig

DEFAULT_EPOCH_INTERVAL = timedelta(seconds=10)
_SMALLEST_EPOCH = timedelta(microseconds=1)

# How long to wait before polling again a partition that returned nothing
# without saying when to come back: long enough not to spin a core.
_IDLE_POLL_SECONDS = 0.001

Commit = Callable[[int, List[Tuple[int, Recorded]], bool], None]  # epoch, what changed, last?
Edge = Callable[[int], Tuple[Push, End]]  # worker index -> emit and end into a consumer


class Worker:
    """One worker's nodes of the plan: worker ``clock.worker_index`` of ``clock.worker_count``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.inputs: List[InputNode] = []
        self.outputs: List[OutputNode] = []
        self.stateful: List[StatefulNode] = []
        self.nodes: List[Node] = []

    def build(
        self, step: CoreStep, ports: Dict[str, Tuple[Push, End]], resume: Dict[str, Any],
        recording: bool,
    ) -> Optional[Node]:
        """Add the node of ``step`` (``None`` for an input: it is polled, not run)."""
        kind, args, step_id = step.kind, step.args, step.step_id
        down, end = ports.get("down", (nothing, nothing))
        if kind == "input":
            self.inputs.append(InputNode(step_id, args["source"], self.clock, resume, down, end))
            return None
        node: Node
        if kind == "output":
            output = output_node(step_id, args["sink"], self.clock, resume, nothing)
            self.outputs.append(output)
            node = output
        elif kind == "flat_map_batch":
            node = FlatMapBatchNode(step_id, args["mapper"], down, end)
        elif kind == "branch":
            (trues, end_t), (falses, end_f) = ports["trues"], ports["falses"]

            def end_both() -> None:
                end_t()
                end_f()

            node = BranchNode(step_id, args["predicate"], (trues, falses), end_both)
        elif kind in ("merge", "redistribute"):
            node = PassNode(step_id, len(step.ups), down, end)
        elif kind == "inspect_debug":
            node = InspectDebugNode(step_id, args["inspector"], self.clock, down, end)
        elif kind == "stateful_batch":
            stateful = stateful_node(step_id, args["builder"], down, end, recording)
            stateful.restore(resume)
            self.stateful.append(stateful)
            node = stateful
        else:
            raise AssertionError(f"unknown core step kind {kind!r}")
        self.nodes.append(node)
        return node

    def recorded(self) -> List[Tuple[int, Recorded]]:
        """``(worker index, node)`` of every node whose state this worker commits."""
        index = self.clock.worker_index
        return [(index, node) for node in (*self.inputs, *self.stateful, *self.outputs)]


def _split(step: CoreStep, nodes: Sequence[Node]) -> Optional[Split]:
    """How batches into ``step`` are shared out among its workers (``None``: kept local)."""
    count, step_id = len(nodes), step.step_id
    if count == 1:
        return None
    if step.kind == "stateful_batch":
        return lambda batch: split_by_worker(batch, count, step_id)
    if step.kind == "redistribute":
        return RoundRobin(count)
    if step.kind == "output" and isinstance(step.args["sink"], FixedPartitionedSink):
        return nodes[0].split_by_owner  # type: ignore[attr-defined, no-any-return]
    return None


def _edge(step: CoreStep, nodes: Sequence[Node], port: int) -> Edge:
    """The input ``port`` of ``step``, as each worker's producers see it."""
    split = _split(step, nodes)
    if split is None:
        return lambda worker: local(nodes[worker], port)
    exchange = Exchange(nodes, port, split)
    return lambda _worker: (exchange.emit, exchange.end)


def _share(step: CoreStep, resume: Resume, count: int) -> List[Dict[str, Any]]:
    """Each worker's part of ``step``'s resume state.

    Keyed state goes to the worker owning the key (whatever the worker count
    was when it was written); sources and sinks pick their own partitions.
    """
    states = resume.get(step.step_id, {})
    if step.kind == "stateful_batch" and count > 1 and states:
        return split_dict(states, count)
    return [states] * count


def _build(
    plan: List[CoreStep], workers: List[Worker], resume: Resume, recording: bool
) -> None:
    """Build every worker's nodes, from the last step back to the first.

    So every producer is handed its consumers' inboxes (on its own worker, or
    an exchange into every worker's).
    """
    consumers: Dict[str, List[Edge]] = {}
    for step in reversed(plan):
        shares = _share(step, resume, len(workers))
        built = []
        for index, worker in enumerate(workers):
            ports = {
                port: fan_out([edge(index) for edge in consumers.get(stream, [])])
                for port, stream in step.downs.items()
            }
            built.append(worker.build(step, ports, shares[index], recording))
        nodes = [node for node in built if node is not None]
        if nodes:
            for port, stream_id in enumerate(step.ups):
                consumers.setdefault(stream_id, []).insert(0, _edge(step, nodes, port))
    for worker in workers:
        for built_backwards in (worker.nodes, worker.inputs, worker.outputs, worker.stateful):
            built_backwards.reverse()  # back into plan order


def _by_position(lists: Sequence[List[Any]]) -> List[Any]:
    """Interleave the workers' nodes: each plan position on worker 0, 1, ..."""
    return [node for group in zip(*lists, strict=True) for node in group]


class Workers:
    """The workers of this process, run round by round in this thread.

    The run ends when every input of every worker has ended.
    """

    def __init__(
        self,
        plan: List[CoreStep],
        worker_count: int,
        epoch: int,
        epoch_interval: timedelta,
        resume: Resume,
        recording: bool,
    ) -> None:
        self._interval = epoch_interval.total_seconds()
        self.workers = [Worker(Clock(epoch, i, worker_count)) for i in range(worker_count)]
        _build(plan, self.workers, resume, recording)
        self.inputs: List[InputNode] = _by_position([w.inputs for w in self.workers])
        self.outputs: List[OutputNode] = _by_position([w.outputs for w in self.workers])
        self.stateful: List[StatefulNode] = _by_position([w.stateful for w in self.workers])
        self.nodes: List[Node] = _by_position([w.nodes for w in self.workers])

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
                due = self._due(timed) if timed else None
                if due:
                    for step in nodes:
                        due.get(step, step.run)()  # a step with due keys notifies in its turn
                else:
                    for step in nodes:
                        step.run()
                if not live:
                    break
                if time.monotonic() >= deadline:
                    self._close_epoch(commit, last=False)
                    deadline = time.monotonic() + interval
                if not worked:
                    self._sleep(live, timed, deadline)
            self._close_epoch(commit, last=True)
        except AbortExecution:
            return
        finally:
            for closable in (*self.inputs, *self.outputs):
                closable.close()

    def _due(self, timed: List[StatefulNode]) -> dict[Node, Callable[[], None]]:
        """The turn, with notifications, of each step that has keys due by now."""
        now = datetime.now(timezone.utc)
        return {
            node: functools.partial(self._notifying_turn, node, now)
            for node in timed
            if (at := node.next_notify()) is not None and at <= now
        }

    @staticmethod
    def _notifying_turn(node: StatefulNode, now: datetime) -> None:
        """Take the turn of a step with keys due by ``now``, in Bytewax's order.

        ``on_batch`` for what reached the step this round, then ``on_notify``
        for the due keys, then (at the end of input) ``on_eof``; the emits of
        all of them go downstream in this round, in that order.
        """
        if any(node.inboxes):
            node.run()
            node.notify(now)
        else:  # nothing arrived: notify before a possible end of input
            node.notify(now)
            node.run()

    def _close_epoch(self, commit: Optional[Commit], *, last: bool) -> None:
        """Close the epoch on every worker together (the aligned barrier is the round's end)."""
        now = time.time()
        for node in self.stateful:
            node.expire(now)  # keys idle for their step's ttl become deletions (see ttl.py)
        if commit is not None:
            recorded = [entry for worker in self.workers for entry in worker.recorded()]
            commit(self.workers[0].clock.epoch, recorded, last)
        for worker in self.workers:
            worker.clock.epoch += 1

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
    worker_count: int = 1,
) -> None:
    """Run ``flow`` with ``worker_count`` workers in this thread (behind ``run_main``)."""
    interval = DEFAULT_EPOCH_INTERVAL if epoch_interval is None else epoch_interval
    if interval < timedelta(0):
        raise ValueError(f"epoch_interval must not be negative; got {interval}")
    if isinstance(worker_count, bool) or not isinstance(worker_count, int) or worker_count < 1:
        raise ValueError(f"worker_count must be a whole number >= 1; got {worker_count!r}")
    plan = flatten(flow)
    if recovery_config is None:
        Workers(plan, worker_count, 1, interval, {}, recording=False).run(None)
        return
    backup = recovery_config.backup_interval or timedelta(0)
    # With a zero interval every round is an epoch; count the window in 1 µs epochs.
    backup_epochs = math.ceil(backup / max(interval, _SMALLEST_EPOCH))
    with RecoveryStore.open(recovery_config.db_dir) as store:
        start = store.start_execution(worker_count=worker_count)
        resume = load_resume(store, start.epoch)
        committer = EpochCommitter(store, list(range(worker_count)), backup_epochs)
        try:
            committer.compact()  # what the last run left, while this one starts
            workers = Workers(plan, worker_count, start.epoch, interval, resume, recording=True)

            def commit(epoch: int, recorded: List[Tuple[int, Recorded]], last: bool) -> None:
                changes = encode_epoch(recorded, store.part_count)
                committer.commit(epoch, changes, last=last)

            workers.run(commit)
            committer.wait()
        finally:
            committer.close()

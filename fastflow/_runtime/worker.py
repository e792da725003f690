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
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from fastflow import _hooks as hooks
from fastflow._cext.routing import split_by_worker, split_dict
from fastflow._runtime.exchange import Exchange, RoundRobin, Split, fan_out, local, nothing
from fastflow._runtime.io_nodes import InputNode, OutputNode, RoutedOutputNode, output_node
from fastflow._runtime.meter import Meter
from fastflow._runtime.nodes import (
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
from fastflow._runtime.plan import CoreStep
from fastflow._runtime.snapshot import Recorded, ResumeState
from fastflow.inputs import AbortExecution

# How long to wait before polling again a partition that returned nothing
# without saying when to come back: long enough not to spin a core.
_IDLE_POLL_SECONDS = 0.001

Commit = Callable[[int, list[tuple[int, Recorded]], bool], None]  # epoch, what changed, last?
Edge = Callable[[int], tuple[Push, End]]  # worker index -> emit and end into a consumer


class Worker:
    """One worker's nodes of the plan: worker ``clock.worker_index`` of ``clock.worker_count``."""

    def __init__(self, clock: Clock, metered: bool = False) -> None:
        self.clock = clock
        self.metered = metered
        """Whether the nodes count and time their batches (``meter.py``)."""
        self.inputs: list[InputNode] = []
        self.outputs: list[OutputNode] = []
        self.stateful: list[StatefulNode] = []
        self.nodes: list[Node] = []

    def build(
        self, step: CoreStep, ports: dict[str, tuple[Push, End]], resume: dict[str, Any],
        recording: bool,
    ) -> Node | None:
        """Add the node of ``step`` (``None`` for an input: it is polled, not run)."""
        kind, args, step_id = step.kind, step.args, step.step_id
        meter = Meter()
        if self.metered:
            ports = {name: (meter.counting(push), end) for name, (push, end) in ports.items()}
        down, end = ports.get("down", (nothing, nothing))
        if kind == "input":
            source = InputNode(step_id, args["source"], self.clock, resume, down, end)
            source.meter, source.metered = meter, self.metered
            self.inputs.append(source)
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
        node.meter = meter
        if self.metered:
            node.push = meter.metering(node.push)  # type: ignore[method-assign,assignment]
        self.nodes.append(node)
        return node

    def recorded(self) -> list[tuple[int, Recorded]]:
        """``(worker index, node)`` of every node whose state this worker commits."""
        index = self.clock.worker_index
        nodes: list[Recorded] = [*self.inputs, *self.stateful, *self.outputs]
        return [(index, node) for node in nodes]


def _split(step: CoreStep, local_nodes: Sequence[Node], count: int) -> Split | None:
    """How batches into ``step`` are shared out among its ``count`` workers (``None``: local)."""
    step_id = step.step_id
    if count == 1:
        return None
    if step.kind == "stateful_batch":
        return lambda batch: split_by_worker(batch, count, step_id)
    if step.kind == "redistribute":
        return RoundRobin(count)
    if step.kind == "output":
        node = local_nodes[0]
        if isinstance(node, RoutedOutputNode):  # the sink is a FixedPartitionedSink
            return node.split_by_owner
    return None


def _edge(
    step: CoreStep,
    index: int,
    local_nodes: Sequence[Node],
    first: int,
    port: int,
    peers: Peers | None,
) -> Edge:
    """The input ``port`` of plan step ``index``, as each local worker's producers see it.

    ``local_nodes`` are the step's nodes on this process's workers ``first``, ``first + 1``...
    """
    count = len(local_nodes) if peers is None else peers.worker_count
    split = _split(step, local_nodes, count)
    if split is None:
        return lambda worker: local(local_nodes[worker - first], port)
    if peers is None:
        exchange = Exchange(local_nodes, port, split, len(local_nodes),
                            [node.upstream_ended for node in local_nodes])
    else:
        slots = peers.slots(index, local_nodes, len(step.ups))
        ends = [peers.port_end(index, port, slot) for slot in slots]
        exchange = Exchange(slots, port, split, len(local_nodes), ends)
    return lambda _worker: (exchange.emit, exchange.end)


def _share(step: CoreStep, resume: ResumeState, count: int) -> list[dict[str, Any]]:
    """Each worker's part of ``step``'s resume state.

    Keyed state goes to the worker owning the key (whatever the worker count
    was when it was written); sources and sinks pick their own partitions.
    """
    states = resume.get(step.step_id, {})
    if step.kind == "stateful_batch" and count > 1 and states:
        return split_dict(states, count)
    return [states] * count


def _build(
    plan: list[CoreStep],
    workers: list[Worker],
    resume: ResumeState,
    recording: bool,
    peers: Peers | None = None,
) -> None:
    """Build the local workers' nodes, from the last step back to the first.

    So every producer is handed its consumers' inboxes (on its own worker, or
    an exchange into every worker's, some of them on other processes).
    """
    count = len(workers) if peers is None else peers.worker_count
    first = workers[0].clock.worker_index
    consumers: dict[str, list[Edge]] = {}
    for index in reversed(range(len(plan))):
        step = plan[index]
        shares = _share(step, resume, count)
        built = []
        for worker in workers:
            at = worker.clock.worker_index
            ports = {
                port: fan_out([edge(at) for edge in consumers.get(stream, [])])
                for port, stream in step.downs.items()
            }
            built.append(worker.build(step, ports, shares[at], recording))
        nodes = [node for node in built if node is not None]
        if nodes:
            if peers is not None:
                peers.register(index, nodes)
            for port, stream_id in enumerate(step.ups):
                edge = _edge(step, index, nodes, first, port, peers)
                consumers.setdefault(stream_id, []).insert(0, edge)
    for worker in workers:
        for built_backwards in (worker.nodes, worker.inputs, worker.outputs, worker.stateful):
            built_backwards.reverse()  # back into plan order


def _by_position(lists: Sequence[list[Any]]) -> list[Any]:
    """Interleave the workers' nodes: each plan position on worker 0, 1, ..."""
    return [node for group in zip(*lists, strict=True) for node in group]


class Peers(Protocol):
    """The other processes of a run, as the build of this process's nodes sees them."""

    worker_count: int
    """Workers of the whole run, all processes."""

    def slots(self, step: int, local_nodes: Sequence[Node], port_count: int) -> list[Any]:
        """Plan step ``step``'s consumer on every worker of the run: local nodes, remote slots."""
        ...

    def port_end(self, step: int, port: int, slot: Any) -> End:
        """How this process's exchange into ``slot``'s ``port`` ends it."""
        ...

    def register(self, step: int, local_nodes: Sequence[Node]) -> None:
        """Plan step ``step``'s nodes on this process's workers, for batches from others."""
        ...


class Pacer(Protocol):
    """What drives the rounds: when sources are read, when epochs close, when it ends."""

    def before_round(self, workers: Workers) -> bool:
        """Take what arrived from elsewhere; return whether sources may be read this round."""
        ...

    def after_round(
        self, workers: Workers, worked: bool, live: list[InputNode], timed: list[StatefulNode]
    ) -> bool:
        """Close epochs, wait when idle; return True when the run is over."""
        ...


class Workers:
    """The workers of this process, run round by round in this thread.

    With one process they are all the run's workers; with several (``distributed/processes.py``),
    workers ``first`` to ``first + count - 1`` of ``worker_count``.
    """

    def __init__(
        self,
        plan: list[CoreStep],
        worker_count: int,
        epoch: int,
        resume: ResumeState,
        recording: bool,
        first: int = 0,
        count: int | None = None,
        peers: Peers | None = None,
    ) -> None:
        local = range(first, first + (worker_count if count is None else count))
        metered = hooks.current().metered
        self.workers = [Worker(Clock(epoch, i, worker_count), metered) for i in local]
        _build(plan, self.workers, resume, recording, peers)
        self.inputs: list[InputNode] = _by_position([w.inputs for w in self.workers])
        self.outputs: list[OutputNode] = _by_position([w.outputs for w in self.workers])
        self.stateful: list[StatefulNode] = _by_position([w.stateful for w in self.workers])
        self.nodes: list[Node] = _by_position([w.nodes for w in self.workers])
        self.notified = False
        """Whether notifications fired in the last round (state may have changed)."""

    @property
    def epoch(self) -> int:
        """The epoch the workers are in."""
        return self.workers[0].clock.epoch

    @property
    def ended(self) -> bool:
        """Whether every node of every local worker has ended (nothing more can happen)."""
        return all(node.ended for node in self.nodes) and not any(n.live for n in self.inputs)

    def run(self, pacer: Pacer) -> None:
        """Run rounds until ``pacer`` says the run is over (or an input aborts)."""
        live = [node for node in self.inputs if node.live]
        nodes = self.nodes
        timed = [node for node in self.stateful if node.notifies]
        epoch, notified_only = self.epoch, False
        try:
            while True:
                worked = False
                read = pacer.before_round(self)
                due = self._due(timed) if timed else None
                if due and self.epoch != epoch and not notified_only:
                    # As in Bytewax, closing an epoch activates the stateful steps once more:
                    # a round of the notifications due, before the sources are read again.
                    read, worked, notified_only = False, True, True
                else:
                    notified_only = False
                epoch = self.epoch
                if read:
                    for node in live:
                        worked |= node.poll(None)
                    live = [node for node in live if node.live]
                self.notified = bool(due)
                if due:
                    for step in nodes:
                        due.get(step, step.run)()  # a step with due keys notifies in its turn
                else:
                    for step in nodes:
                        step.run()
                if timed and not live and any(node.end_pending for node in timed):
                    worked = True  # a step learning of the end next round (LogicStateNode)
                if pacer.after_round(self, worked, live, timed):
                    break
        except AbortExecution:
            return
        finally:
            for source in self.inputs:
                source.close()
            for sink in self.outputs:
                sink.close()

    def _due(self, timed: list[StatefulNode]) -> dict[Node, Callable[[], None]]:
        """The turn, with notifications, of each step that has keys due at the round's start."""
        now = datetime.now(timezone.utc)
        return {
            node: functools.partial(self._notifying_turn, node, keys)
            for node in timed
            if (keys := node.due_keys(now))
        }

    @staticmethod
    def _notifying_turn(node: StatefulNode, keys: list[str]) -> None:
        """Take the turn of a step with ``keys`` due, in Bytewax's order.

        ``on_batch`` for what reached the step this round, then ``on_notify``
        for the keys that were due when the round began (a time a batch asks for
        now is due in a later round), then (at the end of input) ``on_eof``.
        """
        node.take()
        node.notify(keys)
        node.end_if_done()

    def confirm_epoch(self) -> None:
        """The oldest epoch whose changes were handed out is durable: tell the sources."""
        for node in self.inputs:
            node.confirm()

    def close_epoch(self) -> list[tuple[int, Recorded]]:
        """End the epoch on every local worker; return what changed in it, to snapshot."""
        now = time.time()
        for node in self.stateful:
            node.expire(now)  # keys idle for their step's ttl become deletions (see ttl.py)
        recorded = [entry for worker in self.workers for entry in worker.recorded()]
        for worker in self.workers:
            worker.clock.epoch += 1
        return recorded

    def next_wake(self, live: list[InputNode], timed: list[StatefulNode]) -> float | None:
        """Seconds until a partition or a notification is due (``None``: nothing is)."""
        wakes = [w for w in (n.next_wake() for n in live) if w is not None]
        wakes += [w for w in (n.next_notify() for n in timed) if w is not None]
        wait = None
        if wakes:
            wait = (min(wakes) - datetime.now(timezone.utc)).total_seconds()
        if any(node.idle_poll for node in live):
            wait = _IDLE_POLL_SECONDS if wait is None else min(wait, _IDLE_POLL_SECONDS)
        return wait

    def next_expiry(self) -> float | None:
        """When (Unix time) a key's TTL passes next; an epoch's end then discards it."""
        times = [at for at in (node.next_expiry() for node in self.stateful) if at is not None]
        return min(times) if times else None

    def expiry_due(self) -> bool:
        """Whether a key's TTL has passed: an epoch must close to discard it."""
        expiry = self.next_expiry()
        return expiry is not None and expiry <= time.time()


class LocalPacer:
    """One process: epochs close by the clock; the run ends with its inputs."""

    def __init__(self, interval: timedelta, commit: Commit | None) -> None:
        self._interval = interval.total_seconds()
        self._deadline = time.monotonic() + self._interval
        self._commit = commit

    def before_round(self, workers: Workers) -> bool:
        """Sources are always read."""
        return True

    def after_round(
        self, workers: Workers, worked: bool, live: list[InputNode], timed: list[StatefulNode]
    ) -> bool:
        """Close the epoch when its time has come, or for good when all inputs ended."""
        if not live and workers.ended:
            self._close(workers, last=True)
            return True
        if time.monotonic() >= self._deadline:
            self._close(workers, last=False)
            self._deadline = time.monotonic() + self._interval
        if not worked:
            # Sleep until something is due. The epoch's end counts while it is ahead; past
            # it (a zero interval: every round ends one) waking for it would spin, and
            # only a key's TTL needs an epoch to end (to discard the key).
            wait = workers.next_wake(live, timed)
            until_end: float | None = self._deadline - time.monotonic()
            if until_end is not None and until_end <= 0:
                expiry = workers.next_expiry()
                until_end = None if expiry is None else expiry - time.time()
            if until_end is not None:
                wait = until_end if wait is None else min(wait, until_end)
            if wait is not None and wait > 0:
                time.sleep(wait)
        return False

    def _close(self, workers: Workers, *, last: bool) -> None:
        """Close the epoch on every worker together (the aligned barrier is the round's end)."""
        epoch = workers.epoch
        recorded = workers.close_epoch()
        if self._commit is not None:
            self._commit(epoch, recorded, last)

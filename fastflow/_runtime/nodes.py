"""Core steps at run time: each takes whole batches and emits whole batches.

The worker runs in rounds. A node's output goes into its consumers' inboxes;
in every round each node, in plan order, handles what its inboxes hold (all of
it as one ``push(batch)``, upstreams in order) and then, if all its upstreams
have ended, flushes (``finish``) and ends its own downstreams. Plan order is
topological, so a round carries every batch polled in it through the whole
flow, as Bytewax's scheduler does. Per batch this costs a list append and a
method call per step; the per-item work happens in compiled loops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from itertools import chain
from typing import Any, NoReturn

from fastflow._cext import state
from fastflow._cext.ops import branch_items
from fastflow._cext.routing import RoutingError
from fastflow._contracts import ExpiringBuilder, FoldSpec, MapSpec
from fastflow._runtime.meter import Meter
from fastflow._runtime.ttl import Expiry, keys_of, plain
from fastflow.errors import FastflowRuntimeError

Push = Callable[[list[Any]], None]
End = Callable[[], None]
Changes = tuple[dict[str, Any], dict[str, bool]]
"""``(values, changed)`` of a node since its last snapshot (see ``codec.encode_changes``)."""


def user_error(
    step_id: str, what: str, ex: BaseException, key: str | None = None
) -> FastflowRuntimeError:
    """Name the step (and key) whose user code ``what`` raised ``ex``; raise it ``from ex``.

    The one place that words these messages, so every node reports user code alike.
    Per-batch calls catch inline and call this only on failure (a wrapper call per
    batch would cost more than the step); everything else goes through :func:`call_user`.
    """
    where = f"step {step_id!r}" if key is None else f"step {step_id!r} for key {key!r}"
    return FastflowRuntimeError(f"error calling `{what}` in {where}: {type(ex).__name__}: {ex}")


def call_user(
    step_id: str, what: str, fn: Callable[..., Any], *args: Any, key: str | None = None
) -> Any:
    """Call user code ``fn(*args)``, re-raising what it raises as :func:`user_error`."""
    try:
        return fn(*args)
    except Exception as ex:
        raise user_error(step_id, what, ex, key) from ex


class Clock:
    """The worker's epoch, read by nodes that report it."""

    def __init__(self, epoch: int, worker_index: int, worker_count: int) -> None:
        self.epoch = epoch
        self.worker_index = worker_index
        self.worker_count = worker_count


class Node:
    """Base of all run-time core steps: an inbox per upstream, handled once per round."""

    def __init__(self, step_id: str, up_count: int, end: End) -> None:
        self.step_id = step_id
        self.inboxes: list[list[list[Any]]] = [[] for _ in range(up_count)]
        self._open_ups = up_count
        self._ended = False
        self._end = end
        self.meter = Meter()  # counts only if the worker metered the node (see meter.py)

    def push(self, batch: list[Any]) -> None:
        """Handle one non-empty batch from an upstream."""
        raise NotImplementedError

    @property
    def ended(self) -> bool:
        """Whether this node has finished: all its upstreams ended and it flushed."""
        return self._ended

    @property
    def end_pending(self) -> bool:
        """Whether every upstream has ended but this node has not finished yet."""
        return self._open_ups == 0 and not self._ended

    def upstream_ended(self) -> None:
        """One upstream reached end of input (this node finishes in its next turn)."""
        self._open_ups -= 1

    def run(self) -> None:
        """Take this round's turn: handle waiting batches, then finish if all upstreams ended."""
        self.take()
        self.end_if_done()

    def take(self) -> None:
        """Handle the batches waiting in the inboxes."""
        if any(self.inboxes):
            waiting: list[list[Any]] = []
            for inbox in self.inboxes:
                waiting += inbox
                inbox.clear()
            # All that arrived this round is one batch, upstreams in order (as in Bytewax).
            self.push(waiting[0] if len(waiting) == 1 else list(chain.from_iterable(waiting)))

    def end_if_done(self) -> None:
        """Finish and end the downstreams once every upstream has ended."""
        if self.end_pending:
            self._ended = True
            self.finish()
            self._end()

    def finish(self) -> None:
        """Flush at end of input (stateful steps emit here)."""


class PassNode(Node):
    """``merge`` and ``redistribute`` (with one worker): batches go on, upstreams in order."""

    def __init__(self, step_id: str, up_count: int, down: Push, end: End) -> None:
        super().__init__(step_id, up_count, end)
        self._down = down

    def push(self, batch: list[Any]) -> None:
        self._down(batch)


class FlatMapBatchNode(Node):
    """Call the mapper on the whole batch."""

    def __init__(self, step_id: str, mapper: Callable[[list[Any]], Any], down: Push, end: End):
        super().__init__(step_id, 1, end)
        self._mapper = mapper
        self._down = down

    def push(self, batch: list[Any]) -> None:
        try:
            out = self._mapper(batch)
            if type(out) is not list:
                out = list(out)
        except RoutingError:
            raise
        except Exception as ex:
            raise user_error(self.step_id, "mapper", ex) from ex
        if out:
            self._down(out)


class BranchNode(Node):
    """Split each batch by the predicate."""

    def __init__(
        self, step_id: str, predicate: Callable[[Any], bool], downs: tuple[Push, Push], end: End
    ):
        super().__init__(step_id, 1, end)
        self._predicate = predicate
        self._trues, self._falses = downs

    def push(self, batch: list[Any]) -> None:
        try:
            trues, falses = branch_items(self._predicate, batch, self.step_id)
        except Exception as ex:
            raise user_error(self.step_id, "predicate", ex) from ex
        if trues:
            self._trues(trues)
        if falses:
            self._falses(falses)


class InspectDebugNode(Node):
    """Show every item to the inspector with the epoch, then pass the batch on."""

    def __init__(self, step_id: str, inspector: Callable[..., None], clock: Clock, down: Push,
                 end: End) -> None:
        super().__init__(step_id, 1, end)
        self._inspector = inspector
        self._clock = clock
        self._down = down

    def push(self, batch: list[Any]) -> None:
        inspector, step_id = self._inspector, self.step_id
        epoch, worker = self._clock.epoch, self._clock.worker_index
        try:
            for item in batch:
                inspector(step_id, item, epoch, worker)
        except Exception as ex:
            raise user_error(step_id, "inspector", ex) from ex
        self._down(batch)


class StatefulNode(Node):
    """Base of the ``stateful_batch`` nodes: per-key state, and what the worker asks of it.

    ``states`` holds, per key, the raw state (:class:`MapStateNode`,
    :class:`FoldStateNode`) or the logic object (:class:`LogicStateNode`).
    ``dirty`` records the keys changed since the last snapshot (a
    ``state.ChangeTracker``; ``None`` when nothing is snapshotted). The worker
    asks :meth:`next_notify` only of nodes whose ``notifies`` is true.
    :func:`stateful_node` picks the class.
    """

    notifies = False

    def __init__(self, step_id: str, down: Push, end: End, track_changes: bool) -> None:
        super().__init__(step_id, 1, end)
        self._down = down
        self.states: dict[str, Any] = {}
        self.dirty = state.ChangeTracker() if track_changes else None

    def changes(self) -> Changes:
        """The keys changed since the last call, and their states.

        A changed key without a state was discarded. The caller encodes them before the
        flow goes on: that is the epoch's consistent cut.
        """
        raise NotImplementedError

    def restore(self, states: dict[str, Any]) -> None:
        """Take back every key's state from a resume."""
        raise NotImplementedError

    def next_notify(self) -> datetime | None:
        """The earliest time a key asked to be notified at, if any."""
        raise NotImplementedError

    def due_keys(self, now: datetime) -> list[str]:
        """The keys whose time to be notified has come by ``now``, in key order."""
        raise NotImplementedError

    def notify(self, keys: list[str]) -> None:
        """Call ``on_notify`` for each of ``keys`` still kept (a batch may have discarded one)."""
        raise NotImplementedError

    def expire(self, now: float) -> None:
        """At an epoch's end (``now``: Unix time), discard the keys whose TTL passed.

        Nothing to do without a TTL (see ``ttl.py`` and the ``Expiring*`` nodes).
        """

    def next_expiry(self) -> float | None:
        """When (Unix time) a key's TTL passes next; ``None`` without a TTL or keys."""
        return None


def stateful_node(
    step_id: str,
    builder: Callable[[Any], Any] | MapSpec | FoldSpec,
    down: Push,
    end: End,
    track_changes: bool,
) -> StatefulNode:
    """The node for a ``stateful_batch`` step: a compiled fast path if ``builder`` is a spec.

    A builder with a ``ttl`` (``MapSpec.ttl``, ``ExpiringBuilder``) gets an expiring node.
    """
    if isinstance(builder, MapSpec):
        if builder.ttl is not None:
            return ExpiringMapStateNode(step_id, builder, down, end, track_changes)
        return MapStateNode(step_id, builder, down, end, track_changes)
    if isinstance(builder, FoldSpec):
        return FoldStateNode(step_id, builder, down, end, track_changes)
    if isinstance(builder, ExpiringBuilder):
        return ExpiringLogicStateNode(step_id, builder, down, end, track_changes)
    return LogicStateNode(step_id, builder, down, end, track_changes)


class _RawStateNode(StatefulNode):
    """What the fast paths share: the raw state in ``states``, run by ``cext/state.pyx``.

    Raw states never ask to be notified, and are snapshotted as they are.
    """

    def _loop_failed(self, what: str, ex: Exception) -> NoReturn:
        """Re-raise what a compiled state loop raised as the user's ``what`` (or ``init``)."""
        if isinstance(ex, state.BuilderError):  # the loop wraps what ``init()`` raised
            cause = ex.__cause__ or ex
            raise user_error(self.step_id, "builder", cause) from cause
        raise user_error(self.step_id, what, ex) from ex

    def next_notify(self) -> None:
        return None

    def due_keys(self, now: datetime) -> list[str]:
        """None: no raw state asks to be notified (``notifies`` is false)."""
        return []

    def notify(self, keys: list[str]) -> None:
        """Nothing to do: no raw state asks to be notified."""

    def changes(self) -> Changes:
        """The raw states themselves: no call per key of ours."""
        assert self.dirty is not None
        return self.states, self.dirty.take(self.states)

    def restore(self, states: dict[str, Any]) -> None:
        self.states.update(plain(states))


class MapStateNode(_RawStateNode):
    """``stateful_map``/``stateful_flat_map`` (a :class:`MapSpec`): emits as it maps."""

    def __init__(
        self, step_id: str, spec: MapSpec, down: Push, end: End, track_changes: bool
    ) -> None:
        super().__init__(step_id, down, end, track_changes)
        self._mapper, self._init = spec.mapper, spec.init
        self._loop = state.flat_map_states if spec.flat else state.map_states

    def push(self, batch: list[Any]) -> None:
        try:
            out = self._loop(self.states, self.dirty, batch, self._mapper, self._init, self.step_id)
        except RoutingError:
            raise
        except Exception as ex:
            self._loop_failed("mapper", ex)
        if out:
            self._down(out)


class FoldStateNode(_RawStateNode):
    """``fold_final`` and friends (a :class:`FoldSpec`): folds silently, emits at end of input."""

    def __init__(
        self, step_id: str, spec: FoldSpec, down: Push, end: End, track_changes: bool
    ) -> None:
        super().__init__(step_id, down, end, track_changes)
        self._folder, self._init = spec.folder, spec.init

    def push(self, batch: list[Any]) -> None:
        try:
            state.fold_states(
                self.states, self.dirty, batch, self._folder, self._init, self.step_id
            )
        except RoutingError:
            raise
        except Exception as ex:
            self._loop_failed("folder", ex)

    def finish(self) -> None:
        """Emit every key's state in key order and discard it."""
        states = self.states
        out = [(key, states[key]) for key in sorted(states)]
        if self.dirty is not None:
            for key in states:
                self.dirty.mark(key, True)
        states.clear()
        if out:
            self._down(out)


class LogicStateNode(StatefulNode):
    """Any other builder: one ``StatefulBatchLogic`` per key in ``states``, with timers."""

    notifies = True

    def __init__(
        self, step_id: str, builder: Callable[[Any], Any], down: Push, end: End,
        track_changes: bool,
    ) -> None:
        super().__init__(step_id, down, end, track_changes)
        self._builder = builder
        self._timers: dict[str, datetime] = {}
        self._end_seen = False

    def end_if_done(self) -> None:
        """Finish one turn after the upstreams ended, as Bytewax's step learns of it.

        Keys due by then (also ones the last batch asked for) are notified before ``on_eof``.
        """
        if self.end_pending and not self._end_seen:
            self._end_seen = True
            return
        super().end_if_done()

    def push(self, batch: list[Any]) -> None:
        step_id = self.step_id
        out: list[Any] = []
        for key, values in state.group_by_key(batch, step_id).items():
            logic = self.states.get(key)
            if self.dirty is not None:
                self.dirty.mark(key, logic is not None)
            if logic is None:
                logic = call_user(step_id, "builder", self._builder, None, key=key)
            result = call_user(step_id, "on_batch", logic.on_batch, values, key=key)
            self._after(key, logic, result, out)
        if out:
            self._down(out)

    def _after(self, key: str, logic: Any, result: Any, out: list[Any]) -> None:
        """Collect a callback's emits, then store or discard the logic and its timer."""
        step_id = self.step_id
        emits, discard = call_user(step_id, "logic callback", _emits_and_flag, result, key=key)
        out.extend([(key, w) for w in emits])
        if self.dirty is not None:
            self.dirty.mark(key, True)
        if discard:
            self.states.pop(key, None)
            self._timers.pop(key, None)
            return
        self.states[key] = logic
        due = call_user(step_id, "notify_at", logic.notify_at, key=key)
        if due is None:
            self._timers.pop(key, None)
        else:
            self._timers[key] = due

    def next_notify(self) -> datetime | None:
        return min(self._timers.values()) if self._timers else None

    def due_keys(self, now: datetime) -> list[str]:
        return sorted(key for key, at in self._timers.items() if at <= now)

    def notify(self, keys: list[str]) -> None:
        out: list[Any] = []
        for key in keys:
            logic = self.states.get(key)
            if logic is None:
                continue
            result = call_user(self.step_id, "on_notify", logic.on_notify, key=key)
            self._after(key, logic, result, out)
        if out:
            self._down(out)

    def finish(self) -> None:
        """Call every key's ``on_eof``, in key order."""
        out: list[Any] = []
        for key in sorted(self.states):
            logic = self.states[key]
            self._after(key, logic, call_user(self.step_id, "on_eof", logic.on_eof, key=key), out)
        self._timers.clear()
        if out:
            self._down(out)

    def changes(self) -> Changes:
        """Each live changed key's ``snapshot()``."""
        assert self.dirty is not None
        step_id, states = self.step_id, self.states
        changed = self.dirty.take(states)
        values = {
            key: call_user(step_id, "snapshot", states[key].snapshot, key=key)
            for key in changed
            if key in states
        }
        return values, changed

    def restore(self, states: dict[str, Any]) -> None:
        step_id = self.step_id
        for key, snapshot in plain(states).items():
            logic = call_user(step_id, "builder", self._builder, snapshot, key=key)
            self.states[key] = logic
            due = call_user(step_id, "notify_at", logic.notify_at, key=key)
            if due is not None:
                self._timers[key] = due


class _Expiring(StatefulNode):
    """What the TTL nodes add to their node class: stamps, expiry, stamped snapshots.

    Used as the first base of a node class (see ``ttl.py`` for the design). Per batch it
    only notes the batch's keys; an update is an item for the key, not a notification.
    """

    _expiry: Expiry

    def push(self, batch: list[Any]) -> None:
        keys = keys_of(batch)
        super().push(batch)  # raises for an item that is not a (key, value) pair
        if keys is not None:
            self._expiry.touch(keys)

    def expire(self, now: float) -> None:
        states, dirty = self.states, self.dirty
        for key in self._expiry.due(states, now):
            del states[key]
            self._forget(key)
            if dirty is not None:
                dirty.mark(key, True)

    def next_expiry(self) -> float | None:
        return self._expiry.next_due()

    def _forget(self, key: str) -> None:
        """Drop what the node keeps for an expired key besides its state."""

    def changes(self) -> Changes:
        values, changed = super().changes()
        return self._expiry.wrap(values, changed), changed

    def restore(self, states: dict[str, Any]) -> None:
        super().restore(self._expiry.restore(states, time.time()))


class ExpiringMapStateNode(_Expiring, MapStateNode):
    """``stateful_map``/``stateful_flat_map`` with a ``ttl``."""

    def __init__(
        self, step_id: str, spec: MapSpec, down: Push, end: End, track_changes: bool
    ) -> None:
        super().__init__(step_id, spec, down, end, track_changes)
        assert spec.ttl is not None
        self._expiry = Expiry(spec.ttl)


class ExpiringLogicStateNode(_Expiring, LogicStateNode):
    """``stateful`` with a ``ttl``: an expired key's logic and timer are dropped uncalled."""

    def __init__(
        self, step_id: str, builder: ExpiringBuilder, down: Push, end: End,
        track_changes: bool,
    ) -> None:
        super().__init__(step_id, builder.builder, down, end, track_changes)
        self._expiry = Expiry(builder.ttl)

    def _forget(self, key: str) -> None:
        self._timers.pop(key, None)


def _emits_and_flag(result: Any) -> tuple[list[Any], bool]:
    emits, discard = result
    return list(emits), bool(discard)

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

from datetime import datetime
from itertools import chain
from typing import Any, Callable, Dict, List, Optional, Tuple

from fastflow._cext import state
from fastflow._cext.ops import branch_items
from fastflow._cext.routing import RoutingError
from fastflow.errors import FastflowRuntimeError
from fastflow.operators._logic import FoldBuilder, MapBuilder

Push = Callable[[List[Any]], None]
End = Callable[[], None]


def user_error(step_id: str, what: str, ex: BaseException) -> FastflowRuntimeError:
    """Name the step whose user code raised ``ex`` (chain it as the cause)."""
    return FastflowRuntimeError(
        f"error calling `{what}` in step {step_id!r}: {type(ex).__name__}: {ex}"
    )


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
        self.inboxes: List[List[List[Any]]] = [[] for _ in range(up_count)]
        self._open_ups = up_count
        self._ended = False
        self._end = end

    def push(self, batch: List[Any]) -> None:
        """Handle one non-empty batch from an upstream."""
        raise NotImplementedError

    def upstream_ended(self) -> None:
        """One upstream reached end of input (this node finishes in its next turn)."""
        self._open_ups -= 1

    def run(self) -> None:
        """Take this round's turn: handle waiting batches, then finish if all upstreams ended."""
        if any(self.inboxes):
            waiting: List[List[Any]] = []
            for inbox in self.inboxes:
                waiting += inbox
                inbox.clear()
            # All that arrived this round is one batch, upstreams in order (as in Bytewax).
            self.push(waiting[0] if len(waiting) == 1 else list(chain.from_iterable(waiting)))
        if self._open_ups == 0 and not self._ended:
            self._ended = True
            self.finish()
            self._end()

    def finish(self) -> None:
        """Flush at end of input (stateful steps emit here)."""


class PassNode(Node):
    """``merge`` and ``redistribute`` (with one worker): batches go on, upstreams in order."""

    def __init__(self, step_id: str, up_count: int, down: Push, end: End) -> None:
        super().__init__(step_id, up_count, end)
        self.push = down  # type: ignore[method-assign]


class FlatMapBatchNode(Node):
    """Call the mapper on the whole batch."""

    def __init__(self, step_id: str, mapper: Callable[[List[Any]], Any], down: Push, end: End):
        super().__init__(step_id, 1, end)
        self._mapper = mapper
        self._down = down

    def push(self, batch: List[Any]) -> None:
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
        self, step_id: str, predicate: Callable[[Any], bool], downs: Tuple[Push, Push], end: End
    ):
        super().__init__(step_id, 1, end)
        self._predicate = predicate
        self._trues, self._falses = downs

    def push(self, batch: List[Any]) -> None:
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

    def push(self, batch: List[Any]) -> None:
        inspector, step_id = self._inspector, self.step_id
        epoch, worker = self._clock.epoch, self._clock.worker_index
        try:
            for item in batch:
                inspector(step_id, item, epoch, worker)
        except Exception as ex:
            raise user_error(step_id, "inspector", ex) from ex
        self._down(batch)


class StatefulNode(Node):
    """``stateful_batch``: per-key state, run by a Cython loop for the common builders.

    ``states`` holds, per key, the raw state (map and fold builders) or the
    logic object (any other builder). ``dirty`` maps each key changed since
    the last snapshot to whether it had state then; it is ``None`` when
    nothing is snapshotted.
    """

    def __init__(
        self,
        step_id: str,
        builder: Callable[[Any], Any],
        down: Push,
        end: End,
        track_changes: bool,
    ) -> None:
        super().__init__(step_id, 1, end)
        self._builder = builder
        self._down = down
        self.states: Dict[str, Any] = {}
        self.dirty: Optional[Dict[str, bool]] = {} if track_changes else None
        self._timers: Dict[str, datetime] = {}
        if isinstance(builder, MapBuilder):
            self.push = self._push_map  # type: ignore[method-assign]
            self.finish = self._finish_nothing  # type: ignore[method-assign]
        elif isinstance(builder, FoldBuilder):
            self.push = self._push_fold  # type: ignore[method-assign]
            self.finish = self._finish_fold  # type: ignore[method-assign]
        self._raw_states = isinstance(builder, (MapBuilder, FoldBuilder))
        self.notifies = not self._raw_states  # only logic objects ask for notifications

    # Fast paths: the raw state lives in ``states``.

    def _fast(self, what: str, loop: Callable[..., Any], *args: Any) -> Any:
        """Run a compiled state loop over this node's states, naming the user code that failed."""
        try:
            return loop(self.states, self.dirty, *args, self.step_id)
        except RoutingError:
            raise
        except state.BuilderError as ex:
            raise user_error(self.step_id, "builder", ex.__cause__) from ex.__cause__
        except Exception as ex:
            raise user_error(self.step_id, what, ex) from ex

    def _push_map(self, batch: List[Any]) -> None:
        spec = self._builder
        loop = state.flat_map_states if spec.flat else state.map_states
        out = self._fast("mapper", loop, batch, spec.mapper, spec.init)
        if out:
            self._down(out)

    def _push_fold(self, batch: List[Any]) -> None:
        spec = self._builder
        self._fast("folder", state.fold_states, batch, spec.folder, spec.init)

    def _finish_nothing(self) -> None:
        pass

    def _finish_fold(self) -> None:
        states = self.states
        out = [(key, states[key]) for key in sorted(states)]
        if self.dirty is not None:
            for key in states:
                self.dirty.setdefault(key, True)
        states.clear()
        if out:
            self._down(out)

    # General path: one logic object per key.

    def push(self, batch: List[Any]) -> None:
        groups = state.group_by_key(batch, self.step_id)
        out: List[Any] = []
        for key, values in groups.items():
            logic = self.states.get(key)
            if self.dirty is not None:
                self.dirty.setdefault(key, logic is not None)
            if logic is None:
                logic = self._call(key, "builder", self._builder, None)
            self._after(key, logic, self._call(key, "on_batch", logic.on_batch, values), out)
        if out:
            self._down(out)

    def _call(self, key: str, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as ex:
            raise FastflowRuntimeError(
                f"error calling `{what}` in step {self.step_id!r} for key {key!r}: "
                f"{type(ex).__name__}: {ex}"
            ) from ex

    def _after(self, key: str, logic: Any, result: Any, out: List[Any]) -> None:
        """Collect a callback's emits, then store or discard the logic and its timer."""
        emits, discard = self._call(key, "logic callback", _emits_and_flag, result)
        out.extend([(key, w) for w in emits])
        if self.dirty is not None:
            self.dirty.setdefault(key, True)
        if discard:
            self.states.pop(key, None)
            self._timers.pop(key, None)
            return
        self.states[key] = logic
        due = self._call(key, "notify_at", logic.notify_at)
        if due is None:
            self._timers.pop(key, None)
        else:
            self._timers[key] = due

    def next_notify(self) -> Optional[datetime]:
        """The earliest time a key asked to be notified at, if any."""
        return min(self._timers.values()) if self._timers else None

    def notify(self, now: datetime) -> None:
        """Call ``on_notify`` for every key whose time has come (in key order)."""
        due = sorted(key for key, at in self._timers.items() if at <= now)
        out: List[Any] = []
        for key in due:
            logic = self.states[key]
            self._after(key, logic, self._call(key, "on_notify", logic.on_notify), out)
        if out:
            self._down(out)

    def finish(self) -> None:
        out: List[Any] = []
        for key in sorted(self.states):
            logic = self.states[key]
            self._after(key, logic, self._call(key, "on_eof", logic.on_eof), out)
        self._timers.clear()
        if out:
            self._down(out)

    # Recovery.

    def changes(self) -> Tuple[Dict[str, Any], Dict[str, bool]]:
        """``(states, changed)``: the keys changed since the last call, and their states.

        A changed key without a state was discarded. Raw states are handed over as they
        are (the caller encodes them before the flow goes on); logic objects are asked
        for their ``snapshot()``.
        """
        changed, self.dirty = self.dirty, {}
        assert changed is not None
        if self._raw_states:
            return self.states, changed
        states = self.states
        values = {
            key: self._call(key, "snapshot", states[key].snapshot)
            for key in changed
            if key in states
        }
        return values, changed

    def restore(self, states: Dict[str, Any]) -> None:
        """Take back every key's state from a resume."""
        if self._raw_states:
            self.states.update(states)
            return
        for key, snapshot in states.items():
            logic = self._call(key, "builder", self._builder, snapshot)
            self.states[key] = logic
            due = self._call(key, "notify_at", logic.notify_at)
            if due is not None:
                self._timers[key] = due


def _emits_and_flag(result: Any) -> Tuple[List[Any], bool]:
    emits, discard = result
    return list(emits), bool(discard)


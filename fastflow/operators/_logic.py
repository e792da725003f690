"""Per-key logic of stateful operators, and the builders the engine runs in Cython.

:class:`StatefulBatchLogic` is the general contract of ``stateful_batch``. The
common operators (``stateful_map``, ``fold_final``, ...) instead pass a
:class:`MapBuilder` or :class:`FoldBuilder`: still valid builders of a logic,
but ones the engine recognises and runs as one Cython loop over the batch
with the raw state in a dict, instead of one logic object per key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Generic, TypeVar

from fastflow._contracts import FoldSpec, MapSpec

V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")

_EMPTY: tuple[Any, ...] = ()


class _KeyLogic(ABC, Generic[W, S]):
    """What the two per-key logic contracts share: the hooks besides the values."""

    RETAIN: bool = False
    DISCARD: bool = True

    def on_notify(self) -> tuple[Iterable[W], bool]:
        """Called once the time :meth:`notify_at` returned has passed."""
        return _EMPTY, self.RETAIN

    def on_eof(self) -> tuple[Iterable[W], bool]:
        """Called when the upstream has ended."""
        return _EMPTY, self.RETAIN

    def notify_at(self) -> datetime | None:
        """When to call :meth:`on_notify` next (UTC), or ``None``; asked after every callback."""
        return None

    @abstractmethod
    def snapshot(self) -> S:
        """Return this key's state; the builder gets it back on resume."""


class StatefulBatchLogic(_KeyLogic[W, S], Generic[V, W, S]):
    """What one key of a ``stateful_batch`` step does with its values.

    Every callback returns ``(values to emit, discard)``; ``DISCARD`` drops the
    key's state (a later value builds a new logic), ``RETAIN`` keeps it.
    """

    @abstractmethod
    def on_batch(self, values: list[V]) -> tuple[Iterable[W], bool]:
        """Handle this key's values of one batch, in arrival order."""


class StatefulLogic(_KeyLogic[W, S], Generic[V, W, S]):
    """Like :class:`StatefulBatchLogic`, one value at a time (for ``stateful``)."""

    @abstractmethod
    def on_item(self, value: V) -> tuple[Iterable[W], bool]:
        """Handle one value."""


class ItemsAsBatch(StatefulBatchLogic[V, W, S]):
    """Run a :class:`StatefulLogic` as a batch logic, rebuilding it after a discard."""

    def __init__(self, builder: Callable[[S | None], StatefulLogic[V, W, S]], resume: Any):
        self._builder = builder
        self._logic: StatefulLogic[V, W, S] | None = builder(resume)

    def on_batch(self, values: list[V]) -> tuple[Iterable[W], bool]:
        emits: list[W] = []
        for value in values:
            if self._logic is None:
                self._logic = self._builder(None)
            out, discard = self._logic.on_item(value)
            emits.extend(out)
            if discard:
                self._logic = None
        return emits, self._logic is None

    def _forward(self, name: str) -> tuple[Iterable[W], bool]:
        if self._logic is None:
            return _EMPTY, self.DISCARD
        out, discard = getattr(self._logic, name)()
        if discard:
            self._logic = None
        return out, self._logic is None

    def on_notify(self) -> tuple[Iterable[W], bool]:
        return self._forward("on_notify")

    def on_eof(self) -> tuple[Iterable[W], bool]:
        return self._forward("on_eof")

    def notify_at(self) -> datetime | None:
        return None if self._logic is None else self._logic.notify_at()

    def snapshot(self) -> S:
        assert self._logic is not None
        return self._logic.snapshot()


class MapBuilder(MapSpec):
    """Builds the logic of ``stateful_map``/``stateful_flat_map`` (see :class:`MapSpec`).

    The engine runs it as the spec's Cython loop. Called, it builds the equivalent
    logic object, so it stays a valid builder wherever it is not recognised
    (e.g. wrapped by another builder).
    """

    def __call__(self, resume_state: Any) -> StatefulBatchLogic[Any, Any, Any]:
        """Build the equivalent general logic (the engine uses the fast path instead)."""
        return _MapLogic(self, resume_state)


class _MapLogic(StatefulBatchLogic[Any, Any, Any]):
    def __init__(self, spec: MapBuilder, state: Any) -> None:
        self._spec = spec
        self._state = state

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
        emits: list[Any] = []
        for value in values:
            if self._state is None and self._spec.init is not None:
                # A new key, or one the mapper discarded earlier in this batch.
                self._state = self._spec.init()
            self._state, out = self._spec.mapper(self._state, value)
            if self._spec.flat:
                emits.extend(out)
            else:
                emits.append(out)
        return emits, self._state is None

    def snapshot(self) -> Any:
        return self._state


class FoldBuilder(FoldSpec):
    """Builds the logic of ``fold_final`` and friends (see :class:`FoldSpec`).

    The engine runs it as the spec's Cython loop. Called, it builds the equivalent
    logic object, so it stays a valid builder wherever it is not recognised
    (e.g. wrapped by another builder).
    """

    def __call__(self, resume_state: Any) -> StatefulBatchLogic[Any, Any, Any]:
        """Build the equivalent general logic (the engine uses the fast path instead)."""
        return _FoldLogic(self, resume_state)


class _FoldLogic(StatefulBatchLogic[Any, Any, Any]):
    def __init__(self, spec: FoldBuilder, state: Any) -> None:
        self._spec = spec
        self._state = state
        self._has_state = state is not None

    def on_batch(self, values: list[Any]) -> tuple[Iterable[Any], bool]:
        for value in values:
            if self._has_state:
                self._state = self._spec.folder(self._state, value)
            elif self._spec.init is None:
                self._state = value
            else:
                self._state = self._spec.folder(self._spec.init(), value)
            self._has_state = True
        return _EMPTY, self.RETAIN

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return (self._state,), self.DISCARD

    def snapshot(self) -> Any:
        return self._state

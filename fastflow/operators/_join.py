"""What ``join`` and ``join_window`` share: the modes and one key's values.

Both operators tag each side's values with the side's index, merge the sides,
and keep, per key (``join``) or per window (``join_window``), a
:class:`JoinState`: the values each side holds, updated and emitted by the
same rules.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, get_args

JoinInsertMode = Literal["first", "last", "product"]
"""How ``join`` stores a side's new value: keep the first, keep the last, or keep all."""

JoinEmitMode = Literal["complete", "final", "running"]
"""When ``join`` emits: once every side has a value, at end of input, or on every value."""

INSERT_MODES: tuple[str, ...] = get_args(JoinInsertMode)
EMIT_MODES: tuple[str, ...] = get_args(JoinEmitMode)


def check_join(operator: str, step_id: str, insert_mode: str, emit_mode: str, sides: int) -> None:
    """Refuse unknown modes and a join of no streams, when the flow is built."""
    if insert_mode not in INSERT_MODES:
        raise ValueError(f"unknown join insert mode {insert_mode!r}; use one of {INSERT_MODES}")
    if emit_mode not in EMIT_MODES:
        raise ValueError(f"unknown join emit mode {emit_mode!r}; use one of {EMIT_MODES}")
    if not sides:
        raise TypeError(f"{operator} step {step_id!r} needs at least one side")


class JoinState:
    """The values each side holds for one key (or window), and when to emit them.

    Snapshot layout: a list with one list of held values per side, in side
    order (``[[left values...], [right values...]]``).
    """

    def __init__(self, insert_mode: str, emit_mode: str, sides: list[list[Any]]) -> None:
        self.insert_mode = insert_mode
        self.emit_mode = emit_mode
        self.sides = sides

    @classmethod
    def build(
        cls, count: int, insert_mode: str, emit_mode: str, snapshot: list[list[Any]] | None
    ) -> JoinState:
        """A new state of ``count`` empty sides, or the one ``snapshot`` holds."""
        sides = [[] for _ in range(count)] if snapshot is None else [list(s) for s in snapshot]
        return cls(insert_mode, emit_mode, sides)

    def to_snapshot(self) -> list[list[Any]]:
        """The state in its on-disk layout (a copy)."""
        return [list(side) for side in self.sides]

    def joined(self) -> list[tuple[Any, ...]]:
        """One tuple per combination of the sides' values; an empty side gives ``None``."""
        return list(itertools.product(*(side or [None] for side in self.sides)))

    def is_empty(self) -> bool:
        """Whether no side holds a value."""
        return not any(self.sides)

    def insert(self, side: int, value: Any) -> list[tuple[Any, ...]]:
        """Take a side's value; return what the emit mode emits now."""
        held = self.sides[side]
        if self.insert_mode == "product":
            held.append(value)
        elif self.insert_mode == "last" or not held:
            held[:] = [value]
        return self._emits()

    def absorb(self, other: JoinState) -> list[tuple[Any, ...]]:
        """Take in the values of a merged-away window; return what the emit mode emits now.

        As Bytewax does, when both hold a value, ``"first"`` keeps ``other``'s
        and ``"last"`` keeps this one's.
        """
        pairs = zip(self.sides, other.sides, strict=True)
        if self.insert_mode == "product":
            self.sides = [mine + theirs for mine, theirs in pairs]
        elif self.insert_mode == "first":
            self.sides = [theirs or mine for mine, theirs in pairs]
        else:
            self.sides = [mine or theirs for mine, theirs in pairs]
        return self._emits()

    def final(self) -> list[tuple[Any, ...]]:
        """What to emit at the end (of input, or of the window)."""
        return self.joined() if self.emit_mode == "final" else []

    def _emits(self) -> list[tuple[Any, ...]]:
        if self.emit_mode == "running":
            return self.joined()
        if self.emit_mode == "complete" and all(self.sides):
            joined = self.joined()
            self.sides = [[] for _ in self.sides]
            return joined
        return []

"""Exceptions a run raises when user code or user state fails."""

from __future__ import annotations

__all__ = ["BytewaxRuntimeError", "FastflowRuntimeError"]


class FastflowRuntimeError(RuntimeError):
    """User code failed inside a step; the message names the step, ``__cause__`` is the error."""


BytewaxRuntimeError = FastflowRuntimeError
"""The same class under Bytewax's name, so ported ``except`` clauses keep working."""

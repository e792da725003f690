"""Exceptions a run raises when user code or user state fails."""

from __future__ import annotations

__all__ = ["BytewaxRuntimeError", "ConnectorError", "FastflowRuntimeError"]


class FastflowRuntimeError(RuntimeError):
    """User code failed inside a step; the message names the step, ``__cause__`` is the error."""


BytewaxRuntimeError = FastflowRuntimeError
"""The same class under Bytewax's name, so ported ``except`` clauses keep working."""


class ConnectorError(RuntimeError):
    """A connector could not reach or use the system outside (brokers down, a write refused).

    Its message says what failed and where, so ``fastflow run`` shows it as one line,
    without a traceback: the traceback would be the connector's code, not the user's.
    """

"""Every exception fastflow raises on purpose, under the names users catch.

Why one module: a user (or ``fastflow run``) catching a failure should not have to know
which private module raises it. The recovery store's errors are defined with the store
(``fastflow/_store/errors.py``, which needs nothing else) and re-exported here.
"""

from __future__ import annotations

from fastflow._store.errors import (
    BadImportError,
    CorruptPartitionError,
    FormatVersionError,
    InconsistentPartitionsError,
    MissingPartitionsError,
    NoPartitionsError,
    PartitionsExistError,
    RecoveryError,
    StateQueryError,
    StoreAccessError,
    StoreLockedError,
    StoreNotWritableError,
    StoreWriteError,
)

__all__ = [
    "BadImportError",
    "BytewaxRuntimeError",
    "ConnectorError",
    "CorruptPartitionError",
    "FastflowRuntimeError",
    "FormatVersionError",
    "InconsistentPartitionsError",
    "MissingPartitionsError",
    "NoPartitionsError",
    "PartitionsExistError",
    "ProcessFailed",
    "RayUnavailable",
    "RecoveryError",
    "StateQueryError",
    "StoreAccessError",
    "StoreLockedError",
    "StoreNotWritableError",
    "StoreWriteError",
    "TooManyProcesses",
]


class FastflowRuntimeError(RuntimeError):
    """User code failed inside a step; the message names the step, ``__cause__`` is the error."""


BytewaxRuntimeError = FastflowRuntimeError
"""The same class under Bytewax's name, so ported ``except`` clauses keep working."""


class ProcessFailed(RuntimeError):
    """A process of a ``-p N`` run raised or died; the others were stopped."""

    def __init__(
        self, message: str, traceback_text: str | None = None, *, died: bool = False
    ) -> None:
        super().__init__(message)
        self.traceback_text = traceback_text
        """The failed process's traceback, if it raised (printed once by ``fastflow run``)."""
        self.died = died
        """Whether the process died (killed, its node lost), rather than failed on its own."""


class RayUnavailable(RuntimeError):
    """``--ray`` cannot run here: Ray is missing, unreachable, or too small for the run."""


class TooManyProcesses(ValueError):
    """``-p`` asks for more processes than the open-file limit lets this machine fork."""


class ConnectorError(RuntimeError):
    """A connector could not reach or use the system outside (brokers down, a write refused).

    Its message says what failed and where, so ``fastflow run`` shows it as one line,
    without a traceback: the traceback would be the connector's code, not the user's.
    """

"""What the engine tells whoever observes a run (metrics, the API, tracing): the hooks.

The engine must not import the layer that observes it, so it calls the methods of
the installed :class:`RunHooks` (by default, which does nothing at all); ``fastflow
run --api`` and tracing install their own (``fastflow/_observe``). The hooks are
process-wide like ``logging``'s configuration: a forked worker process inherits them,
and a Ray actor is handed :meth:`RunHooks.for_child` and installs it.

Nothing here is called per item or per batch: per-batch counting is the nodes' own
(``meter.py``), read by the observer when it is asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


class RunHooks:
    """The events of a run; every method does nothing here, an observer overrides them."""

    @property
    def metered(self) -> bool:
        """Whether the workers count and time their batches (``meter.py``): only if read."""
        return False

    def for_child(self) -> RunHooks:
        """What a worker process on another machine (a Ray actor) installs; picklable."""
        return self

    def in_child(self, process: int, control: Connection) -> None:
        """Now in worker process ``process`` of a run; ``control`` leads to the coordinator."""

    def workers_built(self, workers: Any, links: Iterable[Any] = ()) -> None:
        """The process's ``Workers`` are built (their nodes carry the meters).

        Typed ``Any``: this leaf module must not import the runtime that calls it.

        ``links`` are its ``wire.Link``s to the other processes.
        """

    def leaving(self) -> None:
        """In a worker process: it is about to exit (send what is buffered)."""

    def report(self) -> Any:
        """In a worker process: what to send the coordinator now (None: nothing)."""
        return None

    def reported(self, process: int, report: Any) -> None:
        """In the coordinator: worker process ``process`` sent ``report``."""

    def resumed(self, epoch: int, keys: int, seconds: float) -> None:
        """The run resumes at ``epoch`` with ``keys`` keys of state, loaded in ``seconds``."""

    def epoch_started(self, epoch: int) -> None:
        """The run (every worker of every process) is now in ``epoch``."""

    def encoded(self, epoch: int, seconds: float) -> None:
        """``epoch``'s changes were encoded (the consistent cut) in ``seconds``."""

    def committed(self, epoch: int, seconds: float, size: int, keys: int) -> None:
        """``epoch`` is durable: ``size`` bytes, ``keys`` keys, written in ``seconds``."""

    def restarted(self, restarts: int, reason: str) -> None:
        """A Ray run restarts from the store for the ``restarts``-th time."""


_installed = RunHooks()


def current() -> RunHooks:
    """The hooks of this process's run."""
    return _installed


def install(hooks: RunHooks) -> RunHooks:
    """Make ``hooks`` this process's; return the ones installed before (to put back)."""
    global _installed
    previous, _installed = _installed, hooks
    return previous

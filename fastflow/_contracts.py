"""What the operators hand the runtime: fast-path builders, and the ``ttl`` they accept.

Both layers import this leaf module and nothing else of each other: the runtime never
imports the operators, the operators never import the runtime.

Fast paths (``MapSpec``, ``FoldSpec``): builders the engine runs as one compiled loop.
A ``stateful_batch`` step normally builds one logic object per key and calls
it per batch. A builder that is also a :class:`MapSpec` or a :class:`FoldSpec`
tells the engine what the logic would do in plain data (the user's function
and how a state starts), so the engine can instead run a loop of
``cext/state.pyx`` over the batch with the raw state in a dict.

The specs live here, not beside the operators, because the engine picks its
nodes by them and must not import the operator layer; the operators subclass
them into full builders (``fastflow/operators/_logic.py``), which must give
the same per-key outputs, states and snapshots when run as logic objects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any


class MapSpec:
    """``stateful_map``/``stateful_flat_map``: run by ``state.map_states``/``flat_map_states``.

    ``mapper(state_or_None, value)`` returns ``(new_state, emit)`` (or, when
    ``flat``, ``(new_state, iterable of emits)``); a new state of ``None``
    discards the key. ``init()``, when given, makes a new key's first state.
    With a ``ttl``, keys no item reached for that long are discarded
    (``ttl.py``; the node is then an ``ExpiringMapStateNode``).
    """

    def __init__(
        self, mapper: Callable[[Any, Any], tuple[Any, Any]], init: Callable[[], Any] | None,
        flat: bool, ttl: timedelta | None = None,
    ) -> None:
        self.mapper = mapper
        self.init = init
        self.flat = flat
        self.ttl = ttl


class FoldSpec:
    """``fold_final`` and friends: run by ``state.fold_states``.

    Values fold into the state with ``folder(state, value)``, starting from
    ``init()`` (or from a key's first value when ``init`` is ``None``); the
    state is emitted, and the key discarded, when the upstream ends.
    """

    def __init__(self, folder: Callable[[Any, Any], Any], init: Callable[[], Any] | None):
        self.folder = folder
        self.init = init


class ExpiringBuilder:
    """A general ``stateful_batch`` builder whose keys expire after ``ttl`` without an item.

    Not a fast path: it only tells the engine to run ``builder``'s logic objects in an
    ``ExpiringLogicStateNode`` (see ``ttl.py``). Called, it is ``builder``, so it stays a
    valid builder wherever it is not recognised.
    """

    def __init__(self, builder: Callable[[Any], Any], ttl: timedelta) -> None:
        self.builder = builder
        self.ttl = ttl

    def __call__(self, resume_state: Any) -> Any:
        """Build the logic of one key, as ``builder`` does."""
        return self.builder(resume_state)


def check_ttl(step_id: str, ttl: Any) -> timedelta | None:
    """Return ``ttl`` if it is ``None`` or a positive ``timedelta``; refuse anything else."""
    if ttl is None:
        return None
    if not isinstance(ttl, timedelta):
        raise TypeError(f"ttl of step {step_id!r} must be a datetime.timedelta or None; got "
                        f"{type(ttl).__name__}")
    if ttl <= timedelta(0):
        raise ValueError(f"ttl of step {step_id!r} must be positive; got {ttl}")
    return ttl

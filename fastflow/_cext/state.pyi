from collections.abc import Callable
from typing import Any

class BuilderError(Exception): ...

class ChangeTracker:
    def __init__(self) -> None: ...
    def mark(self, key: str, had: bool) -> None: ...
    def take(self, states: dict[str, Any]) -> dict[str, bool]: ...

def map_states(
    states: dict[str, Any],
    dirty: ChangeTracker | None,
    batch: list[Any],
    mapper: Callable[[Any, Any], Any],
    builder: Callable[[], Any] | None,
    step_id: str,
) -> list[Any]: ...
def flat_map_states(
    states: dict[str, Any],
    dirty: ChangeTracker | None,
    batch: list[Any],
    mapper: Callable[[Any, Any], Any],
    builder: Callable[[], Any] | None,
    step_id: str,
) -> list[Any]: ...
def fold_states(
    states: dict[str, Any],
    dirty: ChangeTracker | None,
    batch: list[Any],
    folder: Callable[[Any, Any], Any],
    builder: Callable[[], Any] | None,
    step_id: str,
) -> None: ...
def group_by_key(batch: list[Any], step_id: str) -> dict[str, list[Any]]: ...

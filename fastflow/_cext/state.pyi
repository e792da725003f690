from typing import Any, Callable, Dict, List, Optional

class BuilderError(Exception): ...

class ChangeTracker:
    def __init__(self) -> None: ...
    def mark(self, key: str, had: bool) -> None: ...
    def take(self, states: Dict[str, Any]) -> Dict[str, bool]: ...

def map_states(
    states: Dict[str, Any],
    dirty: Optional[ChangeTracker],
    batch: List[Any],
    mapper: Callable[[Any, Any], Any],
    builder: Optional[Callable[[], Any]],
    step_id: str,
) -> List[Any]: ...
def flat_map_states(
    states: Dict[str, Any],
    dirty: Optional[ChangeTracker],
    batch: List[Any],
    mapper: Callable[[Any, Any], Any],
    builder: Optional[Callable[[], Any]],
    step_id: str,
) -> List[Any]: ...
def fold_states(
    states: Dict[str, Any],
    dirty: Optional[ChangeTracker],
    batch: List[Any],
    folder: Callable[[Any, Any], Any],
    builder: Optional[Callable[[], Any]],
    step_id: str,
) -> None: ...
def group_by_key(batch: List[Any], step_id: str) -> Dict[str, List[Any]]: ...

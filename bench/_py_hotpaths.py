"""Plain-Python versions of the compiled hot paths, to prove each one pays for itself.

Same algorithms, same checks and same results as ``fastflow._cext.routing``,
``.state`` and ``.ops``; ``test_bench_cext.py`` asserts they agree, then times
both.
"""

from typing import Any, Callable, Dict, List, Optional, Set

_M = (1 << 64) - 1


def stable_hash(key: str) -> int:
    h = 0xCBF29CE484222325
    for byte in key.encode():
        h = ((h ^ byte) * 0x100000001B3) & _M
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _M
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _M
    return h ^ (h >> 33)


def _key_of(item: Any, step_id: str) -> str:
    if type(item) is not tuple or len(item) != 2 or not isinstance(item[0], str):
        raise TypeError(f"step {step_id!r} requires `(key, value)` 2-tuples; got {item!r}")
    return item[0]


def split_by_worker(batch: List[Any], worker_count: int, step_id: str) -> List[List[Any]]:
    buckets: List[List[Any]] = [[] for _ in range(worker_count)]
    for item in batch:
        buckets[stable_hash(_key_of(item, step_id)) % worker_count].append(item)
    return buckets


def map_states(
    states: Dict[str, Any],
    dirty: Optional[Set[str]],
    batch: List[Any],
    mapper: Callable[[Any, Any], Any],
    builder: Optional[Callable[[], Any]],
    step_id: str,
) -> List[Any]:
    out = []
    for item in batch:
        key = _key_of(item, step_id)
        if key in states:
            state = states[key]
        else:
            state = None if builder is None else builder()
        res = mapper(state, item[1])
        if type(res) is not tuple or len(res) != 2:
            raise TypeError(f"mapper of step {step_id!r} must return a 2-tuple; got {res!r}")
        state, emit = res
        if state is None:
            states.pop(key, None)
        else:
            states[key] = state
        if dirty is not None:
            dirty.add(key)
        out.append((key, emit))
    return out


def fold_states(
    states: Dict[str, Any],
    dirty: Optional[Set[str]],
    batch: List[Any],
    folder: Callable[[Any, Any], Any],
    builder: Optional[Callable[[], Any]],
    step_id: str,
) -> None:
    for item in batch:
        key = _key_of(item, step_id)
        if key in states:
            states[key] = folder(states[key], item[1])
        elif builder is None:
            states[key] = item[1]
        else:
            states[key] = folder(builder(), item[1])
        if dirty is not None:
            dirty.add(key)


def map_items(mapper: Callable[[Any], Any], batch: List[Any]) -> List[Any]:
    return [mapper(x) for x in batch]


def filter_items(predicate: Callable[[Any], Any], batch: List[Any], step_id: str) -> List[Any]:
    out = []
    for item in batch:
        keep = predicate(item)
        if keep is True:
            out.append(item)
        elif keep is not False:
            raise TypeError(f"predicate of step {step_id!r} must return a bool; got {keep!r}")
    return out


def flat_map_items(mapper: Callable[[Any], Any], batch: List[Any]) -> List[Any]:
    out: List[Any] = []
    for item in batch:
        out.extend(mapper(item))
    return out

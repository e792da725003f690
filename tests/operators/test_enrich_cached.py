"""``enrich_cached``: one getter call per key, TTL expiry on a test clock, ``remove``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, List, Optional, Tuple

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSink, TestingSource, TimeTestingGetter, run_main


def _enrich(
    ttl: Optional[timedelta], items: List[Tuple[str, float]]
) -> Tuple[List[Any], List[str]]:
    """Run enrich_cached on (key, seconds to advance the clock after the lookup) items."""
    clock = TimeTestingGetter(datetime(2024, 1, 1, tzinfo=timezone.utc))
    calls: List[str] = []

    def getter(key: str) -> str:
        calls.append(key)
        return f"{key}{len(calls)}"

    def mapper(cache: op.TTLCache, item: Tuple[str, float]) -> str:
        key, seconds = item
        value = cache.get(key)
        clock.advance(timedelta(seconds=seconds))
        return value

    extra = {} if ttl is None else {"ttl": ttl}
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(items))
    s = op.enrich_cached("e", s, getter, mapper, _now_getter=clock.get, **extra)
    op.output("out", s, TestingSink(out))
    run_main(flow)
    return out, calls


def test_enrich_cached_calls_the_getter_once_per_key_by_default() -> None:
    out, calls = _enrich(None, [("a", 0), ("b", 1e6), ("a", 1e6), ("a", 0)])
    assert out == ["a1", "b2", "a1", "a1"]
    assert calls == ["a", "b"]


def test_enrich_cached_refetches_once_older_than_ttl() -> None:
    # Like Bytewax: a value exactly ttl old is still used; older is fetched again.
    out, calls = _enrich(timedelta(seconds=10), [("a", 5), ("a", 5), ("a", 0.5), ("a", 0)])
    assert out == ["a1", "a1", "a1", "a2"]
    assert calls == ["a", "a"]


def test_enrich_cached_ttl_zero_with_a_still_clock_hits_the_cache() -> None:
    out, calls = _enrich(timedelta(0), [("a", 0), ("a", 0), ("b", 1), ("a", 0)])
    assert out == ["a1", "a1", "b2", "a3"]
    assert calls == ["a", "b", "a"]


def test_enrich_cached_remove_forces_a_new_lookup() -> None:
    calls: List[str] = []

    def getter(key: str) -> int:
        calls.append(key)
        return len(calls)

    def mapper(cache: op.TTLCache, key: str) -> int:
        value = cache.get(key)
        if key == "drop":
            cache.remove(key)
        return value

    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource(["a", "drop", "a", "drop"]))
    op.output("out", op.enrich_cached("e", s, getter, mapper), TestingSink(out))
    run_main(flow)
    assert out == [1, 2, 1, 3]
    assert calls == ["a", "drop", "drop"]

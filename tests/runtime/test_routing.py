"""The compiled routing module: the stable key hash, batch splitting and keyed-item checks."""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any, Callable, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastflow.operators as op
from fastflow._cext.routing import (
    RoutingError,
    check_keyed,
    split_by_worker,
    split_keys,
    stable_hash,
)
from fastflow.dataflow import Dataflow, Stream
from fastflow.errors import FastflowRuntimeError
from fastflow.testing import TestingSink, TestingSource, run_main

_MASK = (1 << 64) - 1


def reference_hash(key: str) -> int:
    """The definition in cext/routing.pyx: FNV-1a 64 over UTF-8, then murmur3's fmix64."""
    h = 0xCBF29CE484222325
    for byte in key.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & _MASK
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK
    h ^= h >> 33
    return h


# Fixed values: the hash is part of the on-disk format and must never change.
KNOWN = {
    "": 17280346270528514342,
    "a": 9413272369427828315,
    "ALL": 2946109568322015689,
    "héllo": 13944623458183816781,
    "日本語": 16218896763332251880,
    "🦀": 10667599283631105574,
    "a" * 100: 6370357161811391768,
}


@pytest.mark.parametrize(("key", "value"), KNOWN.items(), ids=[repr(k) for k in KNOWN])
def test_stable_hash_known_values(key: str, value: int) -> None:
    assert stable_hash(key) == value
    assert reference_hash(key) == value


@given(st.text())
def test_stable_hash_matches_the_reference(key: str) -> None:
    assert stable_hash(key) == reference_hash(key)


@given(st.text(st.characters(min_codepoint=0x80, exclude_categories=("Cs",)), min_size=1))
def test_stable_hash_matches_the_reference_on_non_ascii(key: str) -> None:
    assert stable_hash(key) == reference_hash(key)


@given(st.text())
def test_stable_hash_is_an_unsigned_64_bit_int(key: str) -> None:
    value = stable_hash(key)
    assert type(value) is int
    assert 0 <= value <= _MASK


def test_stable_hash_of_a_str_subclass_uses_its_text() -> None:
    class Name(str):
        pass

    class Color(str, enum.Enum):
        RED = "ALL"

    assert stable_hash(Name("ALL")) == KNOWN["ALL"]
    assert stable_hash(Color.RED) == KNOWN["ALL"]
    assert split_by_worker([(Color.RED, 1)], 3, "s")[KNOWN["ALL"] % 3] == [(Color.RED, 1)]


@pytest.mark.parametrize("bad", [b"a", 1, None, ("a",)])
def test_stable_hash_needs_a_str(bad: Any) -> None:
    with pytest.raises(TypeError):
        stable_hash(bad)


def test_stable_hash_of_a_lone_surrogate_is_an_encode_error() -> None:
    with pytest.raises(UnicodeEncodeError):
        stable_hash("\ud800")


_HASH_SCRIPT = """
import json, sys
from fastflow._cext.routing import stable_hash
keys = json.loads(sys.stdin.read())
print(json.dumps([[stable_hash(k), hash(k)] for k in keys]))
"""


def _hashes_in_subprocess(keys: List[str], seed: str) -> List[List[int]]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", _HASH_SCRIPT],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


def test_stable_hash_is_the_same_in_processes_with_different_hash_seeds() -> None:
    keys = [*KNOWN, "user-1", "user-2", "ключ", "κλειδί", "鍵", "🔑🔑"]
    first = _hashes_in_subprocess(keys, "1")
    second = _hashes_in_subprocess(keys, "2")
    assert [s for s, _ in first] == [s for s, _ in second] == [reference_hash(k) for k in keys]
    # Python's own str hash does differ between the two processes.
    assert [h for _, h in first] != [h for _, h in second]


# split_by_worker.


def test_split_by_worker_with_one_worker_keeps_the_batch() -> None:
    batch = [("a", 1), ("b", 2), ("a", 3)]
    assert split_by_worker(batch, 1, "s") == [batch]


def test_split_by_worker_of_an_empty_batch() -> None:
    assert split_by_worker([], 3, "s") == [[], [], []]


def test_split_by_worker_uses_the_stable_hash() -> None:
    batch = [(k, i) for i, k in enumerate(KNOWN)]
    buckets = split_by_worker(batch, 4, "s")
    for key, i in batch:
        assert (key, i) in buckets[KNOWN[key] % 4]


def test_split_by_worker_keeps_the_items_themselves() -> None:
    item = ("a", [1, 2])
    [bucket] = split_by_worker([item], 1, "s")
    assert bucket[0] is item


pairs = st.lists(st.tuples(st.text(max_size=8), st.integers()), max_size=50)


@given(pairs, st.integers(min_value=1, max_value=9))
def test_split_by_worker_partitions_by_key(batch: List[Any], workers: int) -> None:
    buckets = split_by_worker(batch, workers, "s")
    assert len(buckets) == workers
    for index, bucket in enumerate(buckets):
        # Every item is in the bucket of its key's hash, in input order.
        assert all(reference_hash(key) % workers == index for key, _ in bucket)
        assert bucket == [item for item in batch if reference_hash(item[0]) % workers == index]
    assert sorted(x for b in buckets for x in b) == sorted(batch)


@pytest.mark.parametrize("workers", [0, -1])
def test_split_by_worker_needs_a_worker(workers: int) -> None:
    with pytest.raises(ValueError, match="worker_count"):
        split_by_worker([("a", 1)], workers, "s")


BAD_ITEMS = [1, "ab", ("a",), ("a", 1, 2), ["a", 1], (1, 1), (None, 1), (b"a", 1)]


@pytest.mark.parametrize("bad", BAD_ITEMS, ids=repr)
def test_split_by_worker_rejects_items_that_are_not_str_keyed_pairs(bad: Any) -> None:
    with pytest.raises(RoutingError) as info:
        split_by_worker([("ok", 1), bad], 2, "df.step")
    error = info.value
    # API surface: callers (and Bytewax code) catch these as TypeError.
    assert isinstance(error, TypeError)
    assert (error.step_id, error.item) == ("df.step", bad)
    assert str(error) == (
        f"step 'df.step' requires `(key, value)` 2-tuples with a `str` key as input; "
        f"got {bad!r} of type {type(bad).__name__!r}"
    )


@given(st.lists(st.text(max_size=8), max_size=30), st.integers(min_value=1, max_value=9))
def test_split_keys_gives_each_keys_bucket(keys: List[str], count: int) -> None:
    assert split_keys(keys, count) == [reference_hash(k) % count for k in keys]


def test_check_keyed() -> None:
    check_keyed([], "s")
    check_keyed([("a", 1), ("", None)], "s")
    with pytest.raises(RoutingError, match=r"step 's' requires.*got \['a', 1\]"):
        check_keyed([("a", 1), ["a", 1]], "s")


# Keyed steps fed bad items: a TypeError naming the step and the item.

Build = Callable[[Stream[Any]], Stream[Any]]


class _Echo(op.StatefulLogic):
    def on_item(self, value: Any) -> Any:
        return [value], self.RETAIN

    def snapshot(self) -> None:
        return None


KEYED_STEPS: List[tuple[str, Build, str]] = [
    (
        "stateful_map",
        lambda s: op.stateful_map("k", s, lambda st, v: (st, v)),
        "df.k.stateful_batch",
    ),
    (
        "stateful_flat_map",
        lambda s: op.stateful_flat_map("k", s, lambda st, v: (st, [v])),
        "df.k.stateful_batch",
    ),
    (
        "fold_final",
        lambda s: op.fold_final("k", s, list, lambda a, v: [*a, v]),
        "df.k.stateful_batch",
    ),
    ("reduce_final", lambda s: op.reduce_final("k", s, max), "df.k.stateful_batch"),
    ("max_final", lambda s: op.max_final("k", s), "df.k.reduce_final.stateful_batch"),
    ("stateful", lambda s: op.stateful("k", s, lambda _r: _Echo()), "df.k.stateful_batch"),
    (
        "collect",
        lambda s: op.collect("k", s, timedelta(seconds=1), 10),
        "df.k.stateful_batch",
    ),
]


@pytest.mark.parametrize("bad", [7, ("a", 1, 2), ["a", 1], (1, "v")], ids=repr)
@pytest.mark.parametrize(("name", "build", "step"), KEYED_STEPS, ids=[k[0] for k in KEYED_STEPS])
def test_keyed_step_fed_a_bad_item_raises_type_error(
    run_items: Any, name: str, build: Build, step: str, bad: Any
) -> None:
    with pytest.raises(TypeError) as info:
        run_items([("ok", 1), bad], build)
    error = info.value
    # The exception classes are API surface: a bad item is the user's input,
    # not a failure inside their code, so it is not wrapped in FastflowRuntimeError.
    assert not isinstance(error, FastflowRuntimeError)
    assert isinstance(error, RoutingError)
    assert (error.step_id, error.item) == (step, bad)
    assert f"step {step!r}" in str(error) and repr(bad) in str(error)


def test_keyed_error_stops_before_any_later_item() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1), 2, ("a", 3)]))
    op.output("out", op.stateful_map("sm", s, lambda st, v: (v, v)), TestingSink(out))
    with pytest.raises(RoutingError):
        run_main(flow)
    assert out == [("a", 1)]


def _join_flow(right: List[Any]) -> Dataflow:
    flow = Dataflow("df")
    left = op.input("l", flow, TestingSource([("a", 1)]))
    op.output("out", op.join("j", left, op.input("r", flow, TestingSource(right))), TestingSink([]))
    return flow


def test_join_side_fed_a_non_pair_names_the_side() -> None:
    with pytest.raises(FastflowRuntimeError, match=r"step 'df\.j\.add_side_1") as info:
        run_main(_join_flow([3]))
    assert isinstance(info.value.__cause__, TypeError)
    assert "got 3 of type 'int'" in str(info.value.__cause__)


def test_join_side_fed_a_non_str_key_raises_type_error() -> None:
    with pytest.raises(RoutingError, match=r"step 'df\.j\.stateful_batch'.*got \(1, \(1, 'v'\)\)"):
        run_main(_join_flow([(1, "v")]))

"""Errors common to every keyed stateful operator.

Input that is not a ``(str key, value)`` pair is a ``TypeError`` naming the step
and the bad item; an exception from user code (mapper, folder, builder, logic
hook) becomes a ``FastflowRuntimeError`` naming the step, with the original as
its ``__cause__``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, List, Tuple

import pytest
from _helpers import Batches, Build, RaisingLogic, Recorder, Traced, add, boom, running_sum

import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.testing import TestingSink, TestingSource, run_main

KEYED_STEPS: List[Tuple[str, Build]] = [
    ("stateful_map", lambda s: op.stateful_map("x", s, running_sum)),
    ("stateful_map_builder", lambda s: op.stateful_map("x", s, lambda: 0, running_sum)),
    ("stateful_flat_map", lambda s: op.stateful_flat_map("x", s, lambda st, v: (st, [v]))),
    ("fold_final", lambda s: op.fold_final("x", s, lambda: 0, add)),
    ("reduce_final", lambda s: op.reduce_final("x", s, add)),
    ("max_final", lambda s: op.max_final("x", s)),
    ("min_final", lambda s: op.min_final("x", s)),
    ("collect", lambda s: op.collect("x", s, timedelta(seconds=60), 3)),
    ("stateful", lambda s: op.stateful("x", s, lambda r: Traced(Recorder(), r))),
    ("stateful_batch", lambda s: op.stateful_batch("x", s, lambda r: Batches(Recorder(), r))),
]


KEYED_IDS = [name for name, _build in KEYED_STEPS]


@pytest.mark.parametrize(
    "bad",
    [1, "ab", ("a", 1, 2), ["a", 1], (1, 1), (None, 1), (b"a", 1)],
    ids=["int", "str", "3-tuple", "list", "int-key", "none-key", "bytes-key"],
)
@pytest.mark.parametrize(("name", "build"), KEYED_STEPS, ids=KEYED_IDS)
def test_keyed_step_rejects_what_is_not_a_str_keyed_pair(
    run_items: Any, name: str, build: Build, bad: Any
) -> None:
    out: List[Any] = []
    with pytest.raises(TypeError) as info:
        out = run_items([bad], build)
    message = str(info.value)
    assert "'df.x" in message
    assert repr(bad) in message
    assert not isinstance(info.value, FastflowRuntimeError)
    assert out == []


def test_keyed_error_comes_after_the_good_items_were_emitted() -> None:
    out: List[Any] = []
    flow = Dataflow("df")
    s = op.input("inp", flow, TestingSource([("a", 1), ("a", 2), 3]))
    op.output("out", op.stateful_map("x", s, running_sum), TestingSink(out))
    with pytest.raises(TypeError, match="got 3"):
        run_main(flow)
    assert out == [("a", (None, 1)), ("a", (1, 2))]


RAISING: List[Tuple[str, Build, List[Any]]] = [
    ("stateful_map", lambda s: op.stateful_map("x", s, boom), [("a", 1)]),
    ("stateful_map builder", lambda s: op.stateful_map("x", s, boom, running_sum), [("a", 1)]),
    ("stateful_flat_map", lambda s: op.stateful_flat_map("x", s, boom), [("a", 1)]),
    ("fold_final folder", lambda s: op.fold_final("x", s, lambda: 0, boom), [("a", 1)]),
    ("fold_final builder", lambda s: op.fold_final("x", s, boom, add), [("a", 1)]),
    ("reduce_final", lambda s: op.reduce_final("x", s, boom), [("a", 1), ("a", 2)]),
    ("max_final by", lambda s: op.max_final("x", s, by=boom), [("a", 1), ("a", 2)]),
    ("count_final key", lambda s: op.count_final("x", s, boom), ["a"]),
    ("stateful builder", lambda s: op.stateful("x", s, boom), [("a", 1)]),
    ("stateful_batch builder", lambda s: op.stateful_batch("x", s, boom), [("a", 1)]),
    ("on_item", lambda s: op.stateful("x", s, RaisingLogic), [("a", "on_item")]),
    ("on_eof", lambda s: op.stateful("x", s, RaisingLogic), [("a", "on_eof")]),
    ("notify_at", lambda s: op.stateful("x", s, RaisingLogic), [("a", "notify_at")]),
    ("on_notify", lambda s: op.stateful("x", s, RaisingLogic), [("a", "on_notify")]),
    (
        "enrich_cached getter",
        lambda s: op.enrich_cached("x", s, boom, lambda cache, v: cache.get(v)),
        ["a"],
    ),
]


@pytest.mark.parametrize(("name", "build", "items"), RAISING, ids=[r[0] for r in RAISING])
def test_raising_user_code_names_the_step(
    run_items: Any, name: str, build: Build, items: List[Any]
) -> None:
    with pytest.raises(FastflowRuntimeError) as info:
        run_items(items, build)
    assert "'df.x" in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, ZeroDivisionError)
    assert str(cause) == "boom"


@pytest.mark.parametrize(
    "build",
    [
        lambda s: op.stateful_map("x", s, boom, running_sum),
        lambda s: op.fold_final("x", s, boom, add),
    ],
    ids=["stateful_map", "fold_final"],
)
def test_raising_builder_is_named_as_the_builder(run_items: Any, build: Build) -> None:
    with pytest.raises(FastflowRuntimeError, match="`builder`"):
        run_items([("a", 1)], build)

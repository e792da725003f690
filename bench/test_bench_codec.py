"""Snapshot codec: compiled (fastflow._cext.codec) vs plain Python (bench/_py_codec.py).

Run: ``pytest bench/test_bench_codec.py --benchmark-group-by=group``; each
group holds the two implementations on one state, so the table's ratio
column is the speed-up.
"""

import random
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("pytest_benchmark")

import _py_codec  # noqa: E402  (bench/ is on sys.path under pytest's rootdir import)

from fastflow._cext import codec  # noqa: E402

_rng = random.Random(1234)
_t0 = datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc)

# Typical per-key states of a stream step.
STATES = {
    "int": 1234567,
    "small_dict": {"count": 17, "total": 1234.5, "last_user": "user-42", "open": True},
    "floats_1000": [_rng.random() * 100 for _ in range(1000)],
    "tuples_200": [(i, f"user-{i % 17}", i * 0.25) for i in range(200)],
    "window_mix": {
        "start": _t0,
        "events": [(_t0 + timedelta(seconds=i), _rng.random()) for i in range(50)],
        "users": {f"user-{i}" for i in range(20)},
        "counts": {i: i * i for i in range(20)},
    },
}

IMPLS = {"cython": codec, "python": _py_codec}


@pytest.mark.parametrize("state", STATES)
def test_implementations_agree(state):
    value = STATES[state]
    blob = codec.encode(value)
    assert _py_codec.encode(value) == blob
    assert _py_codec.decode(blob) == codec.decode(blob) == value


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("state", STATES)
def test_encode(benchmark, state, impl):
    benchmark.group = f"encode {state}"
    value = STATES[state]
    blob = benchmark(IMPLS[impl].encode, value)
    assert blob == codec.encode(value)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("state", STATES)
def test_decode(benchmark, state, impl):
    benchmark.group = f"decode {state}"
    blob = codec.encode(STATES[state])
    assert benchmark(IMPLS[impl].decode, blob) == STATES[state]

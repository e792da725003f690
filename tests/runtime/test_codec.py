"""Tests for the snapshot codec (fastflow._cext.codec); spec in docs/snapshot-format.md."""

from __future__ import annotations

import collections
import dataclasses
import enum
import fractions
import math
import pickle
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastflow._cext import codec

# hypothesis reprs the recursive strategies below when it explains a failure
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

encode = codec.encode
decode = codec.decode

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


# --------------------------------------------------------------------------
# module-level types (dataclasses must be importable to round-trip by field)
# --------------------------------------------------------------------------


@dataclass
class Point:
    x: int
    y: float


@dataclass(frozen=True)
class Frozen:
    name: str
    tags: frozenset = frozenset()


@dataclass(slots=True)
class Slotted:
    a: Any
    b: Any = None


@dataclass
class WithInitFalse:
    a: Any
    cache: dict = field(init=False, default_factory=dict)


@dataclass
class Evolved:
    a: int
    b: int = 5
    c: list = field(default_factory=list)


@dataclass
class WithGetstate:
    a: int

    def __getstate__(self):
        return {"a": self.a * 10}

    def __setstate__(self, state):
        self.a = state["a"] // 10


Pair = collections.namedtuple("Pair", "left right")


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


class Holder:
    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is Holder and other.value == self.value

    def __repr__(self):
        return f"Holder({self.value!r})"


# --------------------------------------------------------------------------
# a hashable, type-revealing canonical form for deep comparisons
# --------------------------------------------------------------------------


def _tz(tz):
    if tz is None:
        return None
    if type(tz) is ZoneInfo:
        return ("zoneinfo", tz.key)
    return (type(tz).__qualname__, repr(tz))


def canon(x):
    """Map ``x`` to a hashable value that differs whenever a type or value differs.

    Floats compare by repr (so -0.0 != 0.0 and nan == nan), containers compare
    element types recursively, dicts compare in insertion order.
    """
    t = type(x)
    if t is float:
        return ("float", "nan" if math.isnan(x) else repr(x))
    if t in (list, tuple):
        return (t.__name__, tuple(canon(i) for i in x))
    if t in (set, frozenset):
        return (t.__name__, len(x), frozenset(canon(i) for i in x))
    if t is dict:
        return ("dict", tuple((canon(k), canon(v)) for k, v in x.items()))
    if t is Decimal:
        return ("Decimal", str(x))
    if t is datetime:
        return ("datetime", x.replace(tzinfo=None).isoformat(), _tz(x.tzinfo), x.fold)
    if t is time:
        return ("time", x.replace(tzinfo=None).isoformat(), _tz(x.tzinfo), x.fold)
    if t in (type(None), bool, int, str, bytes, date, timedelta):
        return (t.__name__, x)
    if dataclasses.is_dataclass(x):
        fields = tuple((f.name, canon(getattr(x, f.name))) for f in dataclasses.fields(x))
        extra = tuple(sorted((k, canon(v)) for k, v in getattr(x, "__dict__", {}).items()))
        return ("dataclass", t, fields, extra)
    if isinstance(x, tuple):  # namedtuple
        return ("tuple-subclass", t, tuple(canon(i) for i in x))
    if isinstance(x, dict):  # OrderedDict, defaultdict
        return ("dict-subclass", t, tuple((canon(k), canon(v)) for k, v in x.items()))
    if t is Holder:
        return ("Holder", canon(x.value))
    return ("other", t, repr(x))


def _id(value):
    try:
        return repr(value)[:40]
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return type(value).__name__


def roundtrip(x):
    blob = encode(x)
    assert type(blob) is bytes
    orjson.loads(blob)  # every blob is plain JSON
    return decode(blob)


def assert_roundtrips(x):
    back = roundtrip(x)
    assert canon(back) == canon(x)
    return back


# --------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------

fixed_offsets = st.builds(
    timezone,
    st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23)),
)
named_offsets = st.builds(
    timezone, st.sampled_from([timedelta(0), timedelta(hours=2)]), st.sampled_from(["X", "CEST"])
)
tzinfos = st.one_of(st.none(), st.just(timezone.utc), fixed_offsets, named_offsets, st.timezones())
datetimes = st.builds(
    lambda dt, fold: dt.replace(fold=fold),
    st.datetimes(timezones=tzinfos, allow_imaginary=True),
    st.integers(0, 1),
)
times = st.builds(
    lambda t, fold: t.replace(fold=fold),
    st.times(timezones=st.one_of(st.none(), st.just(timezone.utc), fixed_offsets, named_offsets)),
    st.integers(0, 1),
)
ints = st.one_of(
    st.integers(),
    st.integers(INT64_MIN - 4, INT64_MIN + 4),
    st.integers(INT64_MAX - 4, INT64_MAX + 4),
    st.integers(-(2**300), 2**300),
)
floats = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan]))
tag_like_keys = st.sampled_from(
    ["$", "$$", "$tuple", "$set", "$dict", "$pickle", "$int", "$unknown", "$ x"]
) | st.text(max_size=4).map(lambda s: "$" + s)

hashable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    st.text(),
    st.binary(),
    st.decimals(allow_nan=False),
    st.dates(),
    datetimes,
    times,
    st.timedeltas(),
    st.fractions(),
    st.uuids(),
    st.sampled_from(Color),
    st.complex_numbers(),
)
# (deferred: keeps the strategies' reprs short when they nest)
hashables = st.deferred(lambda: _hashables)
_hashables = st.recursive(
    hashable_scalars,
    lambda c: st.one_of(
        st.lists(c, max_size=4).map(tuple),
        st.frozensets(c, max_size=4),
        st.builds(Frozen, st.text(max_size=5), st.frozensets(c, max_size=3)),
        st.builds(Pair, c, c),
    ),
    max_leaves=8,
)
scalars = st.one_of(
    hashable_scalars,
    st.decimals(allow_nan=True),  # includes NaN and sNaN
    st.just(Holder(3)),
)


def _containers(children):
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=5),
        st.dictionaries(hashables, children, max_size=4),
        st.dictionaries(tag_like_keys, children, max_size=3),
        st.sets(hashables, max_size=5),
        st.frozensets(hashables, max_size=5),
        st.builds(Point, ints, floats),
        st.builds(Slotted, children, children),
        st.builds(WithInitFalse, children),
        st.builds(Holder, children),
        st.builds(
            lambda items: collections.OrderedDict(items),
            st.lists(st.tuples(st.text(max_size=3), children), max_size=3),
        ),
    )


values = st.deferred(lambda: _values)
_values = st.recursive(scalars, _containers, max_leaves=25)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


def _not_tag_shaped(d):
    return not (len(d) == 1 and next(iter(d)).startswith("$"))


json_values = st.recursive(
    json_scalars,
    lambda c: (
        st.lists(c, max_size=6)
        | st.dictionaries(st.text(max_size=6), c, max_size=6).filter(_not_tag_shaped)
    ),
    max_leaves=30,
)

slow = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------


@slow
@given(values)
def test_roundtrip_preserves_values_and_types(x):
    assert_roundtrips(x)


@slow
@given(st.dictionaries(hashables, values, max_size=6))
def test_roundtrip_dicts_with_any_hashable_keys(x):
    assert_roundtrips(x)


@slow
@given(st.sets(hashables, max_size=8) | st.frozensets(hashables, max_size=8))
def test_roundtrip_sets(x):
    assert_roundtrips(x)


@slow
@given(json_values)
def test_json_native_values_are_plain_json(x):
    blob = encode(x)
    assert blob == orjson.dumps(x)
    assert orjson.loads(blob) == x
    assert canon(decode(blob)) == canon(x)


@slow
@given(st.dictionaries(tag_like_keys, values, min_size=1, max_size=3))
def test_dicts_that_look_like_tags_roundtrip(x):
    back = assert_roundtrips(x)
    assert type(back) is dict


@slow
@given(
    st.recursive(
        tag_like_keys | json_scalars,
        lambda c: st.dictionaries(tag_like_keys, c, max_size=2) | st.lists(c, max_size=2),
    )
)
def test_nested_tag_lookalikes_roundtrip(x):
    assert_roundtrips(x)


@slow
@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=8))
def test_strings_with_lone_surrogates(s):
    assert_roundtrips(s)
    assert_roundtrips([s, {s: s}, (s,)])


@slow
@given(datetimes)
def test_datetimes_keep_tzinfo_and_fold(dt):
    back = roundtrip(dt)
    assert back == dt
    assert back.fold == dt.fold
    assert _tz(back.tzinfo) == _tz(dt.tzinfo)
    if dt.tzinfo is not None:
        assert back.utcoffset() == dt.utcoffset()
    payload = orjson.loads(encode(dt))
    if "$datetime" in payload:  # else pickled (named timezones)
        text = payload["$datetime"]
        assert (text if type(text) is str else text[0]) == dt.isoformat()


# --------------------------------------------------------------------------
# the documented encoding (docs/snapshot-format.md)
# --------------------------------------------------------------------------

SPEC_EXAMPLES = [
    (None, b"null"),
    (True, b"true"),
    (42, b"42"),
    (INT64_MIN, b"-9223372036854775808"),
    (2**64, b'{"$int":"18446744073709551616"}'),
    (-0.0, b"-0.0"),
    (math.nan, b'{"$float":"nan"}'),
    (-math.inf, b'{"$float":"-inf"}'),
    ("héllo", '"héllo"'.encode()),
    ("\ud83d", b'{"$str":"7aC9"}'),
    ([1, 2.5, "a"], b'[1,2.5,"a"]'),
    ({"count": 3, "avg": 1.5}, b'{"count":3,"avg":1.5}'),
    ({"$ref": 1}, b'{"$dict":{"$ref":1}}'),
    ({"$ref": 1, "x": 2}, b'{"$ref":1,"x":2}'),
    ({1: "a", (2, 3): None}, b'{"$dict":[[1,"a"],[{"$tuple":[2,3]},null]]}'),
    (("a", 1), b'{"$tuple":["a",1]}'),
    ({"b", "a", "c"}, b'{"$set":["a","b","c"]}'),
    (frozenset({3, 1}), b'{"$frozenset":[1,3]}'),
    (b"\x00\xff", b'{"$bytes":"AP8="}'),
    (Decimal("1.10"), b'{"$decimal":"1.10"}'),
    (date(2024, 5, 17), b'{"$date":"2024-05-17"}'),
    (time(9, 30, 0, 250), b'{"$time":"09:30:00.000250"}'),
    (timedelta(days=-1, seconds=30), b'{"$timedelta":[-1,30,0]}'),
    (datetime(2024, 5, 17, 9, 30), b'{"$datetime":"2024-05-17T09:30:00"}'),
    (
        datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc),
        b'{"$datetime":"2024-05-17T09:30:00+00:00"}',
    ),
    (
        datetime(2024, 5, 17, 9, 30, tzinfo=timezone(timedelta(hours=-7))),
        b'{"$datetime":"2024-05-17T09:30:00-07:00"}',
    ),
    (
        datetime(2024, 5, 17, 9, 30, tzinfo=ZoneInfo("Europe/Paris")),
        b'{"$datetime":["2024-05-17T09:30:00+02:00","Europe/Paris",0]}',
    ),
    (
        datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
        b'{"$datetime":["2024-11-03T01:30:00-05:00","America/New_York",1]}',
    ),
    (datetime(2024, 5, 17, fold=1), b'{"$datetime":["2024-05-17T00:00:00",null,1]}'),
]


@pytest.mark.parametrize(("value", "blob"), SPEC_EXAMPLES, ids=_id)
def test_spec_examples(value, blob):
    assert encode(value) == blob
    assert canon(decode(blob)) == canon(value)


def test_dataclass_encoding_names_import_path():
    blob = encode(Point(1, 2.0))
    assert orjson.loads(blob) == {"$dataclass": [f"{Point.__module__}:Point", {"x": 1, "y": 2.0}]}
    assert decode(blob) == Point(1, 2.0)


def test_pickle_fallback_is_tagged_base64():
    blob = encode(fractions.Fraction(1, 3))
    payload = orjson.loads(blob)["$pickle"]
    assert pickle.loads(__import__("base64").b64decode(payload)) == fractions.Fraction(1, 3)


def test_format_version():
    assert codec.FORMAT_VERSION == 1
    assert type(codec.FORMAT_VERSION) is int


# --------------------------------------------------------------------------
# specific cases
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        [True, 1, 1.0],
        {True: 1, 2: False},
        -0.0,
        [0.0, -0.0],
        math.nan,
        [math.nan, {"x": math.inf}],
        {math.nan, 1.0},
        {float("nan"), float("nan")},
        {-0.0: "neg"},
        INT64_MAX,
        INT64_MAX + 1,
        INT64_MIN - 1,
        2**64 - 1,
        -(10**100),
        "",
        b"",
        (),
        (1,),
        ((),),
        set(),
        frozenset(),
        {"": ()},
        {(): {}},
        {None: None},
        {frozenset({1}): {1: {2: (3,)}}},
        ({"a": [Point(1, 2.0)]}, [frozenset({Frozen("f", frozenset({1}))})]),
        {1: ({Frozen("x")}, [Slotted((1,), {2: b"x"})])},
        Evolved(1, 2, [(1, 2)]),
        WithInitFalse(3),
        Pair((1,), {2}),
        Color.GREEN,
        collections.OrderedDict(a=1),
        collections.defaultdict(list, {1: [(2,)]}),
        uuid.UUID(int=7),
        complex(1, -0.0),
        bytearray(b"ab"),
        range(3),
        Decimal("-0"),
        Decimal("sNaN"),
        Decimal("1E+400"),
        timedelta.max,
        datetime.min,
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-23, minutes=-59))),
        time(23, 59, 59, 999999, tzinfo=timezone(timedelta(seconds=30))),
        time(1, tzinfo=ZoneInfo("UTC")),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2), "CEST")),
        datetime(2024, 3, 31, 2, 30, tzinfo=ZoneInfo("Europe/Berlin")),  # in the gap
        {"price": "$5", "tpl": '{"$tuple":[1]}', "$": "$"},
        ['{"$', '{\\"$', '"{"$"}'],
        [[[[[[[(1,)]]]]]]],
        10**5000,
    ],
    ids=_id,
)
def test_roundtrip_cases(value):
    assert_roundtrips(value)


def test_tag_lookalike_strings_are_not_walked():
    blob = encode(['{"$tuple":[1]}'])
    assert b'{"$' not in blob
    assert decode(blob) == ['{"$tuple":[1]}']


def test_dataclass_variants():
    frozen = Frozen("a", frozenset({(1, 2)}))
    assert roundtrip(frozen) == frozen
    assert roundtrip({frozen: [frozen]}) == {frozen: [frozen]}

    slotted = roundtrip(Slotted(Slotted(1), {"k": (1,)}))
    assert type(slotted) is Slotted and type(slotted.a) is Slotted
    assert slotted.b == {"k": (1,)}

    init_false = WithInitFalse((1,))
    init_false.cache[(1, 2)] = {3}
    back = roundtrip(init_false)
    assert back.cache == {(1, 2): {3}} and back.a == (1,)


def test_dataclass_with_extra_attributes_uses_pickle():
    p = Point(1, 2.0)
    p.note = (1, 2)
    blob = encode(p)
    assert b"$pickle" in blob
    back = decode(blob)
    assert back == p and back.note == (1, 2)


def test_dataclass_with_custom_getstate_uses_pickle():
    blob = encode(WithGetstate(7))
    assert b"$pickle" in blob
    assert decode(blob) == WithGetstate(7)


def test_dataclass_fields_added_later_get_defaults():
    blob = orjson.dumps({"$dataclass": [f"{Evolved.__module__}:Evolved", {"a": 1}]})
    assert decode(blob) == Evolved(1, 5, [])


def test_decode_unknown_tag_raises():
    with pytest.raises(ValueError, match=r"unknown snapshot tag '\$nope'"):
        decode(b'{"$nope":1}')


def test_decode_not_a_dataclass_raises():
    with pytest.raises(ValueError, match="not a dataclass"):
        decode(b'{"$dataclass":["collections:OrderedDict",{}]}')


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, lambda b: b.decode()])
def test_decode_accepts_bytes_like_and_str(kind):
    value = {"a": (1, {2}), "b": [1.5]}
    assert decode(kind(encode(value))) == value


def test_set_encoding_is_deterministic():
    assert encode({"z", "y", "x", "w"}) == b'{"$set":["w","x","y","z"]}'
    # unorderable elements fall back to iteration order but still round-trip
    assert roundtrip({1, "a", None}) == {1, "a", None}


def test_copy_on_write_leaves_input_untouched():
    value = {"a": [1, (2, 3)], "b": {"c": {4}}}
    snapshot = repr(value)
    encode(value)
    assert repr(value) == snapshot


def test_deep_nesting_falls_back_to_pickle():
    shallow = [1]
    for _ in range(200):
        shallow = [shallow]
    assert b"$pickle" not in encode(shallow)  # still plain JSON
    assert roundtrip(shallow) == shallow

    deep = (1,)
    for _ in range(400):
        deep = [deep, {1: deep}] if _ % 50 == 0 else [deep]
    blob = encode(deep)
    assert blob.startswith(b'{"$pickle":')
    assert canon(decode(blob)) == canon(deep)


def test_recursive_structure_roundtrips_via_pickle():
    a = [1]
    a.append(a)
    back = roundtrip(a)
    assert back[0] == 1 and back[1] is back


# --------------------------------------------------------------------------
# unencodable values
# --------------------------------------------------------------------------


def _gen():
    yield 1


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (lambda: _gen(), "generator"),
        (lambda: lambda: 1, "function"),
        (lambda: threading.Lock(), "_thread.lock"),
        (lambda: [1, {"k": (2, _gen())}], "generator"),
        (lambda: {(1, threading.Lock()): 1}, "_thread.lock"),
        (lambda: {threading.Lock()}, "_thread.lock"),
        (lambda: Slotted(1, [_gen()]), "generator"),
        (lambda: Holder(threading.Lock()), "_thread.lock"),
        (lambda: memoryview(b"x"), "memoryview"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_unencodable_values_raise(make, type_name):
    value = make()
    with pytest.raises(codec.UnencodableError) as info:
        encode(value)
    err = info.value
    assert isinstance(err, TypeError)
    assert err.type_name == type_name
    assert str(err).startswith(f"cannot snapshot a value of type {type_name!r}")


def test_unencodable_error_mentions_container_and_pickles():
    with pytest.raises(codec.UnencodableError) as info:
        encode(Holder(threading.Lock()))
    err = info.value
    assert f"inside a value of type '{__name__}.Holder'" in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is codec.UnencodableError
    assert (copy.type_name, str(copy)) == (err.type_name, str(err))


def test_local_dataclass_is_unencodable():
    @dataclass
    class Local:
        x: int

    with pytest.raises(codec.UnencodableError) as info:
        encode([Local(1)])
    assert info.value.type_name.endswith("<locals>.Local")


def test_unencodable_error_message_example():
    with pytest.raises(
        codec.UnencodableError, match="^cannot snapshot a value of type 'generator'"
    ):
        encode({"state": _gen()})


@pytest.mark.parametrize("micros", [1, -1, 999_999, -999_999, 3_600_000_007])
def test_datetimes_with_sub_second_utc_offsets_keep_their_offset(micros: int) -> None:
    # CPython 3.11's fromisoformat reads "+00:00:00.000001" as UTC; such offsets are pickled.
    tz = timezone(timedelta(microseconds=micros))
    value = datetime(2000, 1, 1, 12, tzinfo=tz)
    back = codec.decode(codec.encode(value))
    assert back == value
    assert back.utcoffset() == value.utcoffset()

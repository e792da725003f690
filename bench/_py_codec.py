"""Plain-Python reference of the snapshot codec, for benchmarks only (not shipped).

It walks values exactly like ``cext/codec.pyx`` (same tags, same
copy-on-write encoding, same ``{"$`` scan before decoding) and produces the
same bytes for the states used in the benchmarks, so
``bench/test_bench_codec.py`` measures what compiling the walk buys.  Edge
cases the benchmarks do not exercise (nesting deeper than orjson allows, lone
surrogates) are left out.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import sys
from binascii import a2b_base64, b2a_base64
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _b64(data: bytes) -> str:
    return b2a_base64(data, newline=False).decode("ascii")


def _sorted_items(s):
    try:
        return sorted(s)
    except Exception:
        return list(s)


def _plain_offset(tz) -> bool:
    return tz is None or (type(tz) is timezone and len(tz.__getinitargs__()) == 1)


def _enc(obj):
    t = type(obj)
    if t is str:
        return obj
    if t is int:
        if INT64_MIN <= obj <= INT64_MAX:
            return obj
        return {"$int": str(obj)}
    if t is float:
        if math.isfinite(obj):
            return obj
        return {"$float": "nan" if obj != obj else ("inf" if obj > 0 else "-inf")}
    if t is list:
        return _enc_list(obj)
    if t is dict:
        return _enc_dict(obj)
    if t is bool or obj is None:
        return obj
    if t is tuple:
        return {"$tuple": [_enc(item) for item in obj]}
    if t is datetime:
        if _plain_offset(obj.tzinfo):
            if obj.fold == 0:
                return {"$datetime": obj.isoformat()}
            return {"$datetime": [obj.isoformat(), None, obj.fold]}
        if type(obj.tzinfo) is ZoneInfo and obj.tzinfo.key is not None:
            return {"$datetime": [obj.isoformat(), obj.tzinfo.key, obj.fold]}
        return _enc_pickle(obj)
    if t is date:
        return {"$date": obj.isoformat()}
    if t is set:
        return {"$set": [_enc(item) for item in _sorted_items(obj)]}
    if t is frozenset:
        return {"$frozenset": [_enc(item) for item in _sorted_items(obj)]}
    if t is bytes:
        return {"$bytes": _b64(obj)}
    if t is Decimal:
        return {"$decimal": str(obj)}
    if t is timedelta:
        return {"$timedelta": [obj.days, obj.seconds, obj.microseconds]}
    if t is time and obj.fold == 0 and _plain_offset(obj.tzinfo):
        return {"$time": obj.isoformat()}
    if dataclasses.is_dataclass(t) and hasattr(obj, "__dict__"):
        path = f"{t.__module__}:{t.__qualname__}"
        fields = {f.name: _enc(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"$dataclass": [path, fields]}
    return _enc_pickle(obj)


def _enc_pickle(obj):
    return {"$pickle": _b64(pickle.dumps(obj, 5))}


def _enc_list(items):
    out = None
    for i, item in enumerate(items):
        conv = _enc(item)
        if out is not None:
            out.append(conv)
        elif conv is not item:
            out = items[:i]
            out.append(conv)
    return items if out is None else out


def _enc_dict(d):
    if len(d) == 1:
        (key,) = d
        if type(key) is str and key.startswith("$"):
            body = _enc_dict_body(d)
            return {"$dict": body} if body is not None else _enc_pairs(d)
    body = _enc_dict_body(d)
    return body if body is not None else _enc_pairs(d)


def _enc_dict_body(d):
    out = None
    for key, value in d.items():
        if type(key) is not str:
            return None
        conv = _enc(value)
        if conv is not value:
            if out is None:
                out = d.copy()
            out[key] = conv
    return d if out is None else out


def _enc_pairs(d):
    return {"$dict": [[_enc(k), _enc(v)] for k, v in d.items()]}


def encode(obj) -> bytes:
    """Encode ``obj`` like ``fastflow._cext.codec.encode``."""
    return orjson.dumps(_enc(obj))


def _dec(obj):
    t = type(obj)
    if t is list:
        return _dec_list(obj)
    if t is dict:
        return _dec_dict(obj)
    return obj


def _dec_list(items):
    for i, item in enumerate(items):
        t = type(item)
        if t is list:
            _dec_list(item)
        elif t is dict:
            conv = _dec_dict(item)
            if conv is not item:
                items[i] = conv
    return items


def _dec_dict(d):
    if len(d) == 1:
        ((key, value),) = d.items()
        if key.startswith("$"):
            return _dec_tag(key, value)
    return _dec_values(d)


def _dec_values(d):
    for key, value in d.items():
        t = type(value)
        if t is list:
            _dec_list(value)
        elif t is dict:
            conv = _dec_dict(value)
            if conv is not value:
                d[key] = conv
    return d


def _resolve(path):
    module_name, _, qualname = path.partition(":")
    obj = sys.modules[module_name]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _dec_datetime(payload):
    if type(payload) is str:
        return datetime.fromisoformat(payload)
    iso, key, fold = payload
    dt = datetime.fromisoformat(iso)
    if key is not None:
        dt = dt.replace(tzinfo=ZoneInfo(key))
    return dt.replace(fold=fold) if fold else dt


def _dec_dataclass(payload):
    path, fields = payload
    cls = _resolve(path)
    obj = cls.__new__(cls)
    for name, value in _dec_values(fields).items():
        object.__setattr__(obj, name, value)
    return obj


_DECODERS = {
    "$tuple": lambda p: tuple(_dec_list(p)),
    "$set": lambda p: set(_dec_list(p)),
    "$frozenset": lambda p: frozenset(_dec_list(p)),
    "$dict": lambda p: _dec_values(p) if type(p) is dict else {_dec(k): _dec(v) for k, v in p},
    "$bytes": a2b_base64,
    "$str": lambda p: a2b_base64(p).decode("utf-8", "surrogatepass"),
    "$int": int,
    "$float": float,
    "$decimal": Decimal,
    "$datetime": _dec_datetime,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$timedelta": lambda p: timedelta(*p),
    "$dataclass": _dec_dataclass,
    "$pickle": lambda p: pickle.loads(a2b_base64(p)),
}


def _dec_tag(tag, payload):
    try:
        decoder = _DECODERS[tag]
    except KeyError:
        raise ValueError(f"unknown snapshot tag {tag!r}") from None
    return decoder(payload)


def decode(data: bytes):
    """Decode a blob like ``fastflow._cext.codec.decode``."""
    obj = orjson.loads(data)
    if b'{"$' in data:
        return _dec(obj)
    return obj

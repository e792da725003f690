# cython: language_level=3, boundscheck=False, wraparound=False
"""Type-preserving snapshot codec: Python state values <-> orjson bytes.

The format is specified in ``docs/snapshot-format.md`` (format version 1).
In short: JSON-native values (``None``, ``bool``, 64-bit ``int``, finite
``float``, ``str``, ``list``, ``dict`` with ``str`` keys) are stored as plain
JSON; every other value is stored as a *tag*, a single-key JSON object whose
key starts with ``$`` (``{"$tuple": [1, 2]}``).  A user dict whose only key
starts with ``$`` is itself wrapped in a ``$dict`` tag, so it can never be
mistaken for a tag.

Fast paths:

* ``encode`` walks the value once with exact C-level type checks and builds a
  converted copy *only* of the containers that hold a tagged value
  (copy-on-write).  A JSON-native value is handed to ``orjson.dumps`` as is.
* ``decode`` runs ``orjson.loads`` and walks the result (in place) only when
  the blob contains the byte sequence ``{"$``, which in orjson's compact
  output can only be the start of an object whose first key starts with
  ``$``: a ``"`` inside a JSON string is always escaped as ``\\"``.
"""

from cpython cimport datetime as cdatetime
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Copy, PyDict_GetItem, PyDict_Next
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_GET_SIZE, PyList_GetSlice
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeASCII, PyUnicode_GET_LENGTH, PyUnicode_READ_CHAR
from libc.math cimport isfinite
from libc.string cimport memchr, memcpy

import dataclasses
import importlib
import pickle
import re
import sys
from binascii import a2b_base64, b2a_base64
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import orjson

__all__ = [
    "FORMAT_VERSION",
    "StateDecodeError",
    "UnencodableError",
    "UnimportedModuleError",
    "decode",
    "decode_changes",
    "encode",
    "encode_changes",
]

FORMAT_VERSION = 1

# orjson refuses to serialize more than 254 nested containers; stay below it.
# A value whose encoding would nest deeper is pickled as a whole instead.
cdef enum:
    MAX_DEPTH = 250
    # Pickle protocol of ``$pickle`` tags; fixed so blobs do not depend on the
    # Python version that wrote them (protocol 5 is readable by Python >= 3.8).
    PICKLE_PROTOCOL = 5

cdatetime.import_datetime()

cdef object _dumps = orjson.dumps
cdef object _loads = orjson.loads
cdef object _JSONEncodeError = orjson.JSONEncodeError
cdef object _pickle_dumps = pickle.dumps
cdef object _pickle_loads = pickle.loads
cdef object _object_setattr = object.__setattr__
cdef object _object_getstate = getattr(object, "__getstate__", None)
cdef object _MISSING = dataclasses.MISSING
cdef object _fromiso_datetime = datetime.fromisoformat
cdef object _fromiso_date = date.fromisoformat
cdef object _fromiso_time = time.fromisoformat
cdef object _pickle_msg_type = re.compile(r"cannot pickle '([^']+)' object")

cdef object _UTC = timezone.utc
cdef str _TAG_MARK_STR = '{"$'


class StateDecodeError(ValueError):
    """A key's state in a change set cannot be decoded; ``error`` says why.

    Why the key: a resume refusing a store must name the state it could not rebuild.
    """

    def __init__(self, key, error):
        super().__init__(f"key {key!r}: {type(error).__name__}: {error}")
        self.key = key
        self.error = error


class UnimportedModuleError(LookupError):
    """A ``$dataclass`` names a module that is not imported, and importing was not allowed."""

    def __init__(self, path, module_name):
        super().__init__(
            f"the state names class {path!r}, but module {module_name!r} is not imported "
            "(decoding does not import modules named in a blob: that would run their code)"
        )
        self.path = path
        self.module_name = module_name


class UnencodableError(TypeError):
    """A state value cannot be snapshotted (it is not encodable nor picklable).

    ``type_name`` names the offending type (``'generator'``, ``'function'``,
    ``'_thread.lock'``, or ``'module.QualName'`` for other classes).
    """

    def __init__(self, type_name, detail=None, container=None):
        msg = f"cannot snapshot a value of type {type_name!r}"
        if container is not None and container != type_name:
            msg += f" (inside a value of type {container!r})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)
        self.type_name = type_name
        self.detail = detail
        self.container = container
        self.key = None  # the state key, when raised by encode_changes

    def __reduce__(self):
        return (type(self), (self.type_name, self.detail, self.container))


class _TooDeep(Exception):
    """Internal: the encoding would nest deeper than orjson allows."""


# --------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------

cdef str _type_name(type t):
    cdef str module = getattr(t, "__module__", None) or "builtins"
    cdef str qualname = getattr(t, "__qualname__", None) or t.__name__
    if module == "builtins":
        return qualname
    return f"{module}.{qualname}"


cdef inline dict _tag(str name, object payload):
    return {name: payload}


cdef str _b64(bytes data):
    return b2a_base64(data, newline=False).decode("ascii")


cdef dict _enc_pickle(object obj):
    """``{"$pickle": base64}``, or raise UnencodableError."""
    try:
        data = _pickle_dumps(obj, PICKLE_PROTOCOL)
    except MemoryError:
        raise
    except Exception as exc:
        outer = _type_name(type(obj))
        detail = str(exc)
        found = _pickle_msg_type.search(detail)
        inner = found.group(1) if found is not None else outer
        raise UnencodableError(inner, detail, outer) from exc
    return _tag("$pickle", _b64(data))


cdef bint _utf8_ok(str s):
    """False if ``s`` holds a lone surrogate (not representable in JSON/UTF-8)."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


cdef object _enc(object obj, int depth, bint strict):
    """Return ``obj`` itself if it is JSON-native, else its JSON-ready form.

    ``depth`` is the number of JSON containers enclosing this value's output.
    ``strict`` (only set on the retry after orjson rejected a string) tags
    strings holding lone surrogates.
    """
    cdef type t = type(obj)
    cdef int overflow = 0
    cdef double f

    # JSON-native values: return them untouched.
    if t is str:
        if strict and not _utf8_ok(obj):
            return _tag("$str", _b64(obj.encode("utf-8", "surrogatepass")))
        return obj
    if t is int:
        PyLong_AsLongLongAndOverflow(obj, &overflow)
        if overflow == 0:
            return obj
    elif t is float:
        if isfinite(PyFloat_AS_DOUBLE(obj)):
            return obj
    elif t is list:
        return _enc_list(<list>obj, depth, strict)
    elif t is dict:
        return _enc_dict(<dict>obj, depth, strict)
    elif t is bool or obj is None:
        return obj

    # Everything else becomes a tag: one more level of nesting.
    if depth >= MAX_DEPTH:
        raise _TooDeep()
    if t is int:  # beyond 64 bits
        try:
            return _tag("$int", str(obj))
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            return _enc_pickle(obj)
    if t is float:  # nan, inf, -inf
        f = PyFloat_AS_DOUBLE(obj)
        return _tag("$float", "nan" if f != f else ("inf" if f > 0 else "-inf"))
    if t is tuple:
        return _tag("$tuple", _enc_items(obj, depth + 1, strict))
    if t is datetime:
        return _enc_datetime(obj)
    if t is date:
        return _tag("$date", obj.isoformat())
    if t is set:
        return _tag("$set", _enc_items(_set_items(obj), depth + 1, strict))
    if t is frozenset:
        return _tag("$frozenset", _enc_items(_set_items(obj), depth + 1, strict))
    if t is bytes:
        return _tag("$bytes", _b64(obj))
    if t is Decimal:
        return _tag("$decimal", str(obj))
    if t is timedelta:
        if depth + 1 >= MAX_DEPTH:
            raise _TooDeep()
        return _tag("$timedelta", [obj.days, obj.seconds, obj.microseconds])
    if t is time:
        return _enc_time(obj)
    return _enc_object(obj, depth, strict)


cdef object _enc_list(list items, int depth, bint strict):
    """Copy-on-write: ``items`` itself unless an element needs converting."""
    cdef list out = None
    cdef Py_ssize_t i = 0
    cdef object item, conv
    if depth >= MAX_DEPTH:
        raise _TooDeep()
    # Re-read the size every round: pickling an element runs user code.
    while i < PyList_GET_SIZE(items):
        item = items[i]
        conv = _enc(item, depth + 1, strict)
        if out is not None:
            out.append(conv)
        elif conv is not item:
            out = PyList_GetSlice(items, 0, i)
            out.append(conv)
        i += 1
    return items if out is None else out


cdef list _enc_items(object iterable, int depth, bint strict):
    """A new JSON list (at ``depth``) of the encoded items of ``iterable``."""
    if depth >= MAX_DEPTH:
        raise _TooDeep()
    return [_enc(item, depth + 1, strict) for item in iterable]


cdef list _set_items(object s):
    """Set elements in sorted order when they are orderable (stable blobs)."""
    try:
        return sorted(s)
    except Exception:
        return list(s)


cdef inline bint _is_reserved_key(object key):
    return (
        type(key) is str
        and PyUnicode_GET_LENGTH(key) > 0
        and PyUnicode_READ_CHAR(key, 0) == u"$"
    )


cdef object _enc_dict(dict d, int depth, bint strict):
    cdef PyObject* kp
    cdef PyObject* vp
    cdef Py_ssize_t pos = 0
    cdef object body
    if len(d) == 1:
        PyDict_Next(d, &pos, &kp, &vp)
        if _is_reserved_key(<object>kp):
            # A lone "$..." key would read as a tag: escape the dict.
            if depth >= MAX_DEPTH:
                raise _TooDeep()
            body = _enc_dict_body(d, depth + 1, strict)
            if body is None:
                return _enc_dict_pairs(d, depth, strict)
            return _tag("$dict", body)
    body = _enc_dict_body(d, depth, strict)
    if body is None:
        return _enc_dict_pairs(d, depth, strict)
    return body


cdef object _enc_dict_body(dict d, int depth, bint strict):
    """Copy-on-write encoding of a str-keyed dict; None if a key is not a str."""
    cdef PyObject* kp
    cdef PyObject* vp
    cdef Py_ssize_t pos = 0
    cdef dict out = None
    cdef object key, value, conv
    if depth >= MAX_DEPTH:
        raise _TooDeep()
    while PyDict_Next(d, &pos, &kp, &vp):
        key = <object>kp
        if type(key) is not str or (strict and not _utf8_ok(key)):
            return None
        value = <object>vp
        conv = _enc(value, depth + 1, strict)
        if conv is not value:
            if out is None:
                out = PyDict_Copy(d)
            out[key] = conv
    return d if out is None else out


cdef dict _enc_dict_pairs(dict d, int depth, bint strict):
    """``{"$dict": [[key, value], ...]}`` for dicts with non-str keys."""
    cdef list pairs = []
    if depth + 2 >= MAX_DEPTH:
        raise _TooDeep()
    for key, value in d.items():
        pairs.append([_enc(key, depth + 3, strict), _enc(value, depth + 3, strict)])
    return _tag("$dict", pairs)


cdef inline bint _is_plain_offset(object tz):
    """True for ``None`` and for ``datetime.timezone`` instances without a name."""
    return tz is None or tz is _UTC or (
        type(tz) is timezone and len(tz.__getinitargs__()) == 1
    )


cdef object _enc_datetime(cdatetime.datetime dt):
    tz = dt.tzinfo
    if _is_plain_offset(tz) and _offset_suffix(tz) is not None:
        if dt.fold == 0:
            return _tag("$datetime", _isoformat(dt, tz))
        return _tag("$datetime", [_isoformat(dt, tz), None, dt.fold])
    if type(tz) is ZoneInfo and tz.key is not None:
        return _tag("$datetime", [dt.isoformat(), tz.key, dt.fold])
    return _enc_pickle(dt)


# timezone -> the UTC offset suffix isoformat() writes for it ("+05:30"), or None
# for an offset that fromisoformat() reads back wrong (CPython 3.11 reads
# "+00:00:00.000001" as UTC): such datetimes are pickled instead.
cdef dict _offset_suffixes = {None: b""}


cdef bytes _offset_suffix(object tz):
    try:
        return _offset_suffixes[tz]
    except KeyError:
        pass
    text = datetime(2000, 1, 1, tzinfo=tz).isoformat()
    suffix = text[19:].encode("ascii")
    if _fromiso_datetime(text).utcoffset() != tz.utcoffset(None):
        suffix = None
    if len(_offset_suffixes) < 4096:
        _offset_suffixes[tz] = suffix
    return suffix


cdef inline char* _digits(char* p, int value, int width) noexcept:
    """Write ``value`` zero-padded to ``width`` digits at ``p``; return the end."""
    cdef int i
    for i in range(width - 1, -1, -1):
        p[i] = c'0' + value % 10
        value //= 10
    return p + width


cdef str _isoformat(cdatetime.datetime dt, object tz):
    """``dt.isoformat()`` for naive and fixed-offset datetimes, without calling
    ``tz.utcoffset()`` and ``snprintf`` (which make it several times slower)."""
    cdef char buf[64]
    cdef char* p = buf
    cdef bytes suffix = _offset_suffix(tz)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(suffix)
    p = _digits(p, dt.year, 4)
    p[0] = c'-'
    p = _digits(p + 1, dt.month, 2)
    p[0] = c'-'
    p = _digits(p + 1, dt.day, 2)
    p[0] = c'T'
    p = _digits(p + 1, dt.hour, 2)
    p[0] = c':'
    p = _digits(p + 1, dt.minute, 2)
    p[0] = c':'
    p = _digits(p + 1, dt.second, 2)
    if dt.microsecond:
        p[0] = c'.'
        p = _digits(p + 1, dt.microsecond, 6)
    if size > 32:  # cannot happen: the longest offset is "+HH:MM:SS.ffffff"
        return dt.isoformat()
    memcpy(p, PyBytes_AS_STRING(suffix), size)
    return PyUnicode_DecodeASCII(buf, (p - buf) + size, NULL)


cdef object _enc_time(object t):
    if t.fold == 0 and _is_plain_offset(t.tzinfo):
        return _tag("$time", t.isoformat())
    return _enc_pickle(t)


# dataclass -> (path, field names) if its instances are encoded by field, else None
cdef dict _dataclass_info = {}


cdef object _get_dataclass_info(type cls):
    try:
        return _dataclass_info[cls]
    except KeyError:
        pass
    info = None
    if dataclasses.is_dataclass(cls) and not _has_custom_pickling(cls):
        path = f"{cls.__module__}:{cls.__qualname__}"
        try:
            resolved = _resolve(path, False)
        except Exception:
            resolved = None
        if resolved is cls:
            names = tuple([f.name for f in dataclasses.fields(cls)])
            info = (path, names)
    _dataclass_info[cls] = info
    return info


cdef bint _has_custom_pickling(type cls):
    """True if ``cls`` customizes pickling, so its fields are not its state."""
    if cls.__reduce_ex__ is not object.__reduce_ex__:
        return True
    if cls.__reduce__ is not object.__reduce__:
        return True
    for name in ("__getstate__", "__setstate__"):
        fn = getattr(cls, name, None)
        if fn is None or fn is _object_getstate:
            continue
        # dataclass(slots=True, frozen=True) adds its own; those are fine.
        if getattr(fn, "__module__", None) != "dataclasses":
            return True
    return False


cdef object _enc_object(object obj, int depth, bint strict):
    """Dataclass instances by field; anything else as a tagged pickle."""
    cdef type cls = type(obj)
    cdef dict fields
    if hasattr(cls, "__dataclass_fields__"):
        info = _get_dataclass_info(cls)
        if info is not None:
            fields = _dataclass_fields(obj, info[1])
            if fields is not None:
                if depth + 2 >= MAX_DEPTH:
                    raise _TooDeep()
                for name in fields:
                    fields[name] = _enc(fields[name], depth + 3, strict)
                return _tag("$dataclass", [info[0], fields])
    return _enc_pickle(obj)


cdef dict _dataclass_fields(object obj, tuple names):
    """Field name -> value, or None if the instance holds more than its fields."""
    attrs = getattr(obj, "__dict__", None)
    if type(attrs) is dict:
        if len(attrs) != len(names):
            return None
        try:
            return {name: attrs[name] for name in names}
        except KeyError:
            return None
    try:
        return {name: getattr(obj, name) for name in names}
    except AttributeError:
        return None


def encode(obj):
    """Encode a state value as orjson bytes (see docs/snapshot-format.md).

    Raises UnencodableError if the value (or a value inside it) is neither
    encodable nor picklable.
    """
    try:
        conv = _enc(obj, 0, False)
        try:
            return _compact(_dumps(conv))
        except _JSONEncodeError:
            # orjson rejects strings holding lone surrogates: tag those.
            return _compact(_dumps(_enc(obj, 0, True)))
    except _TooDeep:
        return _compact(_dumps(_enc_pickle(obj)))


cdef inline bytes _compact(bytes data):
    """Copy orjson's output into a bytes object of its exact size.

    Why: orjson's result keeps the capacity of its write buffer. Snapshots are
    kept until their epoch commits, and holding 100k such results made
    encoding ~6x slower than copying each into an exact-size object.
    """
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))


# --------------------------------------------------------------------------
# change sets
# --------------------------------------------------------------------------

cdef object _enc_state(object key, object obj, bint strict):
    """A state value's JSON-ready form inside a change set (two containers deep)."""
    try:
        try:
            return _enc(obj, 2, strict)
        except _TooDeep:
            return _enc_pickle(obj)
    except UnencodableError as ex:
        ex.key = key
        raise


cdef tuple _dump_changes(dict values, list keys, dict sets, list dels):
    """``(key count, blob)`` of one change set; retags lone surrogates if orjson refuses."""
    try:
        blob = _dumps({"set": sets, "del": dels})
    except _JSONEncodeError:
        sets = {key: _enc_state(key, values[key], True) for key in sets}
        try:
            blob = _dumps({"set": sets, "del": dels})
        except _JSONEncodeError:
            bad = next(k for k in keys if not _utf8_ok(k))
            ex = UnencodableError("str", "a state key must be valid UTF-8 (no lone surrogates)")
            ex.key = bad
            raise ex
    return (len(sets) + len(dels), _compact(blob))


def encode_changes(dict values not None, dict changed not None, Py_ssize_t chunk_keys):
    """Encode one epoch's changes of a step as change-set blobs (docs/snapshot-format.md).

    ``changed`` maps every key changed since the last commit to whether it had
    state at that commit. A changed key with an entry in ``values`` is written
    with that state; one without was discarded: it is written as a deletion if
    it had state, and not at all if it was created and discarded since (it
    never reached the store). Returns ``[(key_count, blob), ...]``, each blob
    holding at most ``chunk_keys`` keys. An unencodable state raises
    ``UnencodableError`` with its ``key`` set.
    """
    cdef list out = []
    cdef dict sets = {}
    cdef list dels = []
    cdef list keys = []
    cdef Py_ssize_t pos = 0, size = 0, values_pos = 0
    cdef PyObject* k
    cdef PyObject* had
    cdef PyObject* found
    cdef PyObject* values_key
    cdef bint in_step = True
    if chunk_keys < 1:
        raise ValueError(f"chunk_keys must be >= 1, got {chunk_keys}")
    while PyDict_Next(changed, &pos, &k, &had):
        key = <object>k
        # While ``changed`` lists the keys in ``values``'s own order (every key of a
        # step changed), walk both together: a lookup in a large dict is a cache miss.
        if in_step and PyDict_Next(values, &values_pos, &values_key, &found) and values_key == k:
            pass
        else:
            in_step = False
            found = PyDict_GetItem(values, key)
        if found is not NULL:
            value = <object>found
            sets[key] = _enc_state(key, value, False)
        elif <object>had:
            dels.append(key)
        else:
            continue
        keys.append(key)
        size += 1
        if size == chunk_keys:
            out.append(_dump_changes(values, keys, sets, dels))
            sets, dels, keys, size = {}, [], [], 0
    if size:
        out.append(_dump_changes(values, keys, sets, dels))
    return out


def decode_changes(data, unpickle=None, bint import_modules=True):
    """Decode a change-set blob into ``(states by key, deleted keys)``.

    ``unpickle`` and ``import_modules`` are as for ``decode``; a state that cannot be
    decoded raises ``StateDecodeError`` naming its key.
    """
    cdef bint tagged = _has_tag_mark(data) if type(data) is bytes else True
    obj = _loads(data)
    if type(obj) is not dict or type(obj.get("set")) is not dict or type(obj.get("del")) is not list:
        raise ValueError("not a change set: expected an object with a 'set' object and a 'del' list")
    cdef dict sets = obj["set"]
    cdef _Decoding how
    if tagged:
        how = _Decoding(unpickle, import_modules)
        for key in list(sets):
            try:
                sets[key] = _dec(sets[key], how)
            except Exception as ex:
                raise StateDecodeError(key, ex) from ex
    return sets, obj["del"]


# --------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------

cdef enum:
    T_TUPLE = 1
    T_SET = 2
    T_FROZENSET = 3
    T_DICT = 4
    T_BYTES = 5
    T_STR = 6
    T_INT = 7
    T_FLOAT = 8
    T_DECIMAL = 9
    T_DATETIME = 10
    T_DATE = 11
    T_TIME = 12
    T_TIMEDELTA = 13
    T_DATACLASS = 14
    T_PICKLE = 15

cdef dict _TAGS = {
    "$tuple": T_TUPLE,
    "$set": T_SET,
    "$frozenset": T_FROZENSET,
    "$dict": T_DICT,
    "$bytes": T_BYTES,
    "$str": T_STR,
    "$int": T_INT,
    "$float": T_FLOAT,
    "$decimal": T_DECIMAL,
    "$datetime": T_DATETIME,
    "$date": T_DATE,
    "$time": T_TIME,
    "$timedelta": T_TIMEDELTA,
    "$dataclass": T_DATACLASS,
    "$pickle": T_PICKLE,
}

cdef class _Decoding:
    """How tags that can run code are decoded: who unpickles, whether modules are imported."""

    cdef object unpickle
    cdef bint import_modules

    def __init__(self, unpickle, bint import_modules):
        self.unpickle = _pickle_loads if unpickle is None else unpickle
        self.import_modules = import_modules


cdef _Decoding _TRUSTING = _Decoding(None, True)


cdef inline object _dec(object obj, _Decoding how):
    cdef type t = type(obj)
    if t is list:
        _dec_list(<list>obj, how)
    elif t is dict:
        return _dec_dict(<dict>obj, how)
    return obj


cdef list _dec_list(list items, _Decoding how):
    """Decode the elements of a freshly loaded JSON list in place."""
    cdef Py_ssize_t i
    cdef object item, conv
    cdef type t
    for i in range(PyList_GET_SIZE(items)):
        item = items[i]
        t = type(item)
        if t is list:
            _dec_list(<list>item, how)
        elif t is dict:
            conv = _dec_dict(<dict>item, how)
            if conv is not item:
                items[i] = conv
    return items


cdef object _dec_dict(dict d, _Decoding how):
    """Decode a freshly loaded JSON object: a tag, or a dict decoded in place."""
    cdef PyObject* kp
    cdef PyObject* vp
    cdef Py_ssize_t pos = 0
    if len(d) == 1:
        PyDict_Next(d, &pos, &kp, &vp)
        if _is_reserved_key(<object>kp):
            return _dec_tag(<object>kp, <object>vp, how)
    return _dec_values(d, how)


cdef dict _dec_values(dict d, _Decoding how):
    """Decode the values of a JSON object in place (its keys are taken as is)."""
    cdef PyObject* kp
    cdef PyObject* vp
    cdef Py_ssize_t pos = 0
    cdef object value, conv
    cdef type t
    while PyDict_Next(d, &pos, &kp, &vp):
        value = <object>vp
        t = type(value)
        if t is list:
            _dec_list(<list>value, how)
        elif t is dict:
            conv = _dec_dict(<dict>value, how)
            if conv is not value:
                # Replacing the value of an existing key is safe while iterating.
                d[<object>kp] = conv
    return d


cdef object _dec_tag(str tag, object payload, _Decoding how):
    cdef int code = _TAGS.get(tag, 0)
    if code == T_TUPLE:
        return tuple(_dec_list(_list_payload(tag, payload), how))
    if code == T_DICT:
        if type(payload) is dict:
            return _dec_values(payload, how)
        return {_dec(k, how): _dec(v, how) for k, v in _list_payload(tag, payload)}
    if code == T_DATETIME:
        return _dec_datetime(payload)
    if code == T_DATE:
        return _fromiso_date(payload)
    if code == T_SET:
        return set(_dec_list(_list_payload(tag, payload), how))
    if code == T_FROZENSET:
        return frozenset(_dec_list(_list_payload(tag, payload), how))
    if code == T_BYTES:
        return a2b_base64(payload)
    if code == T_INT:
        return int(_str_payload(tag, payload))
    if code == T_FLOAT:
        # float() makes a new object each time, so NaNs in a set stay apart.
        return float(_str_payload(tag, payload))
    if code == T_DECIMAL:
        return Decimal(_str_payload(tag, payload))
    if code == T_TIMEDELTA:
        days, seconds, microseconds = payload
        return timedelta(days, seconds, microseconds)
    if code == T_TIME:
        return _fromiso_time(payload)
    if code == T_STR:
        return a2b_base64(payload).decode("utf-8", "surrogatepass")
    if code == T_DATACLASS:
        path, fields = payload
        if type(path) is not str or type(fields) is not dict:
            _malformed(tag, payload)
        return _dec_dataclass(path, _dec_values(fields, how), how.import_modules)
    if code == T_PICKLE:
        return how.unpickle(a2b_base64(payload))
    raise ValueError(
        f"unknown snapshot tag {tag!r} (format version {FORMAT_VERSION}); "
        "the blob was written by a newer fastflow or is corrupt"
    )


cdef int _malformed(str tag, object payload) except -1:
    raise ValueError(f"malformed snapshot: {tag!r} tag with payload {payload!r:.80}")


cdef inline list _list_payload(str tag, object payload):
    if type(payload) is not list:
        _malformed(tag, payload)
    return payload


cdef inline str _str_payload(str tag, object payload):
    if type(payload) is not str:
        _malformed(tag, payload)
    return payload


cdef object _dec_datetime(object payload):
    if type(payload) is str:
        return _fromiso_datetime(payload)
    iso, key, fold = payload
    dt = _fromiso_datetime(iso)
    if key is not None:
        dt = dt.replace(tzinfo=ZoneInfo(key))
    if fold:
        dt = dt.replace(fold=fold)
    return dt


cdef object _resolve(str path, bint do_import):
    """The object at ``"module:QualName"`` (not cached: modules can be reloaded)."""
    module_name, _, qualname = path.partition(":")
    obj = sys.modules.get(module_name)
    if obj is None:
        if not do_import:
            raise UnimportedModuleError(path, module_name)
        obj = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


cdef object _dec_dataclass(str path, dict fields, bint import_modules):
    cls = _resolve(path, import_modules)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ValueError(f"snapshot names {path!r}, which is not a dataclass")
    obj = cls.__new__(cls)
    for name, value in fields.items():
        _object_setattr(obj, name, value)
    if len(fields) != len(cls.__dataclass_fields__):
        # The class gained fields since the snapshot was taken: use defaults.
        for f in dataclasses.fields(cls):
            if f.name in fields:
                continue
            if f.default is not _MISSING:
                _object_setattr(obj, f.name, f.default)
            elif f.default_factory is not _MISSING:
                _object_setattr(obj, f.name, f.default_factory())
    return obj


cdef bint _has_tag_mark(bytes data):
    """True if ``data`` contains the bytes ``{"$`` (see the module docstring)."""
    cdef const char* start = PyBytes_AS_STRING(data)
    cdef const char* end = start + PyBytes_GET_SIZE(data)
    cdef const char* p = start + 2  # the first position a "$" could follow '{"'
    while p < end:
        p = <const char*>memchr(p, c'$', end - p)
        if p == NULL:
            return False
        if (p - 1)[0] == c'"' and (p - 2)[0] == c'{':
            return True
        p += 1
    return False


def decode(data, unpickle=None, bint import_modules=True):
    """Decode a blob written by ``encode`` (bytes, bytearray, memoryview or str).

    ``unpickle(bytes)`` rebuilds ``$pickle`` tags (default: ``pickle.loads``, which runs
    whatever the pickle names: pass a restricted one for blobs you did not write);
    ``import_modules=False`` refuses a ``$dataclass`` whose module is not imported yet
    (``UnimportedModuleError``) instead of importing it.
    """
    cdef bint tagged
    if type(data) is bytes:
        tagged = _has_tag_mark(data)
    elif type(data) is str:
        tagged = _TAG_MARK_STR in <str>data
    else:
        data = bytes(data)
        tagged = _has_tag_mark(data)
    obj = _loads(data)
    if not tagged:
        return obj
    if unpickle is None and import_modules:
        return _dec(obj, _TRUSTING)
    return _dec(obj, _Decoding(unpickle, import_modules))

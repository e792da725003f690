# cython: language_level=3
"""Stable key hashing and batch routing.

The hash is part of the on-disk format: it picks the recovery partition of a
state key, so it must give the same number in every process, run and machine.
Python's ``hash()`` is salted per process and cannot be used.

Definition (format version 1), over the key's UTF-8 bytes ``b``::

    h = 0xcbf29ce484222325                      # FNV-1a 64 offset basis
    for byte in b: h = (h ^ byte) * 0x100000001b3   (mod 2**64)
    h ^= h >> 33; h *= 0xff51afd7ed558ccd       # murmur3 fmix64 finaliser,
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53       # so that ``h % n`` spreads
    h ^= h >> 33                                # well for small ``n``

Never change this without a new format version.
"""

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport uint64_t


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL


cdef inline uint64_t _hash_bytes(const unsigned char* data, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 0xcbf29ce484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ data[i]) * 0x100000001b3ULL
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t _hash_str(object key) except? 0:
    # ``key`` must be a str (or a str subclass, such as a str-valued Enum).
    cdef Py_ssize_t n
    cdef const char* data = PyUnicode_AsUTF8AndSize(key, &n)
    return _hash_bytes(<const unsigned char*>data, n)


def stable_hash(object key):
    """Return the stable 64-bit hash of ``key``'s UTF-8 bytes (``key`` is a ``str``).

    >>> stable_hash("")
    17280346270528514342
    >>> stable_hash("ALL") == stable_hash("ALL")
    True
    """
    if not isinstance(key, str):
        raise TypeError(f"stable_hash needs a str key; got {type(key).__name__!r}")
    return _hash_str(key)


class RoutingError(TypeError):
    """A keyed step received an item that is not a ``(str, value)`` pair."""

    def __init__(self, str step_id, object item):
        self.step_id = step_id
        self.item = item
        super().__init__(
            f"step {step_id!r} requires `(key, value)` 2-tuples with a `str` key as "
            f"input; got {item!r} of type {type(item).__name__!r}"
        )


include "_pairs.pxi"


def check_keyed(list batch not None, str step_id not None):
    """Raise :class:`RoutingError` unless every item is a ``(str, value)`` pair."""
    cdef Py_ssize_t i
    for i in range(PyList_GET_SIZE(batch)):
        _key_of(<object>PyList_GET_ITEM(batch, i), step_id)


def split_by_worker(list batch not None, Py_ssize_t worker_count, str step_id not None):
    """Split ``(key, value)`` pairs into ``worker_count`` lists by key hash.

    Item order within each bucket is the input order.

    >>> split_by_worker([("a", 1), ("b", 2), ("a", 3)], 1, "s")
    [[('a', 1), ('b', 2), ('a', 3)]]
    """
    if worker_count < 1:
        raise ValueError("worker_count must be at least 1")
    cdef list buckets = [[] for _ in range(worker_count)]
    cdef Py_ssize_t i
    cdef object item
    cdef uint64_t n = <uint64_t>worker_count
    for i in range(PyList_GET_SIZE(batch)):
        item = <object>PyList_GET_ITEM(batch, i)
        key = _key_of(item, step_id)
        (<list>buckets[_hash_str(key) % n]).append(item)
    return buckets


def split_keys(list keys not None, Py_ssize_t count):
    """Return the bucket index (``stable_hash(key) % count``) of each key."""
    cdef Py_ssize_t i
    cdef uint64_t n = <uint64_t>count
    return [_hash_str(<str>PyList_GET_ITEM(keys, i)) % n for i in range(PyList_GET_SIZE(keys))]


def split_dict(dict entries not None, Py_ssize_t count):
    """Split a dict keyed by ``str`` into ``count`` dicts by ``stable_hash(key) % count``.

    Keys keep their order within each part.
    """
    cdef list parts = [{} for _ in range(count)]
    cdef uint64_t n = <uint64_t>count
    for key, value in entries.items():
        (<dict>parts[_hash_str(<str>key) % n])[key] = value
    return parts

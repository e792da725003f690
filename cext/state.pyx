# cython: language_level=3
"""The inner loops of keyed stateful steps.

``states`` maps each key to its state; a key with no entry has no state.
``dirty`` (a dict, or ``None`` when nothing is snapshotted) collects the keys
whose state changed, so an epoch's snapshot writes only those. It maps each
key to whether the key had state when it was first changed (at the last
snapshot): a key created and discarded between two snapshots writes nothing.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_SetDefault, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject

from fastflow._cext.routing import RoutingError

include "_pairs.pxi"
include "_gc.pxi"


class BuilderError(Exception):
    """A state builder raised; ``__cause__`` is its exception.

    Lets the engine tell a failing ``builder()`` from a failing mapper or
    folder, which are called in the same loop.
    """


cdef inline object _build(object builder):
    try:
        return builder()
    except Exception as ex:
        raise BuilderError() from ex


cdef inline object _pair_result(object res, str step_id):
    """Return ``res`` as a 2-tuple; like unpacking it, any 2-item iterable will do."""
    pair = res
    if not isinstance(pair, tuple):
        try:
            pair = tuple(res)
        except TypeError:
            pair = ()
    if PyTuple_GET_SIZE(pair) != 2:
        raise TypeError(
            f"return value of `mapper` in step {step_id!r} must be a "
            f"`(updated_state, emit_value)` 2-tuple; got {res!r}"
        )
    return pair


cdef inline tuple _map_one(
    dict states, dict dirty, object item, object mapper, object builder, str step_id
):
    """Update one key's state with one value; return ``(key, what the mapper emitted)``."""
    key = _key_of(item, step_id)
    cdef PyObject* found = PyDict_GetItem(states, key)
    if found is not NULL:
        state = <object>found
    elif builder is None:
        state = None
    else:
        state = _build(builder)
    res = _pair_result(mapper(state, _value_of(item)), step_id)
    state = <object>PyTuple_GET_ITEM(res, 0)
    if state is None:
        if found is not NULL:
            del states[key]
    else:
        PyDict_SetItem(states, key, state)
    if dirty is not None:
        PyDict_SetDefault(dirty, key, found is not NULL)
    return (key, <object>PyTuple_GET_ITEM(res, 1))


def map_states(
    dict states not None,
    dict dirty,
    list batch not None,
    object mapper,
    object builder,
    str step_id not None,
):
    """Run ``mapper(state, value) -> (new_state, emit)`` over a batch of pairs.

    A key with no state starts from ``builder()``, or ``None`` when ``builder``
    is ``None``. A new state of ``None`` discards the key. Returns the
    ``(key, emit)`` pairs in input order.
    """
    cdef Py_ssize_t i, n = PyList_GET_SIZE(batch)
    cdef list out = [None] * n
    cdef bint batch_tracked = _hide(batch), out_tracked = _hide(out)
    try:
        for i in range(n):
            out[i] = _map_one(
                states, dirty, <object>PyList_GET_ITEM(batch, i), mapper, builder, step_id
            )
    finally:
        _unhide(batch, batch_tracked)
    _unhide(out, out_tracked)
    return out


def flat_map_states(
    dict states not None,
    dict dirty,
    list batch not None,
    object mapper,
    object builder,
    str step_id not None,
):
    """Like :func:`map_states`, but ``mapper`` returns ``(new_state, iterable of emits)``."""
    cdef list out = []
    cdef Py_ssize_t i
    cdef tuple emitted
    cdef bint batch_tracked = _hide(batch), out_tracked = _hide(out)
    try:
        for i in range(PyList_GET_SIZE(batch)):
            emitted = _map_one(
                states, dirty, <object>PyList_GET_ITEM(batch, i), mapper, builder, step_id
            )
            key = <object>PyTuple_GET_ITEM(emitted, 0)
            for emit in <object>PyTuple_GET_ITEM(emitted, 1):
                out.append((key, emit))
    finally:
        _unhide(batch, batch_tracked)
    _unhide(out, out_tracked)
    return out


def fold_states(
    dict states not None,
    dict dirty,
    list batch not None,
    object folder,
    object builder,
    str step_id not None,
):
    """Fold every value into its key's state: ``state = folder(state, value)``.

    A key with no state starts from ``builder()``; with no ``builder``, its
    first value is its state (a reduce). Nothing is emitted here.
    """
    cdef PyObject* found
    cdef Py_ssize_t i
    for i in range(PyList_GET_SIZE(batch)):
        item = <object>PyList_GET_ITEM(batch, i)
        key = _key_of(item, step_id)
        found = PyDict_GetItem(states, key)
        if found is not NULL:
            state = folder(<object>found, _value_of(item))
        elif builder is None:
            state = _value_of(item)
        else:
            state = folder(_build(builder), _value_of(item))
        PyDict_SetItem(states, key, state)
        if dirty is not None:
            PyDict_SetDefault(dirty, key, found is not NULL)


def group_by_key(list batch not None, str step_id not None):
    """Group the values of a batch of pairs by key, keys and values in input order."""
    cdef dict groups = {}
    cdef PyObject* found
    cdef Py_ssize_t i
    for i in range(PyList_GET_SIZE(batch)):
        item = <object>PyList_GET_ITEM(batch, i)
        key = _key_of(item, step_id)
        found = PyDict_GetItem(groups, key)
        if found is NULL:
            groups[key] = [_value_of(item)]
        else:
            (<list>found).append(_value_of(item))
    return groups

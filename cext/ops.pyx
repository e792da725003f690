# cython: language_level=3
"""Tight loops over a batch for the stateless operators.

Each function applies a user function to every item of a batch and returns a
new list; none of them keeps state. They raise the user's exception as is (the
engine adds the step id) and a TypeError naming the step when an item or a
return value has the wrong type.

User code may change the batch while a loop runs (a mapper that appends to or
clears the list it is given): every loop re-reads the batch's length before
each item, as a Python ``for`` over the list does, and holds a reference to
the item it hands over, so it never reads past the end nor a freed item.
Items added during the loop are handled, removed ones are not.
"""

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

from cpython.object cimport Py_TYPE, PyObject, PyTypeObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE


cdef inline tuple _pair(object item, str step_id):
    """Unpack a ``(key, value)`` item, as Bytewax does: any 2-item sequence passes."""
    if isinstance(item, tuple) and PyTuple_GET_SIZE(item) == 2:
        return <tuple>item
    try:
        key, value = item
    except (TypeError, ValueError):
        raise TypeError(
            f"step {step_id!r} requires `(key, value)` 2-tuples as input; "
            f"got {item!r} of type {type(item).__name__!r}"
        ) from None
    return (key, value)


cdef inline object _not_bool(str step_id, str what, object got):
    return TypeError(
        f"return value of `{what}` in step {step_id!r} must be a `bool`; "
        f"got {got!r} of type {type(got).__name__!r}"
    )


cdef inline list _fit(list out, Py_ssize_t done, Py_ssize_t allocated):
    """Drop the unused tail of ``out`` when the batch shrank during the loop."""
    if done < allocated:
        del out[done:]
    return out


def map_items(object mapper, list batch not None):
    """``[mapper(x) for x in batch]``."""
    cdef Py_ssize_t i = 0, n = PyList_GET_SIZE(batch)
    cdef list out = [None] * n
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)
        if i < n:
            out[i] = mapper(item)
        else:
            out.append(mapper(item))
        i += 1
    return _fit(out, i, n)


def filter_items(object predicate, list batch not None, str step_id not None):
    """Keep the items for which ``predicate`` returns ``True`` (it must return a bool)."""
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)
        i += 1
        keep = predicate(item)
        if keep is True:
            out.append(item)
        elif keep is not False:
            raise _not_bool(step_id, "predicate", keep)
    return out


def filter_map_items(object mapper, list batch not None):
    """Map every item and drop the ``None`` results."""
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)
        i += 1
        res = mapper(item)
        if res is not None:
            out.append(res)
    return out


def flat_map_items(object mapper, list batch not None):
    """Concatenate the iterables ``mapper`` returns for each item."""
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)
        i += 1
        out.extend(mapper(item))
    return out


def branch_items(object predicate, list batch not None, str step_id not None):
    """Split a batch into ``(trues, falses)`` by a predicate returning a bool."""
    cdef list trues = [], falses = []
    cdef Py_ssize_t i = 0
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)
        i += 1
        which = predicate(item)
        if which is True:
            trues.append(item)
        elif which is False:
            falses.append(item)
        else:
            raise _not_bool(step_id, "predicate", which)
    return trues, falses


def key_on_items(object key_fn, list batch not None, str step_id not None):
    """Pair every item with the ``str`` key ``key_fn`` returns for it."""
    cdef Py_ssize_t i = 0, n = PyList_GET_SIZE(batch)
    cdef list out = [None] * n
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)
        key = key_fn(item)
        if not isinstance(key, str):
            raise TypeError(
                f"return value of `key` in step {step_id!r} must be a `str`; "
                f"got {key!r} of type {type(key).__name__!r}"
            )
        if i < n:
            out[i] = (key, item)
        else:
            out.append((key, item))
        i += 1
    return _fit(out, i, n)


def key_rm_items(list batch not None, str step_id not None):
    """Drop the keys of ``(key, value)`` pairs."""
    cdef Py_ssize_t i = 0, n = PyList_GET_SIZE(batch)
    cdef list out = [None] * n
    cdef object item, value
    cdef PyObject* p
    while i < PyList_GET_SIZE(batch):
        p = PyList_GET_ITEM(batch, i)
        if Py_TYPE(<object>p) is <PyTypeObject*>tuple and PyTuple_GET_SIZE(<object>p) == 2:
            value = <object>PyTuple_GET_ITEM(<object>p, 1)  # no user code runs
        else:  # unpacking another sequence runs its code, which may change the batch
            item = <object>p
            value = _pair(item, step_id)[1]
        if i < n:
            out[i] = value
        else:
            out.append(value)
        i += 1
    return _fit(out, i, n)


def map_value_items(object mapper, list batch not None, str step_id not None):
    """Map the value of every ``(key, value)`` pair, keeping its key."""
    cdef Py_ssize_t i = 0, n = PyList_GET_SIZE(batch)
    cdef list out = [None] * n
    cdef tuple pair
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)  # held: unpacking may run user code
        pair = _pair(item, step_id)
        if i < n:
            out[i] = (pair[0], mapper(pair[1]))
        else:
            out.append((pair[0], mapper(pair[1])))
        i += 1
    return _fit(out, i, n)


def filter_value_items(object predicate, list batch not None, str step_id not None):
    """Keep the pairs whose value ``predicate`` returns ``True`` for."""
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)
        i += 1
        keep = predicate(_pair(item, step_id)[1])
        if keep is True:
            out.append(item)
        elif keep is not False:
            raise _not_bool(step_id, "predicate", keep)
    return out


def filter_map_value_items(object mapper, list batch not None, str step_id not None):
    """Map the value of every pair, dropping pairs whose new value is ``None``."""
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)  # held: unpacking may run user code
        pair = _pair(item, step_id)
        i += 1
        res = mapper(pair[1])
        if res is not None:
            out.append((pair[0], res))
    return out


def flat_map_value_items(object mapper, list batch not None, str step_id not None):
    """Pair the key of every pair with each value ``mapper`` returns for its value."""
    cdef list out = []
    cdef Py_ssize_t i = 0
    cdef object item
    while i < PyList_GET_SIZE(batch):
        item = <object>PyList_GET_ITEM(batch, i)  # held: unpacking may run user code
        pair = _pair(item, step_id)
        i += 1
        key = pair[0]
        for res in mapper(pair[1]):
            out.append((key, res))
    return out


def index_of_type(list items not None, tuple types not None):
    """Return the index of the first item whose type is one of ``types``, or -1.

    Types are compared by identity (no subclasses), which keeps the scan of a
    batch with no such item at a few nanoseconds per item.
    """
    cdef Py_ssize_t i, j, n = PyTuple_GET_SIZE(types)
    cdef PyTypeObject* t
    for i in range(PyList_GET_SIZE(items)):
        t = Py_TYPE(<object>PyList_GET_ITEM(items, i))
        for j in range(n):
            if <PyObject*>t is PyTuple_GET_ITEM(types, j):
                return i
    return -1

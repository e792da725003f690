# cython: language_level=3
"""The inner loops of keyed stateful steps.

``states`` maps each key to its state; a key with no entry has no state.
``dirty`` (a :class:`ChangeTracker`, or ``None`` when nothing is
snapshotted) records which keys changed, so an epoch's snapshot writes only
those.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_SetDefault, PyDict_SetItem, PyDict_Size
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


cdef class ChangeTracker:
    """The keys of one step that changed since the last snapshot, recorded cheaply.

    Why not one set of keys: adding every changed key to a hash table costs a
    random memory access per item, the largest cost recovery added to a keyed
    step. Instead, an update of a key that has state is appended to a list
    (sequential writes), and only creations and discards, which need to know
    whether the key had state at the last snapshot, go to a dict. Once the list
    holds as many entries as there are live keys, it is dropped and every live
    key counts as changed: writing them all then costs no more than what was
    recorded. :meth:`take` returns, for every changed key, whether it had state
    at the last snapshot (a key created and discarded in between has ``False``
    and no state: nothing is written for it).
    """

    cdef dict _had
    cdef list _updated
    cdef bint _everything

    def __init__(self):
        self._had = {}
        self._updated = []
        self._everything = False

    cdef inline void updated(self, object key, Py_ssize_t live):
        """``key``, which has state, got a new one."""
        if not self._everything:
            self._updated.append(key)
            if PyList_GET_SIZE(self._updated) >= live:
                self._everything = True
                self._updated = []

    def mark(self, str key not None, bint had):
        """``key`` was created (``had`` false) or discarded (``had`` true) right now.

        Only the first mark of a key since the last snapshot counts: that is when
        whether it had state at the snapshot is known.
        """
        PyDict_SetDefault(self._had, key, had)

    def take(self, dict states not None):
        """Return ``{changed key: had state at the last snapshot}`` and start over.

        With every key changed, the result lists ``states``'s keys first, in its
        order, so the encoder can walk both dicts together.
        """
        cdef dict changed
        if self._everything:
            changed = dict.fromkeys(states, True)
            changed.update(self._had)  # keeps the order; adds the discarded keys at the end
        else:
            changed = self._had
            for key in self._updated:
                PyDict_SetDefault(changed, key, True)
        self._had = {}
        self._updated = []
        self._everything = False
        return changed


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
    dict states, ChangeTracker dirty, object item, object mapper, object builder, str step_id
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
            if dirty is not None:
                PyDict_SetDefault(dirty._had, key, True)
    else:
        PyDict_SetItem(states, key, state)
        if dirty is not None:
            if found is not NULL:
                dirty.updated(key, PyDict_Size(states))
            else:
                PyDict_SetDefault(dirty._had, key, False)
    return (key, <object>PyTuple_GET_ITEM(res, 1))


def map_states(
    dict states not None,
    ChangeTracker dirty,
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
    cdef Py_ssize_t i = 0, n = PyList_GET_SIZE(batch)
    cdef list out = [None] * n
    cdef object item
    cdef bint batch_tracked = _hide(batch), out_tracked = _hide(out)
    try:
        # The length is read again each time: user code may change the batch.
        while i < PyList_GET_SIZE(batch):
            item = <object>PyList_GET_ITEM(batch, i)
            pair = _map_one(states, dirty, item, mapper, builder, step_id)
            if i < n:
                out[i] = pair
            else:
                out.append(pair)
            i += 1
        if i < n:
            del out[i:]
    finally:
        _unhide(batch, batch_tracked)
    _unhide(out, out_tracked)
    return out


def flat_map_states(
    dict states not None,
    ChangeTracker dirty,
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
    cdef object item
    try:
        i = 0
        while i < PyList_GET_SIZE(batch):  # user code may change the batch
            item = <object>PyList_GET_ITEM(batch, i)
            i += 1
            emitted = _map_one(states, dirty, item, mapper, builder, step_id)
            key = <object>PyTuple_GET_ITEM(emitted, 0)
            for emit in <object>PyTuple_GET_ITEM(emitted, 1):
                out.append((key, emit))
    finally:
        _unhide(batch, batch_tracked)
    _unhide(out, out_tracked)
    return out


def fold_states(
    dict states not None,
    ChangeTracker dirty,
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
    cdef Py_ssize_t i = 0
    while i < PyList_GET_SIZE(batch):  # user code may change the batch
        item = <object>PyList_GET_ITEM(batch, i)
        i += 1
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
            if found is not NULL:
                dirty.updated(key, PyDict_Size(states))
            else:
                PyDict_SetDefault(dirty._had, key, False)


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

# Shared by the keyed modules: the `(str, value)` check every keyed step makes.
# RoutingError must be bound in the including module.
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE


cdef inline object _key_of(object item, str step_id):
    """Return the key of a `(str, value)` pair or raise RoutingError naming the step."""
    if not isinstance(item, tuple) or PyTuple_GET_SIZE(item) != 2:
        raise RoutingError(step_id, item)
    key = <object>PyTuple_GET_ITEM(item, 0)
    if not isinstance(key, str):
        raise RoutingError(step_id, item)
    return key


cdef inline object _value_of(object item):
    """Return the value of a pair already checked by `_key_of`."""
    return <object>PyTuple_GET_ITEM(item, 1)

# cython: language_level=3
"""The Kafka connector's per-message loops: messages read into items, items produced.

Why compiled: a Kafka batch is thousands of messages, and the Python loops spent most
of their time on the interpreter's own work (bytecode dispatch, attribute lookups),
not on the librdkafka calls. The same calls in C cost about half. Anything unusual (an
error message, a message with headers, a full producer queue) is left to the Python
caller, which these loops hand back the position of.
"""

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

cdef object _new = object.__new__
cdef object _set_attribute = object.__setattr__  # past a frozen dataclass's refusal


def read_messages(list messages, Py_ssize_t start, type cls, str topic, object partition,
                  list out):
    """Append ``cls`` items for ``messages[start:]`` to ``out``, up to the first error.

    Returns the index of the first message with an error (``len(messages)`` if none).
    The items' fields are set as one dict (``cls`` is a frozen dataclass).
    """
    cdef Py_ssize_t i, n = PyList_GET_SIZE(messages)
    cdef object message, item, headers
    for i in range(start, n):
        message = <object>PyList_GET_ITEM(messages, i)
        if message.error() is not None:
            return i
        headers = message.headers()
        item = _new(cls)
        _set_attribute(item, "__dict__", {
            "key": message.key(),
            "value": message.value(),
            "topic": topic,
            "headers": [] if headers is None else headers,
            "latency": message.latency(),
            "offset": message.offset(),
            "partition": partition,
            "timestamp": message.timestamp(),
        })
        out.append(item)
    return n


def produce_plain(list items, Py_ssize_t start, type cls, object topic, object produce):
    """``produce(topic, value, key)`` for ``items[start:]`` while they need nothing else.

    An item qualifies when it is exactly ``cls`` with no partition, headers or
    timestamp of its own, and a topic (its own, else ``topic``). Returns the index of
    the first item that does not, or whose ``produce`` raised ``BufferError`` (so it
    was not produced), or ``len(items)``.
    """
    cdef Py_ssize_t i, n = PyList_GET_SIZE(items)
    cdef object item, to
    cdef dict fields
    for i in range(start, n):
        item = <object>PyList_GET_ITEM(items, i)
        if type(item) is not cls:
            return i
        fields = item.__dict__
        to = fields["topic"]
        if to is None:
            to = topic
        if (to is None or fields["partition"] is not None or fields["headers"]
                or fields["timestamp"]):
            return i
        try:
            produce(to, fields["value"], fields["key"])
        except BufferError:
            return i
    return n

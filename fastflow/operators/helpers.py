"""Small functions to build the callbacks that operators take.

As ``bytewax.operators.helpers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["map_dict_value"]

K = TypeVar("K")
V = TypeVar("V")


def map_dict_value(key: K, mapper: Callable[[V], V]) -> Callable[[dict[K, V]], dict[K, V]]:
    """Return a mapper that replaces ``d[key]`` with ``mapper(d[key])`` in each dict ``d``.

    Meant for :func:`fastflow.operators.map` on a stream of dicts. As in
    Bytewax, the dict is changed in place and returned; a dict without
    ``key`` raises ``KeyError``.

    >>> import fastflow.operators as op
    >>> from fastflow.dataflow import Dataflow
    >>> from fastflow.operators.helpers import map_dict_value
    >>> from fastflow.testing import TestingSource, run_main
    >>> flow = Dataflow("helpers_eg")
    >>> rows = op.input("rows", flow, TestingSource([{"name": "ann", "n": 1}]))
    >>> _ = op.inspect("show", op.map("upper", rows, map_dict_value("name", str.upper)))
    >>> run_main(flow)
    helpers_eg.show: {'name': 'ANN', 'n': 1}
    """

    def map_value(d: dict[K, V]) -> dict[K, V]:
        d[key] = mapper(d[key])
        return d

    return map_value

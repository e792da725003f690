"""Build dataflows: a tree of steps connected by streams.

A :class:`Dataflow` holds steps; each step is a call to an *operator*, a Python
function decorated with :func:`operator`. Operators are composed from a few
*core* operators; composing nests step ids (``flow.outer.inner``). Nothing runs
while a flow is built: the runtime later flattens the tree into its core steps.

>>> from fastflow.dataflow import Dataflow
>>> import fastflow.operators as op
>>> from fastflow.testing import TestingSource, run_main
>>> flow = Dataflow("doc")
>>> nums = op.input("nums", flow, TestingSource([1, 2]))
>>> _ = op.inspect("show", nums.then(op.map, "plus_one", lambda x: x + 1))
>>> run_main(flow)
doc.show: 2
doc.show: 3
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Concatenate, Generic, ParamSpec, Tuple, TypeAlias, TypeVar

__all__ = [
    "Dataflow",
    "KeyedStream",
    "Operator",
    "Stream",
    "f_repr",
    "operator",
]

X_co = TypeVar("X_co", covariant=True)
V = TypeVar("V")
R = TypeVar("R")
P = ParamSpec("P")


def f_repr(func: Callable) -> str:
    """Name a function in error messages: its qualified name, or its repr."""
    name = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if name is None:
        return repr(func)
    return f"<function {module}.{name}>" if module else f"<function {name}>"


@dataclass(frozen=True)
class CoreSpec:
    """What the runtime needs of a core step: its kind, inputs, outputs and arguments."""

    kind: str
    ups: Tuple[str, ...]
    downs: Tuple[Tuple[str, str], ...]
    args: Tuple[Tuple[str, Any], ...]

    def arg(self, name: str) -> Any:
        """Return the core argument ``name``."""
        return dict(self.args)[name]


@dataclass
class Operator:
    """One step of a dataflow: an operator call and the steps it is made of."""

    step_name: str
    step_id: str
    substeps: list[Operator] = field(default_factory=list)
    ups: dict[str, list[str]] = field(default_factory=dict)
    downs: dict[str, str] = field(default_factory=dict)
    core: CoreSpec | None = None


@dataclass(frozen=True)
class _Scope:
    """Where new steps go: the id prefix and the step list of the enclosing step."""

    parent_id: str
    substeps: list[Operator]
    flow: Dataflow


@dataclass(frozen=True)
class Stream(Generic[X_co]):
    """A handle on the items one step emits, to be passed to the next operators."""

    stream_id: str
    _scope: _Scope = field(repr=False, compare=False)

    def then(
        self,
        op_fn: Callable[Concatenate[str, Stream[X_co], P], R],
        step_id: str,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Chain an operator: ``s.then(op.map, "id", f)`` is ``op.map("id", s, f)``.

        >>> from fastflow.dataflow import Dataflow
        >>> import fastflow.operators as op
        >>> from fastflow.testing import TestingSource, run_main
        >>> flow = Dataflow("then_eg")
        >>> s = op.input("inp", flow, TestingSource([1]))
        >>> _ = s.then(op.map, "neg", lambda x: -x).then(op.inspect, "show")
        >>> run_main(flow)
        then_eg.show: -1
        """
        return op_fn(step_id, self, *args, **kwargs)

    def flow(self) -> Dataflow:
        """Return the dataflow this stream belongs to (to add top-level steps to it)."""
        return self._scope.flow

    def _with_scope(self, scope: _Scope) -> Stream[X_co]:
        return Stream(self.stream_id, scope)


KeyedStream: TypeAlias = Stream[Tuple[str, V]]
"""A stream of ``(key, value)`` 2-tuples with ``str`` keys, as keyed operators need."""


@dataclass
class Dataflow:
    """The root of a flow: give it a unique id and add steps with operators."""

    flow_id: str
    substeps: list[Operator] = field(default_factory=list)
    _scope: _Scope = field(init=False, repr=False, compare=False)
    _step_ids: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.flow_id, str):
            raise TypeError(f"flow_id must be a str; got a {type(self.flow_id).__name__}")
        if not self.flow_id or "." in self.flow_id:
            raise ValueError(f"flow_id {self.flow_id!r} must be non-empty and contain no '.'")
        self._scope = _Scope(self.flow_id, self.substeps, self)

    def _with_scope(self, scope: _Scope) -> Dataflow:
        scoped = object.__new__(Dataflow)
        scoped.__dict__.update(self.__dict__)
        scoped._scope = scope
        return scoped


# Steps being built (with their inner scope), innermost last: core operator
# bodies attach their spec to the top one.
_building: list[tuple[Operator, _Scope]] = []


def _scope_of(value: Any) -> _Scope | None:
    if isinstance(value, (Stream, Dataflow)):
        return value._scope
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, Stream):
                return item._scope
    return None


def _rescope(value: Any, scope: _Scope) -> Any:
    """Point streams (also inside lists, tuples and dataclasses) at ``scope``."""
    if isinstance(value, (Stream, Dataflow)):
        return value._with_scope(scope)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Stream) for v in value):
        return type(value)(_rescope(v, scope) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _rescope(getattr(value, f.name), scope)
            for f in dataclasses.fields(value)
            if isinstance(getattr(value, f.name), Stream)
        }
        return dataclasses.replace(value, **changes) if changes else value
    return value


def _stream_ids(value: Any) -> list[str]:
    if isinstance(value, Stream):
        return [value.stream_id]
    if isinstance(value, (list, tuple)):
        return [v.stream_id for v in value if isinstance(v, Stream)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            getattr(value, f.name).stream_id
            for f in dataclasses.fields(value)
            if isinstance(getattr(value, f.name), Stream)
        ]
    return []


def _down_ports(value: Any) -> dict[str, str]:
    if isinstance(value, Stream):
        return {"down": value.stream_id}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: getattr(value, f.name).stream_id
            for f in dataclasses.fields(value)
            if isinstance(getattr(value, f.name), Stream)
        }
    return {}


def operator(
    builder: Callable[..., Any] | None = None, *, _core: bool = False
) -> Callable[..., Any]:
    """Turn a function into an operator: calling it adds a step to the dataflow.

    The function's first parameter must be ``step_id``; another parameter must
    be a :class:`Stream` (or list of them) or the :class:`Dataflow`, which tells
    where the step goes. Operators called inside the body become substeps, so
    their ids are nested under this step's id.

    >>> from fastflow.dataflow import Dataflow, Stream, operator
    >>> import fastflow.operators as op
    >>> from fastflow.testing import TestingSource, run_main
    >>> @operator
    ... def add_then_double(step_id: str, up: Stream[int], n: int) -> Stream[int]:
    ...     up = op.map("add", up, lambda x: x + n)
    ...     return op.map("double", up, lambda x: x * 2)
    >>> flow = Dataflow("eg")
    >>> s = op.input("inp", flow, TestingSource([1, 2]))
    >>> _ = op.inspect("show", add_then_double("calc", s, 10))
    >>> [step.step_id for step in flow.substeps[1].substeps]
    ['eg.calc.add', 'eg.calc.double']
    >>> run_main(flow)
    eg.show: 22
    eg.show: 24
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)
        params = list(sig.parameters)
        if not params or params[0] != "step_id":
            raise TypeError(f"operator {f_repr(func)} must take `step_id` as its first parameter")

        @functools.wraps(func)
        def add_step(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            step_id = bound.arguments["step_id"]
            if not isinstance(step_id, str):
                raise TypeError(
                    f"{func.__name__}: step_id must be a str; got {step_id!r} "
                    f"of type {type(step_id).__name__}"
                )
            if "." in step_id or not step_id:
                raise ValueError(
                    f"{func.__name__}: step_id {step_id!r} must be non-empty and contain no '.'"
                )
            scope = next(
                (s for s in map(_scope_of, bound.arguments.values()) if s is not None), None
            )
            if scope is None:
                got = ", ".join(
                    f"{name}={type(value).__name__}"
                    for name, value in bound.arguments.items()
                    if name != "step_id"
                )
                raise TypeError(
                    f"operator {func.__name__!r} (step {step_id!r}) needs a `Stream` or the "
                    f"`Dataflow` to attach to; got {got}; did you forget to unpack the result "
                    "of an operator that returns several streams?"
                )
            full_id = f"{scope.parent_id}.{step_id}"
            if full_id in scope.flow._step_ids:
                raise ValueError(
                    f"step {full_id!r} already exists; step ids must be unique "
                    "within their operator"
                )
            scope.flow._step_ids.add(full_id)
            step = Operator(func.__name__, full_id)
            inner = _Scope(full_id, step.substeps, scope.flow)
            for name, value in bound.arguments.items():
                ids = _stream_ids(value) if not isinstance(value, Dataflow) else []
                if ids:
                    step.ups[name] = ids
                bound.arguments[name] = _rescope(value, inner)
            _building.append((step, inner))
            try:
                result = func(*bound.args, **bound.kwargs)
            finally:
                _building.pop()
            if _core and step.core is None:
                raise AssertionError(f"core operator {func.__name__} declared no core spec")
            step.downs = _down_ports(result)
            scope.substeps.append(step)
            return _rescope(result, scope)

        add_step._fastflow_core = _core  # type: ignore[attr-defined]
        return add_step

    return decorate(builder) if builder is not None else decorate


def _core_step(kind: str, ups: list[Stream[Any]], ports: tuple[str, ...], **args: Any) -> Any:
    """Declare the step being built as core ``kind`` and return its output streams.

    Returns one :class:`Stream` per name in ``ports``, or the only one if there
    is exactly one.
    """
    step, scope = _building[-1]
    downs = tuple((port, f"{step.step_id}.{port}") for port in ports)
    step.core = CoreSpec(kind, tuple(s.stream_id for s in ups), downs, tuple(args.items()))
    streams = [Stream(stream_id, scope) for _, stream_id in downs]
    return streams[0] if len(streams) == 1 else streams

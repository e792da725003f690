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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, Generic, ParamSpec, TypeAlias, TypeVar, cast, overload

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


def f_repr(func: Callable[..., Any]) -> str:
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
    ups: tuple[str, ...]
    downs: tuple[tuple[str, str], ...]
    args: tuple[tuple[str, Any], ...]

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


KeyedStream: TypeAlias = Stream[tuple[str, V]]
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
            raise TypeError(
                f"'flow_id' must be a `str`; got {self.flow_id!r} of type "
                f"{type(self.flow_id).__name__}"
            )
        if "." in self.flow_id:
            raise ValueError("flow ID can't contain a period `.`")
        if not self.flow_id:
            raise ValueError("'flow_id' must not be empty")
        self._scope = _Scope(self.flow_id, self.substeps, self)

    def _with_scope(self, scope: _Scope) -> Dataflow:
        scoped = object.__new__(Dataflow)
        scoped.__dict__.update(self.__dict__)
        scoped._scope = scope
        return scoped


# Steps being built (with their inner scope), innermost last: core operator
# bodies attach their spec to the top one.
_building: list[tuple[Operator, _Scope]] = []


def _carried(value: Any, kind: inspect._ParameterKind) -> list[Stream[Any] | Dataflow]:
    """The streams (or the dataflow) an argument brings into an operator, to be re-scoped.

    As in Bytewax: a ``Stream`` or ``Dataflow`` argument, and the streams of
    ``*args`` and ``**kwargs``. Streams nested in other values (a list, a dict,
    a dataclass) are not carried: using them inside the operator is a scoping
    error.
    """
    if isinstance(value, (Stream, Dataflow)):
        return [value]
    if kind is inspect.Parameter.VAR_POSITIONAL:
        return [v for v in value if isinstance(v, Stream)]
    if kind is inspect.Parameter.VAR_KEYWORD:
        return [v for v in value.values() if isinstance(v, Stream)]
    return []


def _rescope_arg(value: Any, kind: inspect._ParameterKind, scope: _Scope) -> Any:
    """Point the streams :func:`_carried` finds in an argument at ``scope``."""
    if isinstance(value, (Stream, Dataflow)):
        return value._with_scope(scope)
    if kind is inspect.Parameter.VAR_POSITIONAL:
        return tuple(v._with_scope(scope) if isinstance(v, Stream) else v for v in value)
    if kind is inspect.Parameter.VAR_KEYWORD:
        return {k: v._with_scope(scope) if isinstance(v, Stream) else v for k, v in value.items()}
    return value


def _rescope(value: Any, scope: _Scope) -> Any:
    """Point the streams an operator returns (also in lists, tuples, dataclasses) at ``scope``."""
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


def _check_step_id(op_name: str, step_id: Any) -> None:
    """Refuse a step id that is not a non-empty ``str`` without periods (Bytewax's wording too)."""
    if not isinstance(step_id, str):
        raise TypeError(
            f"{op_name}: 'step_id' must be a `str`; got {step_id!r} of type "
            f"{type(step_id).__name__}"
        )
    if "." in step_id:
        raise ValueError(
            f"{op_name}: 'step_id' can't contain any periods '.'; got {step_id!r} "
            "(periods separate the ids of nested steps)"
        )
    if not step_id:
        raise ValueError(f"{op_name}: 'step_id' must not be empty")


def _nested_streams(value: Any) -> list[Stream[Any]]:
    """The streams inside a list, tuple, dict or dataclass (not carried into operators)."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [getattr(value, f.name) for f in dataclasses.fields(value)]
    else:
        return []
    return [item for item in items if isinstance(item, Stream)]


_STREAM_NAMES = ("Stream", "KeyedStream", "fastflow.dataflow.Stream")


def _no_scope_error(func: Callable[..., Any], sig: inspect.Signature, bound: Any) -> TypeError:
    """No argument brought a ``Stream`` or the ``Dataflow``: say which one should have."""
    args = {name: value for name, value in bound.arguments.items() if name != "step_id"}
    got = ", ".join(f"{name}={type(value).__name__}" for name, value in args.items())
    annotated = {name: str(sig.parameters[name].annotation) for name in args}
    wanted = next((n for n, a in annotated.items() if "Stream" in a or "Dataflow" in a), None)
    what = ""
    if wanted is not None:
        kind = "Dataflow" if "Dataflow" in annotated[wanted] else "Stream"
        what = f"{wanted!r} argument must be a `{kind}`; "
    nested = [name for name, value in args.items() if _nested_streams(value)]
    if any(not annotated[name].lstrip("'\"").startswith(_STREAM_NAMES) for name in nested):
        hint = (
            "streams inside a list, dict or dataclass argument do not count (as in Bytewax): "
            "take them as `*ups: Stream` (or `**ups: Stream`) parameters"
        )
    else:
        hint = "did you forget to unpack the result of an operator that returns several streams?"
    return TypeError(
        f"operator {func.__name__!r} (step {bound.arguments['step_id']!r}) needs a `Stream` or "
        f"the `Dataflow` to attach to: {what}got {got}; {hint}"
    )


def _scope_error(op_name: str, step_id: str, scopes: list[_Scope]) -> AssertionError:
    """Streams of several scopes given to one operator (the error type Bytewax raises)."""
    names = ", ".join(
        repr(scope.parent_id) + ("" if scope.flow is scopes[0].flow else " (another Dataflow)")
        for scope in scopes
    )
    return AssertionError(
        f"inconsistent stream scoping: the `Stream` arguments of operator {op_name!r} "
        f"(step {step_id!r}) come from several scopes ({names}); expected one. A stream "
        "used inside an operator must come in through that operator's `Stream`, "
        "`*args: Stream` or `**kwargs: Stream` parameters; streams nested in a list, dict "
        "or dataclass argument, captured from an enclosing function, or of another "
        "Dataflow are not re-scoped. See `fastflow.dataflow.operator`."
    )


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


@overload
def operator(builder: Callable[P, R]) -> Callable[P, R]: ...


@overload
def operator(
    builder: None = None, *, _core: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def operator(
    builder: Callable[P, R] | None = None, *, _core: bool = False
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn a function into an operator: calling it adds a step to the dataflow.

    The function's first parameter must be ``step_id`` (a ``str`` without
    periods). The streams it takes as :class:`Stream` parameters, as
    ``*args: Stream`` or ``**kwargs: Stream``, or the :class:`Dataflow`, tell
    where the step goes; they must all come from the same place (the same
    dataflow, at the same nesting level). Inside the body they are re-scoped,
    so operators called there become substeps, with ids nested under this
    step's id. As in Bytewax, streams nested in other arguments (a
    ``list[Stream]``, a dict, a dataclass) are not re-scoped: using them
    inside the body fails at build time with an "inconsistent stream scoping"
    ``AssertionError``; take them as ``*args`` instead.

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

    Several streams at once come in as ``*args``:

    >>> @operator
    ... def merge_all(step_id: str, *ups: Stream[int]) -> Stream[int]:
    ...     return op.merge("merge", *ups)
    >>> flow = Dataflow("many")
    >>> a = op.input("a", flow, TestingSource([1]))
    >>> b = op.input("b", flow, TestingSource([2]))
    >>> _ = op.inspect("show", merge_all("all", a, b))
    >>> run_main(flow)
    many.show: 1
    many.show: 2
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        sig = inspect.signature(func)
        params = list(sig.parameters)
        kinds = {name: param.kind for name, param in sig.parameters.items()}
        if not params or params[0] != "step_id":
            raise TypeError(f"operator {f_repr(func)} must take `step_id` as its first parameter")

        @functools.wraps(func)
        def add_step(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            step_id = bound.arguments["step_id"]
            _check_step_id(func.__name__, step_id)
            carried = {
                name: _carried(value, kinds[name])
                for name, value in bound.arguments.items()
                if name != "step_id"
            }
            scopes: dict[tuple[str, int], _Scope] = {}
            for values in carried.values():
                for value in values:
                    scopes.setdefault((value._scope.parent_id, id(value._scope.flow)), value._scope)
            if not scopes:
                raise _no_scope_error(func, sig, bound)
            if len(scopes) > 1:
                raise _scope_error(func.__name__, step_id, list(scopes.values()))
            (scope,) = scopes.values()
            full_id = f"{scope.parent_id}.{step_id}"
            if full_id in scope.flow._step_ids:
                raise ValueError(
                    f"step {full_id!r} already exists; "
                    "do you have two steps with the same ID?"
                )
            scope.flow._step_ids.add(full_id)
            step = Operator(func.__name__, full_id)
            inner = _Scope(full_id, step.substeps, scope.flow)
            for name, values in carried.items():
                ids = [value.stream_id for value in values if isinstance(value, Stream)]
                if ids:
                    step.ups[name] = ids
                if values:
                    bound.arguments[name] = _rescope_arg(bound.arguments[name], kinds[name], inner)
            _building.append((step, inner))
            try:
                result = func(*bound.args, **bound.kwargs)
            finally:
                _building.pop()
            if _core and step.core is None:
                raise AssertionError(f"core operator {func.__name__} declared no core spec")
            step.downs = _down_ports(result)
            scope.substeps.append(step)
            # _rescope returns a value of the type it is given.
            return cast(R, _rescope(result, scope))

        return add_step

    return decorate(builder) if builder is not None else decorate


def _core_step(
    kind: str, ups: list[Stream[Any]], ports: tuple[str, ...], **args: Any
) -> list[Stream[Any]]:
    """Declare the step being built as core ``kind`` and return its output streams.

    Returns one :class:`Stream` per name in ``ports``, in that order.
    """
    step, scope = _building[-1]
    downs = tuple((port, f"{step.step_id}.{port}") for port in ports)
    step.core = CoreSpec(kind, tuple(s.stream_id for s in ups), downs, tuple(args.items()))
    return [Stream(stream_id, scope) for _, stream_id in downs]

"""Find the Dataflow an import string names.

The forms: ``path/flow.py``, ``module``, ``module:var`` or ``module:factory("arg")``
(``path/flow.py:var`` too); the variable defaults to ``flow``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from fastflow.dataflow import Dataflow

T = TypeVar("T")


class FlowNotFound(Exception):
    """The import string does not lead to a runnable Dataflow; the message says why."""


class FlowImportFailed(Exception):
    """The flow's own code raised while being imported or built; ``__cause__`` is the error."""


def _split(import_str: str) -> tuple[str, str]:
    module, colon, attr = import_str.partition(":")
    if not colon:
        return module, "flow"
    if not module or not attr:
        raise FlowNotFound(f"import string {import_str!r} must look like MODULE[:ATTRIBUTE]")
    return module, attr


def _run_user_code(load: Callable[[], T], where: str) -> T:
    try:
        return load()
    except SyntaxError as ex:
        line = f" line {ex.lineno}" if ex.lineno else ""
        raise FlowNotFound(f"syntax error in {ex.filename or where}{line}: {ex.msg}") from None
    except Exception as ex:
        raise FlowImportFailed(f"{where} raised {type(ex).__name__}: {ex}") from ex


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise FlowNotFound(f"flow file {str(path)!r} does not exist")
    sys.path.insert(0, str(path.resolve().parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    _run_user_code(lambda: loader.exec_module(module), f"importing {str(path)!r}")
    return module


def _import_module(name: str) -> ModuleType:
    sys.path.insert(0, str(Path.cwd()))
    try:
        return _run_user_code(lambda: importlib.import_module(name), f"importing {name!r}")
    except FlowImportFailed as ex:
        missing = ex.__cause__
        if isinstance(missing, ModuleNotFoundError) and (
            name == missing.name or name.startswith(f"{missing.name}.")
        ):
            raise FlowNotFound(
                f"no module named {name!r} (and no such .py file); "
                "give a path like flows/my_flow.py or an importable module"
            ) from None
        raise


def _parse_attr(attr: str) -> tuple[str, tuple[list[Any], dict[str, Any]] | None]:
    """Split ``var`` into ``("var", None)``, ``f("a", n=1)`` into ``("f", (["a"], {"n": 1}))``."""
    unparsable = FlowNotFound(
        f"cannot parse {attr!r} as a variable name or a call like factory(\"arg\")"
    )
    try:
        node = ast.parse(attr.strip(), mode="eval").body
    except SyntaxError:
        raise unparsable from None
    if isinstance(node, ast.Name):
        return node.id, None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise unparsable
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError:
        raise FlowNotFound(f"the arguments in {attr!r} must be Python literals") from None
    return node.func.id, (args, kwargs)


def _call_factory(factory: Any, args: list[Any], kwargs: dict[str, Any], where: str) -> Any:
    if not callable(factory):
        raise FlowNotFound(f"{where} calls a {type(factory).__name__!r}, which is not callable")
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as ex:
        raise FlowNotFound(f"{where} does not match the factory's parameters: {ex}") from None
    except ValueError:  # no signature to check against; let the call decide
        pass
    return _run_user_code(lambda: factory(*args, **kwargs), f"calling {where}")


def _check_runnable(flow: Any, where: str) -> Dataflow:
    from fastflow._runtime.plan import flatten

    if not isinstance(flow, Dataflow):
        hint = (
            "; import Dataflow from fastflow.dataflow instead of bytewax.dataflow"
            if type(flow).__module__.startswith("bytewax")
            else ""
        )
        raise FlowNotFound(
            f"{where} is a {type(flow).__name__!r}, not a fastflow Dataflow; name a Dataflow "
            f"variable or a function returning one{hint}"
        )
    try:
        flatten(flow)
    except ValueError as ex:
        raise FlowNotFound(f"{where}: {ex}") from None
    return flow


def locate_dataflow(import_str: str) -> Dataflow:
    """Import the module and return its Dataflow, or raise FlowNotFound / FlowImportFailed."""
    module_str, attr = _split(import_str)
    name, call = _parse_attr(attr)
    module = _import_file(Path(module_str)) if module_str.endswith(".py") else (
        _import_module(module_str)
    )
    if not hasattr(module, name):
        raise FlowNotFound(
            f"{module_str!r} has no variable {name!r}; name the Dataflow's variable "
            f"with {module_str}:VARIABLE"
        )
    found = getattr(module, name)
    where = f"{module_str}:{attr}"
    if call is not None:
        found = _call_factory(found, *call, where)
    return _check_runnable(found, where)

"""Find the Dataflow an import string names: ``path/flow.py``, ``module``, ``module:var``
or ``module:factory("arg")``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Tuple

from fastflow.dataflow import Dataflow


class FlowNotFound(Exception):
    """The import string does not lead to a Dataflow; the message says why."""


class FlowImportFailed(Exception):
    """The flow's own code raised while being imported or built; ``__cause__`` is the error."""


def _split(import_str: str) -> Tuple[str, str]:
    if import_str.endswith(".py") or ":" not in import_str:
        return import_str, "flow"
    module, _, attr = import_str.rpartition(":")
    if not module or not attr:
        raise FlowNotFound(f"import string {import_str!r} must look like MODULE[:ATTRIBUTE]")
    return module, attr


def _import_module(module_str: str) -> ModuleType:
    path = Path(module_str)
    if module_str.endswith(".py") or path.suffix == ".py":
        if not path.is_file():
            raise FlowNotFound(f"flow file {module_str!r} does not exist")
        sys.path.insert(0, str(path.resolve().parent))
        name = path.stem
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        _run_module_code(lambda: spec.loader.exec_module(module), module_str)  # type: ignore
        return module
    sys.path.insert(0, str(Path.cwd()))
    if importlib.util.find_spec(module_str.split(".")[0]) is None:
        raise FlowNotFound(
            f"no module named {module_str!r} (and no such .py file); "
            "give a path like flows/my_flow.py or an importable module"
        )
    return _run_module_code(lambda: importlib.import_module(module_str), module_str)


def _run_module_code(load: Any, where: str) -> Any:
    try:
        return load()
    except SyntaxError as ex:
        line = f" line {ex.lineno}" if ex.lineno else ""
        raise FlowNotFound(f"syntax error in {ex.filename or where}{line}: {ex.msg}") from None
    except Exception as ex:
        raise FlowImportFailed(f"importing {where!r} raised {type(ex).__name__}: {ex}") from ex


def _parse_attr(attr: str) -> Tuple[str, list, dict]:
    try:
        node = ast.parse(attr.strip(), mode="eval").body
    except SyntaxError:
        raise FlowNotFound(f"cannot parse {attr!r} as an attribute name or a call") from None
    if isinstance(node, ast.Name):
        return node.id, [], {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
        except ValueError:
            raise FlowNotFound(f"arguments of {attr!r} must be Python literals") from None
        return node.func.id, args, kwargs
    raise FlowNotFound(f"cannot parse {attr!r} as an attribute name or a call")


def locate_dataflow(import_str: str) -> Dataflow:
    """Import the module and return its Dataflow, or raise FlowNotFound / FlowImportFailed."""
    module_str, attr = _split(import_str)
    module = _import_module(module_str)
    name, args, kwargs = _parse_attr(attr)
    if not hasattr(module, name):
        raise FlowNotFound(
            f"{module_str!r} has no attribute {name!r}; name the Dataflow variable "
            f"with {module_str}:VARIABLE"
        )
    found = getattr(module, name)
    if "(" in attr:
        if not callable(found):
            raise FlowNotFound(f"{name!r} in {module_str!r} is not callable")
        found = _run_module_code(lambda: found(*args, **kwargs), f"{module_str}:{attr}")
    if not isinstance(found, Dataflow):
        raise FlowNotFound(
            f"{module_str}:{attr} is a {type(found).__name__!r}, not a fastflow Dataflow"
        )
    return found

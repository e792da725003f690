"""Unpickling ``$pickle`` states from a store without letting the store run code.

Why a module of its own: a recovery store is a file, and a file can be swapped or edited by
someone else; ``pickle.loads`` of what it holds would run whatever callable the pickle names
(``os.system``, ``builtins.eval``, ...). A resume therefore unpickles with ``StoreUnpickler``,
whose ``find_class`` rebuilds only:

- the standard library's value types listed in ``STDLIB_VALUE_TYPES``, and
- classes defined in the flow's own code: a module already imported when the run resumes
  (never imported because a store names it), whose file lies outside the Python
  installation and its virtual environment (the flow file and the project modules it
  imports), or one of ``FASTFLOW_STATE_MODULES`` (fastflow's own state types). Only
  classes defined in that module itself qualify, not functions and not what it imported.

Anything else raises ``RefusedClassError`` naming the class. ``--trust-store-pickles`` (and
``RecoveryConfig(trust_store_pickles=True)``) restores plain ``pickle.loads``.
"""

from __future__ import annotations

import importlib
import io
import pickle
import site
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

__all__ = [
    "FASTFLOW_STATE_MODULES",
    "STDLIB_VALUE_TYPES",
    "RefusedClassError",
    "StoreUnpickler",
    "safe_loads",
]

STDLIB_VALUE_TYPES: frozenset[tuple[str, str]] = frozenset(
    [("builtins", name) for name in (
        "bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list",
        "range", "set", "slice", "str", "tuple",
    )]
    + [("datetime", name) for name in ("date", "datetime", "time", "timedelta", "timezone")]
    + [("collections", name) for name in ("Counter", "OrderedDict", "defaultdict", "deque")]
    + [("ipaddress", name) for name in (
        "IPv4Address", "IPv4Interface", "IPv4Network",
        "IPv6Address", "IPv6Interface", "IPv6Network",
    )]
    + [("pathlib", name) for name in ("PurePosixPath", "PureWindowsPath")]
    + [
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("uuid", "UUID"),
        ("uuid", "SafeUUID"),
        ("zoneinfo", "ZoneInfo"),
        ("zoneinfo", "ZoneInfo._unpickle"),
    ]
)
"""``(module, name)`` of the standard library's value types a stored pickle may rebuild.

Plain value constructors only: nothing here runs a command, opens a file or imports.
"""

FASTFLOW_STATE_MODULES = ("fastflow._engine.ttl", "fastflow.operators",
                          "fastflow.operators.windowing")
"""fastflow's modules of state types (TTL wrappers, windows, clocks), submodules included."""


class RefusedClassError(pickle.UnpicklingError):
    """A stored pickle names a class (or function) that a resume does not rebuild."""

    def __init__(self, name: str) -> None:
        super().__init__(f"refused to unpickle {name!r}")
        self.name = name


@cache
def _installation_dirs() -> tuple[Path, ...]:
    """Where the Python installation, its virtual environment and site-packages live."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    found.update(site.getsitepackages())
    found.add(site.getusersitepackages())
    roots = (Path(p).resolve() for p in sorted(found) if p)
    return tuple(root for root in roots if root.parent != root)  # never all of "/"


def is_flow_module(name: str) -> bool:
    """Whether module ``name`` is already imported and part of the flow's own code."""
    module = sys.modules.get(name)
    if module is None:
        return False
    if any(name == root or name.startswith(f"{root}.") for root in FASTFLOW_STATE_MODULES):
        return True
    if name == "fastflow" or name.startswith("fastflow."):
        return False
    return _outside_installation(module)


def _outside_installation(module: ModuleType) -> bool:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str):
        return False  # built in (sys, posix, builtins) or a namespace package
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in _installation_dirs())


def _own_class(module_name: str, name: str) -> type | None:
    """The class ``name`` (dotted for a nested class) defined in module ``module_name``."""
    obj: object = sys.modules[module_name]
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if not isinstance(obj, type) or obj.__module__ != module_name:
            return None
    return obj  # type: ignore[return-value]  # every step was checked to be a type


_METHODS_BY_GETATTR = {("zoneinfo", "ZoneInfo", "_unpickle")}
"""Class methods pickle reaches through ``getattr(cls, name)`` (a ``ZoneInfo`` is one)."""


def _method_of_allowed_class(cls: object, name: object) -> object:
    """``builtins.getattr`` as a stored pickle gets it: only the methods listed above."""
    where = (getattr(cls, "__module__", None), getattr(cls, "__qualname__", None), name)
    if not isinstance(cls, type) or not isinstance(name, str) or where not in _METHODS_BY_GETATTR:
        raise RefusedClassError(f"getattr({where[0]}.{where[1]}, {name!r})")
    return getattr(cls, name)


class StoreUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that rebuilds only the classes the module docstring allows."""

    def find_class(self, module: str, name: str) -> object:
        """Return the allowed class ``module.name``, or raise ``RefusedClassError``."""
        if (module, name) == ("builtins", "getattr"):
            return _method_of_allowed_class
        if (module, name) in STDLIB_VALUE_TYPES:
            obj: object = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
            return obj
        found = _own_class(module, name) if is_flow_module(module) else None
        if found is None:
            raise RefusedClassError(f"{module}.{name}")
        return found


def safe_loads(data: bytes) -> object:
    """``pickle.loads`` through ``StoreUnpickler``."""
    return StoreUnpickler(io.BytesIO(data)).load()

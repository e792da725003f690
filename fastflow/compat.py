"""Run Bytewax flows unchanged: ``import bytewax.x`` gives ``fastflow.x``.

Importing this module (``fastflow run`` and ``fastflow visualize`` do it
before loading a flow) puts an import hook first in :data:`sys.meta_path`.
It serves ``bytewax`` only when no other finder finds it, that is when the
real Bytewax is not installed; then ``bytewax``
and every ``bytewax.x`` are the very module objects ``fastflow`` and
``fastflow.x``, so ``import bytewax.operators as op`` binds ``fastflow.operators``.

When Bytewax is installed, ``bytewax`` is Bytewax and this hook stays out of
the way. A ``bytewax`` module that fastflow has no counterpart for fails to import
with a message saying so.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

__all__ = ["install", "uninstall"]

ALIAS = "bytewax"
TARGET = "fastflow"


class _AliasLoader(importlib.abc.Loader):
    """Loads an alias by handing over the already imported fastflow module."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._target_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self._target)
        self._target_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system pointed the module's __spec__ at the alias; the module
        # stays fastflow's (for reloads, pickling and tracebacks), so give it back.
        module.__spec__ = self._target_spec

    def get_code(self, fullname: str) -> CodeType | None:
        """The target's code, so that ``python -m bytewax.run`` runs ``fastflow.run``."""
        spec = importlib.util.find_spec(self._target)
        loader = spec.loader if spec is not None else None
        if not isinstance(loader, importlib.abc.InspectLoader):
            return None
        return loader.get_code(self._target)


class _BytewaxAliasFinder(importlib.abc.MetaPathFinder):
    """Finds ``bytewax`` and ``bytewax.x`` as ``fastflow`` and ``fastflow.x``."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == ALIAS:
            if self._found_elsewhere(fullname):
                return None  # the real Bytewax
        elif not fullname.startswith(f"{ALIAS}."):
            return None
        elif sys.modules.get(ALIAS) is not sys.modules.get(TARGET):
            return None  # the real Bytewax is imported: its modules are its own
        target_name = TARGET + fullname[len(ALIAS) :]
        target_spec = importlib.util.find_spec(target_name)
        if target_spec is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: Bytewax is not installed, so `{ALIAS}` "
                f"imports are served by fastflow, which has no {target_name!r}",
                name=fullname,
            )
        return importlib.machinery.ModuleSpec(
            fullname,
            _AliasLoader(target_name),
            is_package=target_spec.submodule_search_locations is not None,
        )

    def _found_elsewhere(self, fullname: str) -> bool:
        """Whether another finder finds ``fullname`` (a top-level name)."""
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is not self and find_spec is not None and find_spec(fullname, None):
                return True
        return False


def _installed() -> _BytewaxAliasFinder | None:
    return next((f for f in sys.meta_path if isinstance(f, _BytewaxAliasFinder)), None)


def install() -> None:
    """Serve ``bytewax`` imports with fastflow when Bytewax itself is not installed.

    Does nothing if already installed. Modules imported before keep what they imported.
    """
    if _installed() is None:
        # First, so that bytewax.x is not found by the path finder as a second copy
        # of fastflow/x.py (the alias `bytewax` has fastflow's __path__).
        sys.meta_path.insert(0, _BytewaxAliasFinder())


def uninstall() -> None:
    """Remove the hook and forget the ``bytewax`` names it served (fastflow stays imported)."""
    finder = _installed()
    if finder is not None:
        sys.meta_path.remove(finder)
    for name, module in list(sys.modules.items()):
        if (name == ALIAS or name.startswith(f"{ALIAS}.")) and module is sys.modules.get(
            TARGET + name[len(ALIAS) :]
        ):
            del sys.modules[name]


install()

"""The compiled Cython modules are built, used, and required."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from typing import Iterable

import pytest

import fastflow
import fastflow.operators
from fastflow._runtime import io_nodes, nodes, snapshot

PACKAGE = Path(fastflow.__file__).parent
CEXT_SOURCES = PACKAGE.parent / "cext"


def _is_compiled(path: str | None) -> bool:
    return path is not None and any(path.endswith(suffix) for suffix in EXTENSION_SUFFIXES)


# Every compiled module: one per cext/*.pyx in a checkout, else what is installed.
MODULES = sorted(
    {p.stem for p in CEXT_SOURCES.glob("*.pyx")}
    or {p.name.split(".")[0] for p in (PACKAGE / "_cext").iterdir() if _is_compiled(p.name)}
)


@pytest.mark.parametrize("name", MODULES)
def test_cext_module_is_a_compiled_extension(name: str) -> None:
    module = importlib.import_module(f"fastflow._cext.{name}")
    assert _is_compiled(module.__file__), module.__file__


@pytest.mark.skipif(not CEXT_SOURCES.is_dir(), reason="not running from a source checkout")
def test_every_pyx_source_is_built() -> None:
    assert {"codec", "ops", "routing", "state"} <= set(MODULES)
    for stem in MODULES:
        assert any((PACKAGE / "_cext" / f"{stem}{s}").is_file() for s in EXTENSION_SUFFIXES), stem


def test_no_pure_python_fallback_next_to_the_extensions() -> None:
    assert sorted(p.name for p in (PACKAGE / "_cext").glob("*.py")) == ["__init__.py"]


def _compiled_functions(objs: Iterable[object]) -> None:
    # About how fastflow is built, not what these functions do (test_routing,
    # test_state_loops and the operator tests cover that): each one must come
    # from a compiled module, not merely be callable.
    for obj in objs:
        # Compiled functions are not Python function objects.
        assert not inspect.isfunction(obj), obj
        module = sys.modules[obj.__module__]  # type: ignore[attr-defined]
        assert module.__name__.startswith("fastflow._cext."), (obj, module.__name__)
        assert _is_compiled(module.__file__), (obj, module.__file__)


def test_the_engine_and_operators_use_the_compiled_modules() -> None:
    # The modules the runtime actually calls into are the compiled ones.
    assert _is_compiled(fastflow.operators._ops.__file__)
    assert _is_compiled(nodes.state.__file__)
    assert _is_compiled(sys.modules[nodes.branch_items.__module__].__file__)
    assert _is_compiled(sys.modules[io_nodes.check_keyed.__module__].__file__)
    ops = fastflow.operators._ops
    _compiled_functions(
        [ops.map_items, ops.filter_items, ops.flat_map_items, nodes.branch_items,
         io_nodes.check_keyed, snapshot.encode_changes, snapshot.decode_changes,
         snapshot.split_dict]
    )


def test_routing_hash_is_compiled() -> None:
    from fastflow._cext import routing

    _compiled_functions([routing.stable_hash, routing.split_by_worker])


def _copy_package(dest: Path, drop: Iterable[str]) -> Path:
    """Copy the fastflow package under ``dest`` without the compiled modules named in ``drop``."""
    dropped = set(drop)

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [
            n
            for n in names
            if n == "__pycache__" or any(n.startswith(f"{d}.") and _is_compiled(n) for d in dropped)
        ]

    shutil.copytree(PACKAGE, dest / "fastflow", ignore=ignore)
    return dest


def _import_fastflow_from(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )


def test_a_copy_with_the_extensions_imports_from_the_copy(tmp_path: Path) -> None:
    root = _copy_package(tmp_path, [])
    done = _import_fastflow_from(
        root, "import fastflow.operators, fastflow; print(fastflow.__file__)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(root / "fastflow" / "__init__.py")


@pytest.mark.parametrize("drop", [MODULES, ["routing"], ["ops"], ["codec"]], ids=str)
def test_importing_without_the_extensions_says_how_to_build(
    tmp_path: Path, drop: list[str]
) -> None:
    root = _copy_package(tmp_path, drop)
    assert not any(
        _is_compiled(p.name) and p.name.split(".")[0] in drop
        for p in (root / "fastflow" / "_cext").iterdir()
    )
    done = _import_fastflow_from(root, "import fastflow")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: fastflow's compiled modules (fastflow._cext) are missing; build them "
        "with `pip install .` (or `python setup.py build_ext --inplace` in a checkout)"
    )
    assert str(root / "fastflow" / "__init__.py") in done.stderr

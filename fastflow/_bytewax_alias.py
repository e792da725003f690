"""``fastflow compat enable``: ``bytewax`` means fastflow in every Python of this environment.

``fastflow run`` serves ``bytewax`` imports by itself; this is for what runs without it:
``python -m bytewax.run flow.py``, ``python -m bytewax.testing``, a test suite or a
notebook. It writes one ``.pth`` file into the environment's site-packages whose line
imports :mod:`fastflow.compat` when Python starts; ``disable`` deletes it. It refuses
when a real Bytewax is installed there (the hook would step aside for it anyway).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "fastflow-bytewax-alias.pth"
# A .pth line starting with `import` is run at start-up; it does nothing once fastflow
# is uninstalled, rather than failing every start of Python.
PTH_LINE = (
    'import importlib.util as _u; _u.find_spec("fastflow") and __import__("fastflow.compat")'
    "  # written by `fastflow compat enable`; `fastflow compat disable` removes it\n"
)


class AliasRefused(Exception):
    """The alias cannot be enabled here; the message says why."""


def site_packages() -> Path:
    """The site-packages directory of the running environment."""
    return Path(sysconfig.get_path("purelib"))


def _real_bytewax() -> str | None:
    """Where a real Bytewax is installed, if it is (fastflow's own alias does not count)."""
    from fastflow import compat

    served = compat._installed() is not None
    compat.uninstall()
    try:
        spec = importlib.util.find_spec("bytewax")
    finally:
        if served:
            compat.install()
    return None if spec is None else str(spec.origin or spec.submodule_search_locations)


def enable(site_dir: Path) -> Path:
    """Write the ``.pth`` file into ``site_dir``; returns its path."""
    if getattr(sys, "frozen", False):
        raise AliasRefused(
            "the standalone binary has no Python environment to serve `bytewax` in: "
            "`fastflow run` already serves it to flows"
        )
    real = _real_bytewax()
    if real is not None:
        raise AliasRefused(
            f"Bytewax is installed in this environment ({real}): refusing to shadow it; "
            "uninstall it first, or run flows with `fastflow run`"
        )
    path = site_dir / PTH_NAME
    temporary = path.with_suffix(".tmp")
    temporary.write_text(PTH_LINE)
    os.replace(temporary, path)
    return path


def disable(site_dir: Path) -> Path | None:
    """Delete the ``.pth`` file from ``site_dir``; returns its path if there was one."""
    path = site_dir / PTH_NAME
    if not path.exists():
        return None
    path.unlink()
    return path

"""Let flows import packages from outside fastflow's own environment.

The standalone executable holds fastflow, orjson and the standard library, nothing else. A flow
that needs more can name directories with ``fastflow --python-path DIR`` (repeatable) or in
``FASTFLOW_PYTHONPATH`` (separated like ``PYTHONPATH``); the executable also adds the
site-packages of an active virtualenv (``VIRTUAL_ENV``; PyInstaller's start-up code removes
it from ``os.environ``, so it is read from the environment the process started with). The
installed command needs no virtualenv detection: it already runs in its own environment.

The directories go to the *end* of ``sys.path``, so fastflow and the standard library always
come from fastflow's own installation (or bundle), whatever the directories hold.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ENV_VAR = "FASTFLOW_PYTHONPATH"


def _existing_dir(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return text


def add_python_path_argument(parser: argparse.ArgumentParser) -> None:
    """Declare ``--python-path DIR`` (repeatable) on ``parser``."""
    parser.add_argument(
        "--python-path", metavar="DIR", action="append", type=_existing_dir, default=[],
        help="also import modules and packages from DIR, after fastflow's own (repeatable) "
        f"[env {ENV_VAR}, directories separated by {os.pathsep!r}]",
    )


def _virtualenv_site_packages(environ: Mapping[str, str]) -> Path | None:
    venv = environ.get("VIRTUAL_ENV")
    if not venv:
        return None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = Path(venv, "lib", version, "site-packages")
    if not found.is_dir():
        print(
            f"fastflow: warning: the active virtualenv {venv} has no {found.relative_to(venv)} "
            f"(this fastflow runs {version}); its packages are not importable",
            file=sys.stderr,
        )
        return None
    return found


def _is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def _process_environ() -> dict[str, str]:
    """``os.environ``, plus ``VIRTUAL_ENV`` if the standalone executable's start-up removed it."""
    environ = dict(os.environ)
    if _is_frozen() and "VIRTUAL_ENV" not in environ:
        try:
            initial = Path("/proc/self/environ").read_bytes().split(b"\0")
        except OSError:  # not Linux
            initial = []
        for item in initial:
            if item.startswith(b"VIRTUAL_ENV="):
                environ["VIRTUAL_ENV"] = os.fsdecode(item.partition(b"=")[2])
    return environ


def extend_sys_path(
    dirs: Sequence[str],
    environ: Mapping[str, str] | None = None,
    frozen: bool | None = None,
) -> list[str]:
    """Append ``dirs``, then those in ``FASTFLOW_PYTHONPATH``, to ``sys.path``.

    When ``frozen`` (by default: when running as the standalone executable), also add the
    active virtualenv's site-packages, reading its ``.pth`` files as Python would. ``environ``
    defaults to this process's environment. Returns the directories added, as absolute paths,
    skipping any ``sys.path`` already has.
    """
    if environ is None:
        environ = _process_environ()
    wanted = [*dirs, *environ.get(ENV_VAR, "").split(os.pathsep)]
    added = []
    for entry in (os.path.abspath(d) for d in wanted if d):
        if entry not in sys.path:
            sys.path.append(entry)
            added.append(entry)
    if frozen is None:
        frozen = _is_frozen()
    venv_site = _virtualenv_site_packages(environ) if frozen else None
    if venv_site is not None and str(venv_site) not in sys.path:
        import site  # not imported at start-up by the standalone executable

        site.addsitedir(str(venv_site))
        added.append(str(venv_site))
    return added

"""fastflow: fast stream processing for Python with durable, resumable state.

The API mirrors Bytewax 0.21 (``fastflow.dataflow``, ``fastflow.operators``,
``fastflow.testing``, ...). Hot paths live in compiled Cython modules under
``fastflow._cext``; they are required, so a source checkout must be built
(``pip install .``) before use.
"""

from __future__ import annotations

__version__ = "0.2.0"

import importlib.util as _util

try:
    from fastflow._cext import routing as _routing  # noqa: F401

    for _name in ("codec", "ops", "state"):  # checked without the cost of importing them
        if _util.find_spec(f"fastflow._cext.{_name}") is None:
            raise ImportError(f"no compiled module fastflow._cext.{_name}")
except ImportError as _ex:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "fastflow's compiled modules (fastflow._cext) are missing; build them with "
        "`pip install .` (or `python setup.py build_ext --inplace` in a checkout)"
    ) from _ex

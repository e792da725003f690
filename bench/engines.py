"""The engines the benchmarks drive, behind one namespace each.

fastflow's API is Bytewax's under another package name, so a flow written
against the names here runs unchanged on either engine: that is what lets
the head-to-head comparison time the *same* flow code on both.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

ENGINES = ("fastflow", "bytewax")

# Modules an engine imports only on its first run; imported by ``load`` so that no
# timing counts them (fastflow's first ``run_main`` would otherwise spend ~12 ms
# importing its runtime; Bytewax's runtime is imported with ``bytewax.testing``).
_RUNTIME = {"fastflow": ("fastflow._runtime.execute",), "bytewax": ()}


def load(name: str) -> SimpleNamespace:
    """Import engine ``name`` (``fastflow`` or ``bytewax``) and return its public names.

    >>> api = load("fastflow")
    >>> api.name, api.op.__name__
    ('fastflow', 'fastflow.operators')
    """
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; use one of {ENGINES}")
    for module in _RUNTIME[name]:
        importlib.import_module(module)
    testing = importlib.import_module(f"{name}.testing")
    recovery = importlib.import_module(f"{name}.recovery")
    return SimpleNamespace(
        name=name,
        op=importlib.import_module(f"{name}.operators"),
        Dataflow=importlib.import_module(f"{name}.dataflow").Dataflow,
        TestingSource=testing.TestingSource,
        TestingSink=testing.TestingSink,
        run_main=testing.run_main,
        RecoveryConfig=recovery.RecoveryConfig,
        init_db_dir=recovery.init_db_dir,
    )

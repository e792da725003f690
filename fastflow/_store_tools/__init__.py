"""The offline ``fastflow recovery`` commands, one module per verb; never used by a run.

This package is what the command line sees of them: ``fastflow.cli`` imports these names
from here, and nothing else of the tools. Each tool reads (and at most rewrites) a store
through ``fastflow._store``; none imports the runtime.
"""
from __future__ import annotations

from fastflow._store.partitions import SCHEMA_VERSION
from fastflow._store_tools.backup import backup_store
from fastflow._store_tools.export import export_state, get_state
from fastflow._store_tools.importer import Trust, import_state
from fastflow._store_tools.repartition import repartition_store
from fastflow._store_tools.status import format_status, read_status
from fastflow._store_tools.upgrade import upgrade_store

__all__ = [
    "SCHEMA_VERSION",
    "Trust",
    "backup_store",
    "export_state",
    "format_status",
    "get_state",
    "import_state",
    "read_status",
    "repartition_store",
    "upgrade_store",
]

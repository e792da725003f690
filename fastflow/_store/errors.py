"""Why the recovery store refuses: one class per reason, all under :class:`RecoveryError`.

Why a module of its own: every layer above the store (the runtime, the store tools, the
command line) names these, and ``fastflow.errors`` shows them to users; none of them needs
the rest of the store for that. Standard library only.
"""

from __future__ import annotations


class RecoveryError(Exception):
    """Base: the recovery store cannot be used as asked."""


class NoPartitionsError(RecoveryError, FileNotFoundError):
    """The recovery directory is missing or holds no ``part-*.sqlite3``: never a fresh start."""


class MissingPartitionsError(RecoveryError, FileNotFoundError):
    """Some partitions of the set are absent, so some keys' state would be lost."""


class InconsistentPartitionsError(RecoveryError, ValueError):
    """Partitions come from different inits or points in time; no consistent resume exists."""


class CorruptPartitionError(RecoveryError, ValueError):
    """A partition file is not a readable fastflow partition; the file is left untouched."""


class StoreLockedError(RecoveryError, RuntimeError):
    """Another execution holds the recovery directory; two writers would corrupt the resume."""


class PartitionsExistError(RecoveryError, FileExistsError):
    """``init_db_dir`` would overwrite existing partitions (their state) without ``force``."""


class FormatVersionError(RecoveryError, ValueError):
    """The partitions are in another format: an older one to upgrade, or a newer fastflow's."""


class StoreNotWritableError(RecoveryError, PermissionError):
    """The user running the flow cannot write the recovery directory or its partitions."""


class StoreAccessError(RecoveryError, PermissionError):
    """The store's files cannot be trusted or read: a symlink, writable by others, unreadable."""


class StoreWriteError(RecoveryError, OSError):
    """Committing an epoch failed (disk full, I/O error); the last committed epoch stands."""


class StateQueryError(RecoveryError, ValueError):
    """The request names a step or epoch the store cannot answer for (bad input)."""


class BadImportError(RecoveryError, ValueError):
    """A line of the import file is not a valid state line; nothing was written."""

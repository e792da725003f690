"""Names that stored snapshots refer to by module path; no code runs from here.

The code that was here now lives in ``fastflow/_runtime``, ``fastflow/_store`` and
``fastflow/_store_tools``. What stays is part of the on-disk format: the snapshot codec
writes a dataclass as ``"module:qualname"`` and imports that path to read it back, so
moving one of these classes would make existing recovery stores unreadable.
"""

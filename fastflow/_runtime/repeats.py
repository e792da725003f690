"""Source and sink snapshots are written only when they changed.

Why: a source or sink partition has no dirty flag; its ``snapshot()`` is asked at every
epoch's end. Writing it every time made an idle flow write a change set per epoch (with a
zero epoch interval, as fast as the machine could) and grow the store while nothing
happened. Comparing encodings, not values, keeps a snapshot that the partition mutates in
place (and returns again) from being taken for unchanged.
"""

from __future__ import annotations

from typing import Any

from fastflow._cext.codec import UnencodableError, encode
from fastflow._runtime.nodes import Changes


class SnapshotChanges:
    """The partitions whose snapshot differs from the one reported last time."""

    def __init__(self) -> None:
        self._last: dict[str, bytes] = {}

    def __call__(self, values: dict[str, Any]) -> Changes:
        """``(values, changed)`` for ``codec.encode_changes``: only the new snapshots."""
        changed: dict[str, bool] = {}
        for key, value in values.items():
            try:
                encoded = encode(value)
            except UnencodableError:  # encode_changes reports it, naming the step and key
                changed[key] = True
                continue
            if self._last.get(key) != encoded:
                self._last[key] = encoded
                changed[key] = True
        return values, changed

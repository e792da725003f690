"""fastflow's log messages: the ``fastflow`` logger tree, and worker processes' lines.

``fastflow run --log-level LEVEL`` gives the ``fastflow`` logger a handler on stderr at
that level. Without it nothing is configured: messages of WARNING and above reach
stderr through Python's last-resort handler, or the user's own ``logging`` setup
(``logging.basicConfig(level=DEBUG)`` shows fastflow's DEBUG lines too).

A worker process of ``-p N`` or Ray sends every line it logs to the coordinator, which
writes it to its stderr whole (a multi-line traceback included), tagged with the
process index: lines of several processes never mix, and a Ray actor's reach the user.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROOT = "fastflow"


def configure(level: int | None) -> None:
    """Log the ``fastflow`` tree at ``level`` and above to stderr (None: leave it alone)."""
    if level is None:
        return
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        if getattr(handler, "_fastflow", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._fastflow = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class ForwardHandler(logging.Handler):
    """In a worker process: send each formatted record to the coordinator's stderr."""

    def __init__(self, process: int, control: Connection, formatter: logging.Formatter | None,
                 level: int) -> None:
        super().__init__(level)
        self._tag = f"[process {process}] "
        self._control = control
        self.setFormatter(formatter or logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Send the record on the control channel (another thread: write it to stderr)."""
        try:
            text = self._tag + self.format(record) + "\n"
            if threading.current_thread() is threading.main_thread():
                self._control.send(("log", text))
            else:  # the control channel is the main thread's: one write keeps it whole
                os.write(2, text.encode())
        except Exception:
            self.handleError(record)


@dataclass(frozen=True)
class ChildLogging:
    """What a worker process does with its log records (picklable, for Ray actors)."""

    level: int | None

    def __call__(self, process: int, control: Connection) -> None:
        """Replace this process's log handlers by ones forwarding to the coordinator."""
        configure(self.level)  # a Ray actor starts unconfigured; a forked one has it already
        root, ours = logging.getLogger(), logging.getLogger(ROOT)
        for logger in (root, ours):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
                logger.addHandler(ForwardHandler(process, control, handler.formatter,
                                                 handler.level))
        if not root.handlers:  # what Python's last-resort handler would have printed
            root.addHandler(ForwardHandler(process, control, None, logging.WARNING))

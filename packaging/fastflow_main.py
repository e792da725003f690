"""Entry script of the standalone ``fastflow`` executable built from ``fastflow.spec``.

The one-file executable runs as two processes: PyInstaller's bootloader unpacks the bundle to a
temporary directory, runs this script in a child process, forwards to the child the signals it
gets itself, and removes the directory when the child is gone. Ctrl-C in a terminal signals
both processes, so the child gets that SIGINT twice, the second one a moment later (possibly
while handling the first, or even while exiting). Here the pair becomes one KeyboardInterrupt,
as with the installed command: a second SIGINT within a second of the first is dropped, and
SIGINT is ignored once the command is done, while Python shuts down.
"""

import signal
import sys
import time
from types import FrameType
from typing import Optional

from fastflow.cli import main

SAME_CTRL_C_SECONDS = 1.0
_last_sigint = float("-inf")


def _on_sigint(signum: int, frame: Optional[FrameType]) -> None:
    global _last_sigint
    now = time.monotonic()
    if now - _last_sigint < SAME_CTRL_C_SECONDS:
        return  # the bootloader's copy of a SIGINT already handled
    _last_sigint = now
    raise KeyboardInterrupt


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _on_sigint)
try:
    exit_code = main()
finally:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.exit(exit_code)

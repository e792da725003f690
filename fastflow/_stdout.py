"""Standard output whose reader went away (``fastflow ... | head``): one line, not a traceback.

Every command finishes through :func:`guard_stdout`, so the case is handled once: the
rest of the output goes to /dev/null (exiting must not fail to flush it again), and
stderr gets ``PROG: error: stdout was closed (broken pipe)`` with exit code 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_STDOUT_CLOSED = 1


def silence_stdout() -> None:
    """Send further output to /dev/null, so that exiting does not fail to flush it."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def report_stdout_closed(prog: str, consequence: str = "") -> int:
    """Silence stdout, say on stderr that its reader went away; returns the exit code."""
    silence_stdout()
    print(f"{prog}: error: stdout was closed (broken pipe){consequence}", file=sys.stderr)
    return EXIT_STDOUT_CLOSED


def guard_stdout(command: Callable[[], int], prog: str) -> int:
    """Run ``command`` and flush stdout; a closed stdout becomes one line and exit code 1."""
    try:
        code = command()
        sys.stdout.flush()
    except BrokenPipeError:
        return report_stdout_closed(prog)
    return code

"""How many processes ``-p`` may fork: what the open-file limit allows.

Why: the processes are a full mesh of socket pairs, all made by the ``fastflow run``
process before it forks them (each child inherits them), so while they start that
process holds ``N * (N - 1)`` sockets plus a control pipe (2) and a sentinel (1) per
process: ``N * (N + 2)`` descriptors. Past ``RLIMIT_NOFILE`` the fork fails half-way with
``OSError: [Errno 24] Too many open files``; refusing first names the limit and the way out.
"""

from __future__ import annotations

import math
import resource

from fastflow.errors import TooManyProcesses

RESERVED_FDS = 64
"""Descriptors left for everything else: stdio, the store's files, the flow's own."""


def max_processes(open_files: int) -> int:
    """The largest ``N`` with ``N * (N + 2) + RESERVED_FDS <= open_files`` (at least 1)."""
    room = max(0, open_files - RESERVED_FDS)
    return max(1, math.isqrt(room + 1) - 1)


def check_process_count(processes: int) -> None:
    """Raise :class:`TooManyProcesses` if ``processes`` cannot all be forked here."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or processes <= 1:
        return
    limit = max_processes(soft)
    if processes > limit:
        raise TooManyProcesses(
            f"-p {processes} is more than this machine's open-file limit allows: at most "
            f"{limit} (each of N processes needs N + 2 file descriptors while they start, "
            f"and `ulimit -n` is {soft}; raise it, or use fewer processes)"
        )

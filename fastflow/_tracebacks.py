"""Showing a user's error: its traceback without fastflow's frames, and a one-line summary.

Why a module of its own: the ``fastflow run`` command prints them for an error raised in
this process, and a worker process of ``-p N`` formats them before sending them to the
command (``_engine/cluster.py``), so both show the same thing.
"""

from __future__ import annotations

import os
import sys
import traceback

from fastflow.errors import ConnectorError, FastflowRuntimeError

_PACKAGE_DIR = os.path.realpath(os.path.dirname(__file__)) + os.sep


def is_internal(frame: traceback.FrameSummary) -> bool:
    """Whether a frame is fastflow's own (or the import machinery's), not the user's."""
    name = frame.filename
    return (
        name.startswith("<frozen importlib")
        or name.startswith("cext" + os.sep)
        or os.path.realpath(name).startswith(_PACKAGE_DIR)
        # the standalone executable names its own frames relative to the bundle
        or (getattr(sys, "frozen", False) and name.startswith("fastflow" + os.sep))
    )


def user_error(error: BaseException) -> BaseException:
    """The user's exception behind fastflow's wrappers (``FastflowRuntimeError`` causes)."""
    while isinstance(error, FastflowRuntimeError) and error.__cause__ is not None:
        error = error.__cause__
    return error


def user_traceback(error: BaseException) -> str:
    """``error``'s traceback chain without fastflow's own frames.

    A part made only of fastflow frames (a bug in fastflow) is shown in full. A
    :class:`~fastflow.errors.ConnectorError` has nothing to show: its one line says it all.
    """
    if isinstance(error, ConnectorError):
        return ""
    shown = traceback.TracebackException.from_exception(error)
    part: traceback.TracebackException | None = shown
    while part is not None:
        user_frames = [frame for frame in part.stack if not is_internal(frame)]
        if user_frames:
            part.stack = traceback.StackSummary.from_list(user_frames)
        part = part.__cause__ or (None if part.__suppress_context__ else part.__context__)
    return "".join(shown.format())


def one_line(error: BaseException) -> str:
    """What went wrong, on one line."""
    text = str(error) if isinstance(error, FastflowRuntimeError) else (
        f"{type(error).__name__}: {error}"
    )
    return " ".join(text.split())

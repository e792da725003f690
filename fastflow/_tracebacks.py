"""Showing a user's error: its traceback without fastflow's frames, and a one-line summary.

Why a module of its own: the ``fastflow run`` command prints them for an error raised in
this process, and a worker process of ``-p N`` formats them before sending them to the
command (``_runtime/distributed/processes.py``), so both show the same thing.
"""

from __future__ import annotations

import os
import sys
import traceback

from fastflow.errors import ConnectorError, FastflowRuntimeError

_PACKAGE_DIR = os.path.realpath(os.path.dirname(__file__)) + os.sep
_SHOWN_FRAMES = 3  # of a repeated frame, or a cycle of frames, as Python shows of recursion
_LONGEST_CYCLE = 10  # frames in the longest cycle of a recursion (f -> g -> f...) folded


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
        part.stack = FoldedStack(user_frames or part.stack)
        part = part.__cause__ or (None if part.__suppress_context__ else part.__context__)
    return "".join(shown.format())


class FoldedStack(traceback.StackSummary):
    """Frames formatted with every recursion folded: ``[Previous 2 frames repeated N more times]``.

    Why: Python folds only a frame that repeats itself; a recursion through two functions
    or more (or through steps of fastflow, whose frames are left out) printed every frame,
    thousands of lines for a user error deep in it.
    """

    def format(self) -> list[str]:
        """The frames' lines, each run of a repeated frame or cycle of frames folded."""
        frames, lines, at = list(self), [], 0
        while at < len(frames):
            period, times = _repeat_at(frames, at)
            shown = -(-_SHOWN_FRAMES // period)  # whole cycles, at least _SHOWN_FRAMES frames
            if times <= shown:
                lines.extend(_format_frame(frames[at]))
                at += 1
                continue
            for frame in frames[at : at + period] * shown:
                lines.extend(_format_frame(frame))
            what = "line" if period == 1 else f"{period} frames"
            lines.append(f"  [Previous {what} repeated {times - shown} more times]\n")
            at += period * times
        return lines


def _format_frame(frame: traceback.FrameSummary) -> list[str]:
    # Python folds repeats within one summary only: one frame alone is never folded.
    return traceback.StackSummary.from_list([frame]).format()


def _repeat_at(frames: list[traceback.FrameSummary], at: int) -> tuple[int, int]:
    """The cycle starting at ``at`` that repeats over the most frames: ``(period, times)``."""
    keys = [(f.filename, f.lineno, f.name) for f in frames[at : at + 2 * _LONGEST_CYCLE]]
    best = (1, 1)
    for period in range(1, _LONGEST_CYCLE + 1):
        if keys[:period] != keys[period : 2 * period]:
            continue
        block, times = keys[:period], 2
        while [(f.filename, f.lineno, f.name)
               for f in frames[at + times * period : at + (times + 1) * period]] == block:
            times += 1
        if period * times > best[0] * best[1]:
            best = (period, times)
    return best


def one_line(error: BaseException) -> str:
    """What went wrong, on one line."""
    text = str(error) if isinstance(error, FastflowRuntimeError) else (
        f"{type(error).__name__}: {error}"
    )
    return " ".join(text.split())

"""Progress on a terminal for commands that make a person wait.

Why only on a terminal: a script or a pipe reading a command's output wants the output and
nothing else, so every bar here is drawn on standard error only when standard error is a
terminal (tqdm's ``disable=None``), and costs nothing otherwise. Why tqdm: it is the field's
progress bar (rate, time left, terminal width, redraw throttling), small and pure Python.

The store tools call :func:`by_size` around the loop that does their work, partition by
partition; ``fastflow recovery import`` reads its file through :func:`reading`;
``fastflow run --progress`` shows a :class:`StatusLine`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_SIDE_FILES = ("", "-wal")
"""A partition's bytes: its database and, while a run has it open, its write-ahead log."""


def bar(desc: str, total: int | None, unit: str = "B") -> tqdm[NoReturn]:
    """A progress bar on standard error, drawn only if that is a terminal.

    ``unit="B"`` counts bytes (shown as KiB, MiB ...); any other unit counts as is.
    """
    in_bytes = unit == "B"
    return tqdm(
        desc=desc, total=total, unit=unit, unit_scale=in_bytes, unit_divisor=1024 if in_bytes
        else 1000, disable=None, leave=False, dynamic_ncols=True,
    )


def file_bytes(path: Path) -> int:
    """Bytes a partition file takes on disk (0 if it is gone)."""
    total = 0
    for suffix in _SIDE_FILES:
        try:
            total += os.stat(f"{path}{suffix}").st_size
        except OSError:
            pass
    return total


def by_size(items: Iterable[T], path_of: Callable[[T], Path], desc: str) -> Iterator[T]:
    """Yield ``items``; the bar advances by the bytes of each one's file once it is done."""
    todo: Sequence[T] = items if isinstance(items, Sequence) else list(items)
    sizes = [file_bytes(path_of(item)) for item in todo]
    with bar(desc, sum(sizes)) as shown:
        for item, size in zip(todo, sizes, strict=True):
            yield item
            shown.update(size)


class _CountedLines:
    """A binary file whose ``readline`` advances a progress bar by the bytes read."""

    def __init__(self, lines: IO[bytes], shown: tqdm[NoReturn]) -> None:
        self._lines = lines
        self._shown = shown

    def readline(self, size: int = -1, /) -> bytes:
        line = self._lines.readline(size)
        self._shown.update(len(line))
        return line


@contextmanager
def reading(lines: IO[bytes], desc: str) -> Iterator[_CountedLines]:
    """``lines``, read by ``readline``; the bar counts bytes read (of its size, if a file)."""
    try:
        size: int | None = os.fstat(lines.fileno()).st_size or None
    except (OSError, ValueError):  # no file behind it (a pipe has size 0 too)
        size = None
    with bar(desc, size) as shown:
        yield _CountedLines(lines, shown)


class StatusLine:
    """``fastflow run --progress``: one status line on standard error, redrawn every second.

    It shows what ``/status`` shows (items/s, epochs, the last commit), from the same
    ``status`` callable the API serves, read on a daemon thread: the flow's thread never
    waits for it. Like the bars, it is drawn only on a terminal.
    """

    def __init__(self, status: Callable[[], dict[str, Any]], interval: float = 1.0) -> None:
        self._status = status
        self._interval = interval
        self._stop = threading.Event()
        self._line = tqdm(bar_format="{desc}", disable=None, leave=False, dynamic_ncols=True)
        self._thread = threading.Thread(target=self._redraw, name="fastflow-progress",
                                        daemon=True)

    def __enter__(self) -> StatusLine:
        """Draw the line now, then every ``interval`` seconds."""
        if not self._line.disable:
            self._draw()
            self._thread.start()
        return self

    def _draw(self) -> None:
        self._line.set_description_str(describe(self._status()))

    def _redraw(self) -> None:
        while not self._stop.wait(self._interval):
            self._draw()

    def __exit__(self, *exc: object) -> None:
        """Stop redrawing and wipe the line."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._line.close()


def describe(status: dict[str, Any]) -> str:
    """One line of a ``/status`` document."""
    rates = [p["items_per_second"] for p in status["processes"]
             if p["items_per_second"] is not None]
    epoch = status["epoch"]
    parts = [
        f"{status['flow_id']}: {status['state']}",
        f"{sum(rates):,.0f} items/s" if rates else "- items/s",
        f"epoch {epoch['current'] if epoch['current'] is not None else '-'}",
    ]
    if epoch["committed"] is not None:
        parts.append(f"committed {epoch['committed']}")
    if status["commits"]:
        last = status["commits"][-1]
        parts.append(f"last commit {last['duration_seconds'] * 1000:.1f} ms, {last['bytes']:,} B")
    return " | ".join(parts)

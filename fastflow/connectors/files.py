r"""File connectors: read lines or CSV rows from files, write lines to files.

Every source and sink here resumes exactly. A source partition's snapshot is
the byte offset it has read up to, so a resumed flow continues with the next
line. A sink partition's snapshot is the byte offset it had written (and
flushed to disk) when the epoch closed; on resume the file is truncated back to
that offset before anything is written, so the lines a killed run wrote after
its last snapshot are not in the file twice.

Files are read and written as UTF-8. A line ends with ``"\n"`` (a ``"\r\n"``
ending is removed too); a last line without one is still read.

>>> import tempfile
>>> from pathlib import Path
>>> import fastflow.operators as op
>>> from fastflow.dataflow import Dataflow
>>> from fastflow.testing import run_main
>>> tmp = Path(tempfile.mkdtemp())
>>> _ = (tmp / "in.txt").write_text("hello\nworld\n")
>>> flow = Dataflow("files_eg")
>>> lines = op.input("read", flow, FileSource(tmp / "in.txt"))
>>> upper = op.map("upper", lines, lambda line: ("ALL", line.upper()))
>>> op.output("write", upper, FileSink(tmp / "out.txt"))
>>> run_main(flow)
>>> print((tmp / "out.txt").read_text(), end="")
HELLO
WORLD
>>> import shutil; shutil.rmtree(tmp)
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from fastflow.inputs import FixedPartitionedSource, StatefulSourcePartition
from fastflow.outputs import FixedPartitionedSink, StatefulSinkPartition

__all__ = ["CSVSource", "DirSink", "DirSource", "FileSink", "FileSource"]

_ENCODING = "utf-8"
_SEP = "::"


def _get_path_dev(path: Path) -> str:
    """Name the file system ``path`` is on (its device number), e.g. ``"0xfe00"``."""
    return hex(path.stat().st_dev)


def _part_name(fs_id: str, path: Path | str) -> str:
    if _SEP in fs_id:  # the partition name could not be split back (Bytewax's wording)
        raise ValueError(f"result of `get_fs_id` must not contain `::`; got {fs_id!r}")
    return f"{fs_id}{_SEP}{path}"


def _strip_newline(raw: bytes) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    return raw.decode(_ENCODING)


class _LinePartition(StatefulSourcePartition[str, int]):
    """Reads a file ``batch_size`` lines at a time; the snapshot is the byte offset reached."""

    def __init__(self, path: Path, batch_size: int, resume_state: int | None) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._batch_size = batch_size
        self._offset = resume_state or 0
        self._file.seek(self._offset)

    def next_batch(self) -> list[str]:
        readline = self._file.readline
        raws = []
        for _ in range(self._batch_size):
            raw = readline()
            if not raw:
                break
            raws.append(raw)
        if not raws:
            raise StopIteration()
        self._offset += sum(map(len, raws))
        return [_strip_newline(raw) for raw in raws]

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._file.close()


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")


class FileSource(FixedPartitionedSource[str, int]):
    """Read a file line by line (without the line endings); the input ends at the end of the file.

    The file is one partition, named ``"{fs_id}::{path}"`` where ``fs_id``
    (from ``get_fs_id``, by default the file's device number) tells files on
    different machines apart. A worker that cannot see the file lists no
    partition, so a missing file is read as an empty input. ``batch_size`` is
    the most lines emitted at once.
    """

    def __init__(
        self,
        path: Path | str,
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
    ) -> None:
        _check_batch_size(batch_size)
        self._path = Path(path)
        self._batch_size = batch_size
        self._get_fs_id = get_fs_id

    def list_parts(self) -> list[str]:
        """The file, if this worker can see it."""
        if not self._path.exists():
            return []
        return [_part_name(self._get_fs_id(self._path), self._path)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[str, int]:
        """Open the file, at byte ``resume_state`` when resuming."""
        self._check_part(for_part)
        return _LinePartition(self._path, self._batch_size, resume_state)

    def _check_part(self, for_part: str) -> None:
        _, _, path = for_part.partition(_SEP)
        if path != str(self._path):
            raise ValueError(
                f"{type(self).__name__} of {str(self._path)!r} has no partition {for_part!r}"
            )


class DirSource(FixedPartitionedSource[str, int]):
    """Read every file in a directory that matches ``glob_pat``, each a partition.

    Partitions are named ``"{fs_id}::{path relative to dir_path}"`` and listed
    in sorted order; ``glob_pat`` is a :meth:`pathlib.Path.glob` pattern
    (``"**/*.txt"`` also searches subdirectories), and only regular files
    match. Each file is read like :class:`FileSource` reads its file, and
    resumes the same way.
    """

    def __init__(
        self,
        dir_path: Path | str,
        glob_pat: str = "*",
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
    ) -> None:
        _check_batch_size(batch_size)
        self._dir = Path(dir_path)
        if not self._dir.exists():
            raise ValueError(f"input directory `{self._dir}` does not exist")
        if not self._dir.is_dir():
            raise ValueError(f"input directory `{self._dir}` is not a directory")
        self._glob_pat = glob_pat
        self._batch_size = batch_size
        self._get_fs_id = get_fs_id

    def list_parts(self) -> list[str]:
        """One partition per matching file."""
        fs_id = self._get_fs_id(self._dir)
        return sorted(
            _part_name(fs_id, path.relative_to(self._dir))
            for path in self._dir.glob(self._glob_pat)
            if path.is_file()
        )

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[str, int]:
        """Open the partition's file, at byte ``resume_state`` when resuming."""
        _, sep, relative = for_part.partition(_SEP)
        if not sep:
            raise ValueError(f"DirSource of {str(self._dir)!r} has no partition {for_part!r}")
        return _LinePartition(self._dir / relative, self._batch_size, resume_state)


class _CSVPartition(StatefulSourcePartition[dict[str, Any], int]):
    """Reads CSV rows as dicts keyed by the header row; the snapshot is the byte offset reached."""

    def __init__(
        self,
        path: Path,
        batch_size: int,
        resume_state: int | None,
        fmtparams: dict[str, Any],
    ) -> None:
        self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._batch_size = batch_size
        self._offset = 0
        self._rows = csv.DictReader(self._lines(), **fmtparams)
        # Read the header now, so the offset is never inside it.
        self._rows.fieldnames  # noqa: B018 - reading it consumes the header row
        if resume_state is not None and resume_state > self._offset:
            self._file.seek(resume_state)
            self._offset = resume_state

    def _lines(self) -> Iterator[str]:
        """The file's lines with their endings, counting the bytes handed to the CSV reader."""
        while raw := self._file.readline():
            self._offset += len(raw)
            yield raw.decode(_ENCODING)

    def next_batch(self) -> list[dict[str, Any]]:
        rows = []
        for row in self._rows:
            rows.append(row)
            if len(rows) == self._batch_size:
                break
        if not rows:
            raise StopIteration()
        return rows

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._file.close()


class CSVSource(FileSource):
    """Read a CSV file as one ``dict`` per row, keyed by the names in its first row.

    Rows are parsed like :class:`csv.DictReader` parses them, with the
    ``fmtparams`` (``delimiter``, ``quotechar``, ...) it takes; a quoted value
    may span lines. Partitions, batches and resume work as in
    :class:`FileSource`.
    """

    def __init__(
        self,
        path: Path | str,
        batch_size: int = 1000,
        get_fs_id: Callable[[Path], str] = _get_path_dev,
        **fmtparams: Any,
    ) -> None:
        super().__init__(path, batch_size, get_fs_id)
        self._fmtparams = fmtparams

    # CSVSource is a FileSource (as in Bytewax, so isinstance checks hold) whose items are
    # rows as dicts, not lines: its partitions' item type differs from FileSource's.
    def build_part(  # type: ignore[override]
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSourcePartition[dict[str, Any], int]:
        """Open the file and read its header, then go to byte ``resume_state`` when resuming."""
        self._check_part(for_part)
        return _CSVPartition(self._path, self._batch_size, resume_state, self._fmtparams)


class _FileSinkPartition(StatefulSinkPartition[str, int]):
    """Appends ``value + end`` per value; the snapshot is the byte offset written and synced."""

    def __init__(self, path: Path, end: str, resume_state: int | None) -> None:
        keep = resume_state or 0
        if keep:
            size = path.stat().st_size if path.exists() else 0
            if size < keep:
                raise ValueError(
                    f"cannot resume writing {str(path)!r}: it has {size} bytes, fewer than the "
                    f"{keep} written before the last snapshot; it was changed or replaced since. "
                    "Restore it, or start over with a fresh recovery directory"
                )
        self._file = open(path, "r+b" if keep else "wb")  # noqa: SIM115 - closed by close()
        self._file.truncate(keep)
        self._file.seek(keep)
        self._end = end
        self._unsynced = False

    def write_batch(self, values: list[str]) -> None:
        end = self._end
        try:
            text = "".join([value + end for value in values])
        except TypeError:
            bad = next(v for v in values if not isinstance(v, str))
            raise TypeError(
                f"file sinks write `str` values; got a {type(bad).__name__!r} ({bad!r}); "
                "convert the values first, e.g. with `op.map_value(..., str)`"
            ) from None
        self._file.write(text.encode(_ENCODING))
        self._unsynced = True

    def snapshot(self) -> int:
        if self._unsynced:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._unsynced = False
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


class FileSink(FixedPartitionedSink[str, int]):
    """Write each value (a ``str``) followed by ``end`` to one file.

    Takes a stream of ``(key, value)`` 2-tuples, as every partitioned sink
    does; the key is ignored. The file is created, or emptied when the flow
    starts without resume state; its partition is named ``str(path)``.
    """

    def __init__(self, path: Path | str, end: str = "\n") -> None:
        self._path = Path(path)
        self._end = end

    def list_parts(self) -> list[str]:
        """The single file."""
        return [str(self._path)]

    def part_fn(self, item_key: str) -> int:
        """Every key goes to the only file."""
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSinkPartition[str, int]:
        """Open the file, cut back to byte ``resume_state`` when resuming."""
        if for_part != str(self._path):
            raise ValueError(f"FileSink of {str(self._path)!r} has no partition {for_part!r}")
        return _FileSinkPartition(self._path, self._end, resume_state)


def _default_file_namer(index: int, count: int) -> str:
    """``part_0``, ``part_1``, ..."""
    return f"part_{index}"


def _default_assign_file(item_key: str) -> int:
    """The Adler-32 checksum of the key's UTF-8 bytes (taken modulo the file count)."""
    return zlib.adler32(item_key.encode())


class DirSink(FixedPartitionedSink[str, int]):
    """Write values to ``file_count`` files in ``dir_path``, picking a file by each item's key.

    Items are ``(key, value)`` 2-tuples; ``assign_file(key)`` (modulo
    ``file_count``) picks the file, ``file_namer(index, file_count)`` names it
    (``part_0``, ``part_1``, ... by default), and the value, a ``str``, is
    written followed by ``end``. The directory must exist. Each file is a
    partition that resumes like :class:`FileSink`'s file.
    """

    def __init__(
        self,
        dir_path: Path | str,
        file_count: int,
        file_namer: Callable[[int, int], str] = _default_file_namer,
        assign_file: Callable[[str], int] = _default_assign_file,
        end: str = "\n",
    ) -> None:
        if not isinstance(file_count, int) or file_count < 1:
            raise ValueError(f"file_count must be a positive int; got {file_count!r}")
        self._dir = Path(dir_path)
        self._names: tuple[str, ...] = tuple(file_namer(i, file_count) for i in range(file_count))
        self._assign_file = assign_file
        self._end = end

    def list_parts(self) -> list[str]:
        """The file names."""
        return list(self._names)

    def part_fn(self, item_key: str) -> int:
        """Pick the file with ``assign_file``."""
        return self._assign_file(item_key)

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> StatefulSinkPartition[str, int]:
        """Open the file ``for_part``, cut back to byte ``resume_state`` when resuming."""
        if for_part not in self._names:
            raise ValueError(f"DirSink of {str(self._dir)!r} has no file {for_part!r}")
        return _FileSinkPartition(self._dir / for_part, self._end, resume_state)

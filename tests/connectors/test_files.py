"""File connectors: reading, writing, partitions, and exact resume from byte offsets."""

from __future__ import annotations

import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any, List, Optional

import pytest

import fastflow.operators as op
from fastflow.connectors.files import CSVSource, DirSink, DirSource, FileSink, FileSource
from fastflow.dataflow import Dataflow
from fastflow.errors import FastflowRuntimeError
from fastflow.inputs import StatefulSourcePartition
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main


def fs_id(_path: Path) -> str:
    return "fs"


def read_all(part: StatefulSourcePartition[Any, int]) -> List[List[Any]]:
    """Every batch the partition returns until it ends."""
    batches = []
    while True:
        try:
            batches.append(part.next_batch())
        except StopIteration:
            return batches


def only_part(source: Any, resume_state: Optional[int] = None) -> Any:
    (name,) = source.list_parts()
    return source.build_part("df.inp", name, resume_state)


# FileSource.


def test_file_source_reads_lines_without_endings(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\ntwo\r\n\n  spaced \t\n\xc3\xa9t\xc3\xa9\nlast")
    part = only_part(FileSource(path, batch_size=2))
    assert read_all(part) == [["one", "two"], ["", "  spaced \t"], ["été", "last"]]
    assert part.snapshot() == path.stat().st_size


def test_file_source_snapshot_is_the_byte_offset_after_each_batch(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"a\r\nbb\nccc\n")
    part = only_part(FileSource(path, batch_size=1))
    offsets = []
    for _ in range(3):
        part.next_batch()
        offsets.append(part.snapshot())
    assert offsets == [3, 6, 10]


def test_file_source_resumes_at_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("a\nb\nc\nd\n")
    assert read_all(only_part(FileSource(path, batch_size=10), resume_state=4)) == [["c", "d"]]
    assert read_all(only_part(FileSource(path), resume_state=8)) == []
    assert read_all(only_part(FileSource(path), resume_state=100)) == []


def test_file_source_partition_is_named_by_file_system_and_path(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("x\n")
    assert FileSource(path, get_fs_id=fs_id).list_parts() == [f"fs::{path}"]
    assert FileSource(str(path), get_fs_id=fs_id).list_parts() == [f"fs::{path}"]
    (name,) = FileSource(path).list_parts()
    assert name == f"{hex(path.stat().st_dev)}::{path}"


def test_file_source_of_a_missing_file_has_no_partitions(tmp_path: Path) -> None:
    source = FileSource(tmp_path / "missing.txt")
    assert source.list_parts() == []
    out: List[str] = []
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, source), TestingSink(out))
    run_main(flow)
    assert out == []


def test_file_source_rejects_a_foreign_partition(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no partition 'fs::elsewhere.txt'"):
        FileSource(tmp_path / "in.txt").build_part("df.inp", "fs::elsewhere.txt", None)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_sources_reject_a_non_positive_batch_size(tmp_path: Path, batch_size: int) -> None:
    for make in (FileSource, CSVSource, DirSource):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            make(tmp_path, batch_size=batch_size)


# DirSource.


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_text("b1\nb2\n")
    (root / "a.txt").write_text("a1\n")
    (root / "c.log").write_text("c1\n")
    (root / "sub" / "d.txt").write_text("d1\n")
    return root


def test_dir_source_has_a_sorted_partition_per_matching_file(tree: Path) -> None:
    assert DirSource(tree, get_fs_id=fs_id).list_parts() == ["fs::a.txt", "fs::b.txt", "fs::c.log"]
    assert DirSource(tree, "*.txt", get_fs_id=fs_id).list_parts() == ["fs::a.txt", "fs::b.txt"]
    assert DirSource(tree, "**/*.txt", get_fs_id=fs_id).list_parts() == [
        "fs::a.txt",
        "fs::b.txt",
        "fs::sub/d.txt",
    ]


def test_dir_source_reads_and_resumes_each_file(tree: Path) -> None:
    source = DirSource(tree, "**/*.txt", get_fs_id=fs_id)
    assert read_all(source.build_part("df.inp", "fs::sub/d.txt", None)) == [["d1"]]
    assert read_all(source.build_part("df.inp", "fs::b.txt", 3)) == [["b2"]]


def test_dir_source_in_a_flow_reads_every_file(tree: Path) -> None:
    out: List[str] = []
    flow = Dataflow("df")
    op.output("out", op.input("inp", flow, DirSource(tree, "*.txt")), TestingSink(out))
    run_main(flow)
    assert out == ["a1", "b1", "b2"]


def test_dir_source_needs_an_existing_directory(tree: Path) -> None:
    """Bytewax's wording, which users' tests match on."""
    with pytest.raises(ValueError) as info:
        DirSource(tree / "nowhere")
    assert str(info.value) == f"input directory `{tree / 'nowhere'}` does not exist"
    with pytest.raises(ValueError) as info:
        DirSource(tree / "a.txt")
    assert str(info.value) == f"input directory `{tree / 'a.txt'}` is not a directory"


@pytest.mark.parametrize("source", [DirSource, FileSource])
def test_fs_id_must_not_contain_the_separator(tree: Path, source: Any) -> None:
    path = tree if source is DirSource else tree / "a.txt"
    with pytest.raises(ValueError) as info:
        source(path, get_fs_id=lambda _p: "a::b").list_parts()
    assert str(info.value) == "result of `get_fs_id` must not contain `::`; got 'a::b'"


# CSVSource.


def test_csv_source_reads_rows_as_dicts(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('name,note\nann,"a, b"\nbob,"two\nlines"\n\ncy,\n')
    part = only_part(CSVSource(path, batch_size=2))
    assert read_all(part) == [
        [{"name": "ann", "note": "a, b"}, {"name": "bob", "note": "two\nlines"}],
        [{"name": "cy", "note": ""}],
    ]
    assert part.snapshot() == path.stat().st_size


def test_csv_source_resumes_after_the_last_row_read(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('k,v\n1,"x\ny"\n2,z\n')
    part = only_part(CSVSource(path, batch_size=1))
    assert part.next_batch() == [{"k": "1", "v": "x\ny"}]
    offset = part.snapshot()
    assert offset == len('k,v\n1,"x\ny"\n')
    assert read_all(only_part(CSVSource(path), resume_state=offset)) == [[{"k": "2", "v": "z"}]]


def test_csv_source_resumed_at_zero_does_not_read_the_header_as_a_row(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("k\n1\n")
    assert read_all(only_part(CSVSource(path), resume_state=0)) == [[{"k": "1"}]]


def test_csv_source_passes_format_parameters(tmp_path: Path) -> None:
    path = tmp_path / "in.tsv"
    path.write_text("a\tb\n1\t2\n")
    assert read_all(only_part(CSVSource(path, delimiter="\t"))) == [[{"a": "1", "b": "2"}]]


def test_csv_source_of_an_empty_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("")
    assert read_all(only_part(CSVSource(path))) == []


# FileSink.


def test_file_sink_writes_each_value_and_end(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    sink = FileSink(path)
    assert sink.list_parts() == [str(path)]
    assert sink.part_fn("any key") == 0
    part = sink.build_part("df.out", str(path), None)
    part.write_batch(["a", "été"])
    assert part.snapshot() == len("a\nété\n".encode())
    part.write_batch(["b"])
    part.close()
    assert path.read_text() == "a\nété\nb\n"


def test_file_sink_with_another_end(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    part = FileSink(path, end=";").build_part("df.out", str(path), None)
    part.write_batch(["a", "b"])
    part.close()
    assert path.read_text() == "a;b;"


def test_file_sink_without_resume_state_empties_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    FileSink(path).build_part("df.out", str(path), None).close()
    assert path.read_text() == ""


def test_file_sink_resume_truncates_to_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    part = FileSink(path).build_part("df.out", str(path), None)
    part.write_batch(["kept"])
    offset = part.snapshot()
    part.write_batch(["written after the snapshot"])
    part.close()
    resumed = FileSink(path).build_part("df.out", str(path), offset)
    assert path.read_text() == "kept\n"
    assert resumed.snapshot() == offset
    resumed.write_batch(["next"])
    resumed.close()
    assert path.read_text() == "kept\nnext\n"


def test_file_sink_refuses_to_resume_a_file_shorter_than_its_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("ab")
    with pytest.raises(ValueError, match="it has 2 bytes, fewer than the 5 written"):
        FileSink(path).build_part("df.out", str(path), 5)
    path.unlink()
    with pytest.raises(ValueError, match="it has 0 bytes, fewer than the 5 written"):
        FileSink(path).build_part("df.out", str(path), 5)


def test_file_sink_needs_str_values(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    part = FileSink(path).build_part("df.out", str(path), None)
    with pytest.raises(TypeError, match=r"file sinks write `str` values; got a 'int' \(1\)"):
        part.write_batch(["a", 1])


def test_file_sink_takes_keyed_items_and_writes_values(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    flow = Dataflow("df")
    items = op.input("inp", flow, TestingSource([("k", "a"), ("j", "b")]))
    op.output("out", items, FileSink(path))
    run_main(flow)
    assert path.read_text() == "a\nb\n"


def test_file_sink_rejects_a_foreign_partition(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no partition 'other'"):
        FileSink(tmp_path / "out.txt").build_part("df.out", "other", None)


# DirSink.


def test_dir_sink_names_files_and_assigns_keys_by_adler32(tmp_path: Path) -> None:
    sink = DirSink(tmp_path, 3)
    assert sink.list_parts() == ["part_0", "part_1", "part_2"]
    assert sink.part_fn("a") == zlib.adler32(b"a") == 6422626
    flow = Dataflow("df")
    items = [("a", "1"), ("b", "2"), ("0", "3"), ("1", "4"), ("2", "5")]
    op.output("out", op.input("inp", flow, TestingSource(items)), sink)
    run_main(flow)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        "part_0": "2\n5\n",
        "part_1": "1\n4\n",
        "part_2": "3\n",
    }


def test_dir_sink_with_a_namer_an_assigner_and_an_end(tmp_path: Path) -> None:
    sink = DirSink(
        tmp_path, 2, file_namer=lambda i, n: f"{i}-of-{n}.csv", assign_file=len, end=","
    )
    assert sink.list_parts() == ["0-of-2.csv", "1-of-2.csv"]
    flow = Dataflow("df")
    items = [("aa", "x"), ("b", "y"), ("cc", "z")]
    op.output("out", op.input("inp", flow, TestingSource(items)), sink)
    run_main(flow)
    assert (tmp_path / "0-of-2.csv").read_text() == "x,z,"
    assert (tmp_path / "1-of-2.csv").read_text() == "y,"


def test_dir_sink_resumes_each_file_at_its_snapshot(tmp_path: Path) -> None:
    sink = DirSink(tmp_path, 2)
    part = sink.build_part("df.out", "part_1", None)
    part.write_batch(["kept"])
    offset = part.snapshot()
    part.write_batch(["dropped"])
    part.close()
    DirSink(tmp_path, 2).build_part("df.out", "part_1", offset).close()
    assert (tmp_path / "part_1").read_text() == "kept\n"


def test_dir_sink_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file_count must be a positive int; got 0"):
        DirSink(tmp_path, 0)
    with pytest.raises(ValueError, match="has no file 'part_9'"):
        DirSink(tmp_path, 2).build_part("df.out", "part_9", None)


# Recovery: a run that fails after writing past its last snapshot, then resumes.


def upper_flow(src: Path, dst: Path, fail_on: Optional[str]) -> Dataflow:
    """Lines of ``src`` upper-cased into ``dst``; a step after the sink raises on ``fail_on``."""

    def check(line: str) -> str:
        if line == fail_on:
            raise RuntimeError(f"failing on {line!r}")
        return line

    flow = Dataflow("df")
    lines = op.input("inp", flow, FileSource(src, batch_size=2))
    upper = op.map("upper", lines, lambda line: ("ALL", line.upper()))
    op.output("out", upper, FileSink(dst))
    # Added after the sink, so it sees each batch after the sink has written it.
    op.inspect("checked", op.map("check", lines, check), lambda step_id, item: None)
    return flow


def test_failed_run_resumed_writes_each_line_once(tmp_path: Path) -> None:
    src, dst, db = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "db"
    src.write_text("".join(f"line {i}\n" for i in range(10)))
    init_db_dir(db, 1)
    recovery = RecoveryConfig(db)
    every_batch = timedelta(microseconds=1)

    with pytest.raises(FastflowRuntimeError):
        run_main(upper_flow(src, dst, "line 5"), epoch_interval=every_batch,
                 recovery_config=recovery)
    # The batch with line 5 was written after the last snapshot, which ends at line 3.
    assert dst.read_text().splitlines() == [f"LINE {i}" for i in range(6)]

    run_main(upper_flow(src, dst, None), epoch_interval=every_batch, recovery_config=recovery)
    assert dst.read_text() == "".join(f"LINE {i}\n" for i in range(10))

    src.write_text(src.read_text() + "line 10\n")
    run_main(upper_flow(src, dst, None), epoch_interval=every_batch, recovery_config=recovery)
    assert dst.read_text() == "".join(f"LINE {i}\n" for i in range(11))

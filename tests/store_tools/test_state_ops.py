"""Operating the state: `fastflow recovery export / import / get / repartition / backup`.

Stores are written by real runs; the commands run as the real `fastflow` command (in a
subprocess) except where a test must hold the store's lock in this process. Crash tests
stall a command at a chosen point (a runner script patches one function) and SIGKILL it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from _paths import TESTS
from _stores import stored_state

import fastflow.operators as op
from fastflow._store.store import RecoveryStore
from fastflow.cli import main
from fastflow.dataflow import Dataflow
from fastflow.recovery import RecoveryConfig, init_db_dir
from fastflow.testing import TestingSink, TestingSource, run_main

# The commands import this module (its dataclasses are states), and it imports the helpers.
PYTHONPATH = os.pathsep.join([str(Path(__file__).resolve().parent), str(TESTS)])
FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))
KEEP = "ops.keep.stateful_batch"
SUM = "sums.sum.stateful_batch"


@dataclass(frozen=True)
class Point:
    x: int
    y: float


# One state of every kind the codec stores, each under its own key.
STATES: dict[str, Any] = {
    "int": 42,
    "negative": -7,
    "float": 2.5,
    "negative_zero": -0.0,
    "big_float": 1e16,
    "infinity": float("inf"),
    "big_int": 2**70,
    "str": "héllo",
    "surrogate": "a\udc80",
    "bool": True,
    "list": [1, "a", 2.5, [None]],
    "dict": {"count": 3, "avg": 1.5},
    "dict_like_a_tag": {"$tuple": 1},
    "dict_int_keys": {7: "seven", 8: None},
    "tuple": (1, "a"),
    "set": {1, 2, 3},
    "frozenset": frozenset({"x"}),
    "bytes": b"\x00\xff",
    "decimal": Decimal("1.10"),
    "datetime_utc": datetime(2024, 5, 17, 9, 30, tzinfo=timezone.utc),
    "datetime_naive": datetime(2024, 1, 1, 0, 0, 1),
    "datetime_zone": datetime(2024, 3, 10, 12, 0, tzinfo=ZoneInfo("Europe/Paris")),
    "date": date(2024, 2, 29),
    "time": clock_time(12, 30, 1, 5),
    "timedelta": timedelta(days=1, seconds=2, microseconds=3),
    "dataclass": Point(1, 2.0),
    "nested": {7: ({Point(0, 0.5)}, datetime(2024, 5, 17, tzinfo=timezone.utc))},
    "pickled": OrderedDict(a=1),
}


def fastflow(*args: object, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FASTFLOW, *map(str, args)], cwd=cwd, capture_output=True, timeout=120, input=stdin,
        text=True, env={**os.environ, "PYTHONPATH": PYTHONPATH},
    )


def ok(*args: object, cwd: Path) -> str:
    proc = fastflow(*args, cwd=cwd)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    return proc.stdout


def refused(*args: object, cwd: Path) -> str:
    """Run a command that must fail with exit code 2; return its one line on stderr."""
    proc = fastflow(*args, cwd=cwd)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def write_states(db: Path, states: dict[str, Any], parts: int = 2) -> None:
    """A store whose step ``KEEP`` holds ``states``, written by a real run."""
    init_db_dir(db, parts)
    flow = Dataflow("ops")
    kept = op.stateful_map("keep", op.input("inp", flow, TestingSource(list(states.items()))),
                           lambda _old, value: (value, None))
    op.output("out", kept, TestingSink([]))
    run_main(flow, recovery_config=RecoveryConfig(db))


def rows(db: Path) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Everything a resume reads from each partition, to compare stores exactly."""
    found = []
    for part in sorted(db.glob("part-*.sqlite3")):
        conn = sqlite3.connect(part)
        try:
            found.append((part.name, [
                *conn.execute("SELECT * FROM executions ORDER BY 1"),
                *conn.execute("SELECT * FROM frontiers ORDER BY 1, 2"),
                *conn.execute("SELECT * FROM changesets ORDER BY 1, 2, 3, 4, 5"),
                *conn.execute("SELECT * FROM meta WHERE key = 'gc_horizon'"),
            ]))
        finally:
            conn.close()
    return found


def lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


# Export, import, get.


def test_export_import_export_is_identical_for_every_codec_type(tmp_path: Path) -> None:
    write_states(tmp_path / "db", STATES)
    first = ok("recovery", "export", "db", "--step", KEEP, cwd=tmp_path)
    assert {line["key"] for line in lines(first)} == set(STATES)
    assert lines(first)[0]["step"] == KEEP
    (tmp_path / "edit.jsonl").write_text(first)

    out = ok("recovery", "import", "db", "edit.jsonl", "--allow-pickle", "--allow-import",
             cwd=tmp_path)
    assert out == (f"imported {len(STATES)} state(s) and 0 deletion(s) into db as epoch 2; "
                   "the next run resumes at epoch 3\n")
    assert ok("recovery", "export", "db", "--step", KEEP, cwd=tmp_path) == first
    restored = stored_state(tmp_path / "db", KEEP)
    assert restored == STATES
    assert {k: type(v) for k, v in restored.items()} == {k: type(v) for k, v in STATES.items()}
    assert restored["datetime_zone"].tzinfo == ZoneInfo("Europe/Paris")
    assert str(restored["negative_zero"]) == "-0.0"


def test_export_shows_typed_json_and_never_unpickles(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {"t": (1, "a"), "p": OrderedDict(a=1)}, parts=1)
    exported = {line["key"]: line["state"] for line in lines(
        ok("recovery", "export", "db", "--step", KEEP, cwd=tmp_path))}
    assert exported["t"] == {"$tuple": [1, "a"]}
    assert list(exported["p"]) == ["$pickle"]
    assert ok("recovery", "get", "db", KEEP, "t", cwd=tmp_path) == '{"$tuple":[1,"a"]}\n'
    # A pickle that would run code if loaded: export and get show it, untouched.
    evil = 'gASVHQAAAAAAAACMAm9zlIwGc3lzdGVtlJOUjAVleGl0IDGUhZRSlC4='  # os.system("exit 1")
    conn = sqlite3.connect(tmp_path / "db" / "part-0.sqlite3")
    with conn:
        conn.execute("UPDATE changesets SET blob = ? WHERE step_id = ?",
                     (b'{"set":{"x":{"$pickle":"' + evil.encode() + b'"}},"del":[]}', KEEP))
    conn.close()
    assert ok("recovery", "get", "db", KEEP, "x", cwd=tmp_path) == f'{{"$pickle":"{evil}"}}\n'
    assert f'"state":{{"$pickle":"{evil}"}}' in ok("recovery", "export", "db", cwd=tmp_path)


def test_export_is_sorted_by_step_and_key_within_a_partition(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {f"k{i}": i for i in (5, 3, 9, 1)}, parts=1)
    out = lines(ok("recovery", "export", "db", cwd=tmp_path))
    assert [(line["step"], line["key"]) for line in out] == [
        ("ops.inp", "iterable"), (KEEP, "k1"), (KEEP, "k3"), (KEEP, "k5"), (KEEP, "k9"),
    ]


def test_export_filters_and_output_file(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {f"k{i}": i for i in range(20)}, parts=3)
    everything = lines(ok("recovery", "export", "db", cwd=tmp_path))
    assert len(everything) == 21  # 20 keys and the source's position
    assert lines(ok("recovery", "export", "db", "--key", "k7", cwd=tmp_path)) == [
        {"step": KEEP, "key": "k7", "state": 7}
    ]
    assert ok("recovery", "export", "db", "--step", KEEP, "--key", "nope", cwd=tmp_path) == ""
    assert ok("recovery", "export", "db", "--step", KEEP, "-o", "out.jsonl", cwd=tmp_path) == (
        "exported 20 key(s) of db to out.jsonl\n"
    )
    keep = [line for line in everything if line["step"] == KEEP]
    assert sorted(lines((tmp_path / "out.jsonl").read_text()), key=str) == sorted(keep, key=str)


def test_export_at_an_older_epoch_inside_the_backup_window(tmp_path: Path) -> None:
    init_db_dir(tmp_path / "db", 1)
    flow = Dataflow("sums")
    nums = op.input("inp", flow, TestingSource([1, 2, 3, 4], batch_size=1))
    sums = op.stateful_map("sum", op.key_on("k", nums, lambda _: "k"),
                           lambda acc, x: ((acc or 0) + x, None))
    op.output("out", sums, TestingSink([]))
    run_main(flow, epoch_interval=timedelta(0),
             recovery_config=RecoveryConfig(tmp_path / "db", backup_interval=timedelta(hours=1)))
    with RecoveryStore.inspect(tmp_path / "db") as store:
        resume = store.plan().epoch
    seen = []
    for epoch in range(1, resume + 1):
        out = lines(ok("recovery", "export", "db", "--step", SUM, "--epoch", epoch, cwd=tmp_path))
        state = out[0]["state"] if out else None
        if not seen or seen[-1] != state:
            seen.append(state)
    assert seen == [None, 1, 3, 6, 10]
    assert ok("recovery", "export", "db", "--epoch", resume, cwd=tmp_path) == ok(
        "recovery", "export", "db", cwd=tmp_path)
    for epoch in (0, resume + 1):
        assert refused("recovery", "export", "db", "--epoch", epoch, cwd=tmp_path) == (
            f"fastflow recovery export: error: cannot read db as of resume epoch {epoch}: it "
            f"keeps resume epochs 1 to {resume} (older ones are garbage-collected; the backup "
            "window `-b` of the run sets how many are kept)\n"
        )
    assert not (tmp_path / "out.jsonl").exists()


def test_get(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {"a": {"n": 1}, "b": (2,)}, parts=2)
    assert ok("recovery", "get", "db", KEEP, "a", cwd=tmp_path) == '{"n":1}\n'
    assert ok("recovery", "get", "db", KEEP, "b", cwd=tmp_path) == '{"$tuple":[2]}\n'
    absent = fastflow("recovery", "get", "db", KEEP, "zz", cwd=tmp_path)
    assert (absent.returncode, absent.stdout, absent.stderr) == (
        1, "", f"fastflow recovery get: key 'zz' of step '{KEEP}' has no state in db\n"
    )
    assert refused("recovery", "get", "db", "ops.nope", "a", cwd=tmp_path) == (
        "fastflow recovery get: error: db holds no state of step 'ops.nope'; its steps are: "
        f"ops.inp, {KEEP}\n"
    )
    assert "does not exist" in refused("recovery", "get", "missing", KEEP, "a", cwd=tmp_path)


def test_export_refuses_an_unknown_step_and_a_missing_store(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {"a": 1}, parts=1)
    assert "holds no state of step 'x'" in refused(
        "recovery", "export", "db", "--step", "x", "-o", "out.jsonl", cwd=tmp_path)
    assert not (tmp_path / "out.jsonl").exists()
    assert "does not exist" in refused("recovery", "export", "nowhere", cwd=tmp_path)


BAD_LINES = [
    ('{"step": "ops.keep.stateful_batch", "key": "a"', "not valid JSON"),
    ('[1, 2]', "expected an object with exactly the members step, key and state"),
    ('{"step": "ops.keep.stateful_batch", "key": "a"}', "expected an object with exactly the"),
    ('{"step": "ops.keep.stateful_batch", "key": "a", "state": 1, "x": 2}', "expected an obj"),
    ('{"step": "ops.keep.stateful_batch", "key": 7, "state": 1}', "step and key must be strings"),
    ('{"step": "ops.nope", "key": "a", "state": 1}',
     "unknown step 'ops.nope'; the store holds state of ops.inp, ops.keep.stateful_batch"),
    ('{"step": "ops.keep.stateful_batch", "key": "a", "state": {"$tuple": 5}}',
     "the state cannot be decoded: ValueError: malformed snapshot: '$tuple' tag with payload 5"),
    ('{"step": "ops.keep.stateful_batch", "key": "a", "state": {"$nope": 5}}',
     "the state cannot be decoded: ValueError: unknown snapshot tag '$nope'"),
    ('{"step": "ops.keep.stateful_batch", "key": "a", "state": '
     '{"$dataclass": ["no_such_module:Point", {}]}}',
     "the state names class 'no_such_module:Point'; checking it would import module "
     "'no_such_module', which runs its code: pass --allow-import if you trust this file"),
    ('{"step": "ops.keep.stateful_batch", "key": "b", "state": 2}',
     "key 'b' of step 'ops.keep.stateful_batch' is already on line 2; give each key once"),
    ('{"step": "ops.keep.stateful_batch", "key": "a", "state": {"$pickle": "gAVLAS4="}}',
     "the state holds a pickled object ({\"$pickle\": ...}); checking it would unpickle it, "
     "which can run any code: pass --allow-pickle if you trust this file"),
    ('{"step": "ops.keep.stateful_batch", "key": "a", "state": [{"$set": [{"$pickle": "x"}]}]}',
     "the state holds a pickled object"),
]


@pytest.mark.parametrize("bad, message", BAD_LINES)
def test_import_refuses_a_bad_line_and_writes_nothing(
    tmp_path: Path, bad: str, message: str
) -> None:
    write_states(tmp_path / "db", {"a": 1, "b": 2}, parts=2)
    before = rows(tmp_path / "db")
    good = '{"step": "ops.keep.stateful_batch", "key": "%s", "state": 5}'
    (tmp_path / "edit.jsonl").write_text(f"{good % 'z'}\n{good % 'b'}\n\n{bad}\n{good % 'y'}\n")
    err = refused("recovery", "import", "db", "edit.jsonl", cwd=tmp_path)
    assert err.startswith(f"fastflow recovery import: error: line 4: {message}"), err
    assert rows(tmp_path / "db") == before


def test_import_accepts_pickles_only_when_allowed_and_decodes_dataclasses(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {"a": 1}, parts=1)
    (tmp_path / "edit.jsonl").write_text(
        '{"step": "ops.keep.stateful_batch", "key": "p", "state": {"$pickle": "gAVLAS4="}}\n'
        '{"step": "ops.keep.stateful_batch", "key": "d", "state": {"$dict": {"$pickle": 1}}}\n'
        '{"step": "ops.keep.stateful_batch", "key": "c", '
        '"state": {"$dataclass": ["test_state_ops:Point", {"x": 3, "y": 0.5}]}}\n'
    )
    assert "line 1: the state holds a pickled object" in refused(
        "recovery", "import", "db", "edit.jsonl", cwd=tmp_path)
    assert "line 3: the state names class 'test_state_ops:Point'" in refused(
        "recovery", "import", "db", "edit.jsonl", "--allow-pickle", cwd=tmp_path)
    ok("recovery", "import", "db", "edit.jsonl", "--allow-pickle", "--allow-import",
       cwd=tmp_path)
    assert stored_state(tmp_path / "db", KEEP) == {
        "a": 1, "p": 1, "d": {"$pickle": 1}, "c": Point(3, 0.5)
    }


def test_import_null_deletes_and_new_keys_are_added(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {"a": 1, "b": 2, "c": 3}, parts=3)
    edit = (
        '{"step": "ops.keep.stateful_batch", "key": "a", "state": null}\n'
        '{"step": "ops.keep.stateful_batch", "key": "b", "state": 20}\n'
        '{"step": "ops.keep.stateful_batch", "key": "new", "state": [1]}\n'
        '{"step": "ops.keep.stateful_batch", "key": "never-was", "state": null}\n'
    )
    out = fastflow("recovery", "import", "db", "-", cwd=tmp_path, stdin=edit)
    assert (out.returncode, out.stderr, out.stdout) == (
        0, "", "imported 2 state(s) and 2 deletion(s) into db as epoch 2; the next run resumes "
        "at epoch 3\n")
    assert stored_state(tmp_path / "db", KEEP) == {"b": 20, "c": 3, "new": [1]}
    assert fastflow("recovery", "get", "db", KEEP, "a", cwd=tmp_path).returncode == 1
    assert ok("recovery", "export", "db", "--key", "a", cwd=tmp_path) == ""
    assert ok("recovery", "get", "db", KEEP, "b", cwd=tmp_path) == "20\n"
    with RecoveryStore.inspect(tmp_path / "db") as store:
        assert store.plan().epoch == 3
        assert [(e.execution, e.worker_count, e.resume_epoch)
                for e in store.executions()] == [(0, 1, 1), (1, 1, 2)]
    # The edit is deltas at epoch 2 (a partition with no state before writes a base, and
    # drops deletions of keys it never held).
    for name, found in rows(tmp_path / "db"):
        kinds = {(r[0], r[1]) for r in found if len(r) == 7 and r[0] == 2}
        assert kinds <= {(2, "delta"), (2, "base")}, (name, kinds)


def test_import_of_an_empty_file_changes_nothing(tmp_path: Path) -> None:
    write_states(tmp_path / "db", {"a": 1}, parts=1)
    before = rows(tmp_path / "db")
    (tmp_path / "edit.jsonl").write_text("\n")
    assert ok("recovery", "import", "db", "edit.jsonl", cwd=tmp_path) == (
        "edit.jsonl holds no state lines; nothing was changed\n")
    assert rows(tmp_path / "db") == before
    assert refused("recovery", "import", "db", "missing.jsonl", cwd=tmp_path) == (
        "fastflow recovery import: error: missing.jsonl: No such file or directory\n"
    )


def test_offline_commands_refuse_a_store_in_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_states(tmp_path / "db", {"a": 1}, parts=2)
    (tmp_path / "edit.jsonl").write_text(
        '{"step": "ops.keep.stateful_batch", "key": "a", "state": 2}\n')
    before = rows(tmp_path / "db")
    with RecoveryStore.open(tmp_path / "db"):  # as a running flow holds it
        for command in (["import", str(tmp_path / "db"), str(tmp_path / "edit.jsonl")],
                        ["repartition", str(tmp_path / "db"), "3"]):
            assert main(["recovery", *command]) == 2
            err = capsys.readouterr().err
            assert err == (
                f"fastflow recovery {command[0]}: error: recovery directory {tmp_path / 'db'} "
                "is in use by another running execution (it holds the lock on part-0.sqlite3); "
                "stop that execution first, or use another directory\n"
            )
        # Reading is fine meanwhile.
        assert main(["recovery", "get", str(tmp_path / "db"), KEEP, "a"]) == 0
        assert capsys.readouterr().out == "1\n"
    assert rows(tmp_path / "db") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "edit.jsonl"]


# A flow through the real `fastflow run`: running sums per key of the numbers in INPUT.
SUMS_FLOW = """
import os
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

inp = [int(x) for x in os.environ["INPUT"].split()]
flow = Dataflow("sums")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(inp)), lambda x: f"k{x % 3}")

def add(total, x):
    total = (total or 0) + x
    return total, total

op.output("out", op.stateful_map("sum", keyed, add), StdOutSink())
"""


def run_sums(cwd: Path, db: str, numbers: str) -> str:
    proc = subprocess.run([FASTFLOW, "run", "flow.py", "-r", db], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "INPUT": numbers})
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    return proc.stdout


def test_worked_example_find_fix_resume(tmp_path: Path) -> None:
    """docs/recovery.md's example: find a bad key's state, fix it, resume."""
    (tmp_path / "flow.py").write_text(SUMS_FLOW)
    ok("init-recovery", "db", "2", cwd=tmp_path)
    assert run_sums(tmp_path, "db", "3 4 5 6") == "('k0', 3)\n('k1', 4)\n('k2', 5)\n('k0', 9)\n"
    assert ok("recovery", "get", "db", SUM, "k0", cwd=tmp_path) == "9\n"
    ok("recovery", "export", "db", "--step", SUM, "-o", "sums.jsonl", cwd=tmp_path)
    fixes = {"k0": 100, "k2": None}  # set k0 to 100, delete k2, leave k1 as it is
    fixed = [{**line, "state": fixes[line["key"]]}
             for line in lines((tmp_path / "sums.jsonl").read_text()) if line["key"] in fixes]
    (tmp_path / "sums.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in fixed))
    ok("recovery", "import", "db", "sums.jsonl", cwd=tmp_path)
    # k0 goes on from the fixed 100, k2 starts over, k1 is untouched.
    assert run_sums(tmp_path, "db", "6 7 8") == "('k0', 106)\n('k1', 11)\n('k2', 8)\n"


# Repartition.


def test_repartition_keeps_every_state_and_the_next_runs_output(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS_FLOW)
    ok("init-recovery", "a", "1", cwd=tmp_path)
    numbers = " ".join(str(i) for i in range(40))
    first = run_sums(tmp_path, "a", numbers)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    export = sorted(ok("recovery", "export", "a", cwd=tmp_path).splitlines())
    for count, old in ((4, 1), (2, 4)):
        assert ok("recovery", "repartition", "b", count, cwd=tmp_path) == (
            f"repartitioned b from {old} to {count} partition(s) (4 key(s)); the next run "
            "resumes at epoch 2\n"
        )
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
            f"part-{i}.sqlite3" for i in range(count)
        ]
        assert sorted(ok("recovery", "export", "b", cwd=tmp_path).splitlines()) == export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "flow.py"]  # no leftovers
    assert first
    more = "100 101 102 103"
    assert run_sums(tmp_path, "b", more) == run_sums(tmp_path, "a", more)
    assert stored_state(tmp_path / "b", SUM) == stored_state(tmp_path / "a", SUM)
    with RecoveryStore.inspect(tmp_path / "b") as store:
        assert store.part_count == 2
        assert [e.execution for e in store.executions()] == [0, 1]


def test_repartition_of_an_empty_store_and_bad_requests(tmp_path: Path) -> None:
    init_db_dir(tmp_path / "db", 2)
    assert ok("recovery", "repartition", "db", "3", cwd=tmp_path) == (
        "repartitioned db from 2 to 3 partition(s) (0 key(s)); the next run resumes at epoch 1\n")
    before = rows(tmp_path / "db")
    assert refused("recovery", "repartition", "db", "0", cwd=tmp_path) == (
        "fastflow recovery repartition: error: partition count must be a whole number from 1 "
        "to 4096, got 0\n"
    )
    (tmp_path / "db" / "notes.txt").write_text("mine")
    assert refused("recovery", "repartition", "db", "2", cwd=tmp_path) == (
        f"fastflow recovery repartition: error: cannot repartition {tmp_path / 'db'}: the "
        "whole directory is replaced, and it also holds notes.txt; move them elsewhere first. "
        "Nothing was changed\n"
    )
    (tmp_path / "db" / "notes.txt").unlink()
    (tmp_path / "db" / "part-1.sqlite3").unlink()
    assert "1 of 3 recovery partitions missing" in refused(
        "recovery", "repartition", "db", "2", cwd=tmp_path)
    assert rows(tmp_path / "db") == [r for r in before if r[0] != "part-1.sqlite3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]


def test_repartition_through_a_symlink_replaces_the_target(tmp_path: Path) -> None:
    write_states(tmp_path / "real", {"a": 1, "b": 2}, parts=1)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    ok("recovery", "repartition", "link", "2", cwd=tmp_path)
    assert (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == [
        "part-0.sqlite3", "part-1.sqlite3"]
    assert stored_state(tmp_path / "link", KEEP) == {"a": 1, "b": 2}


# Stalls a `fastflow recovery` command at a chosen point, saying so on stderr.
STALLING = """
import shutil, sys, time
from contextlib import contextmanager
from fastflow._store import store as st
from fastflow._store_tools import backup as bk, repartition as rp
from fastflow.cli import main

where = sys.argv[1]

def stall():
    print("STALLED", file=sys.stderr, flush=True)
    time.sleep(120)

if where == "building":  # in the middle of writing the new partitions
    original_change_sets, calls = rp.change_sets, []
    def change_sets(*args):
        calls.append(1)
        if len(calls) == 2:
            stall()
        return original_change_sets(*args)
    rp.change_sets = change_sets
if where in ("before swap", "after swap"):
    original_exchanger = rp._exchanger
    def exchanger():
        exchange = original_exchanger()
        def stalling(a, b):
            if where == "before swap":
                stall()
            exchange(a, b)
            stall()
        return stalling
    rp._exchanger = exchanger
if where.startswith("import "):  # partition 0's transaction done, partition 1's not
    original_writing, seen = st._writing, []
    first_word = {"import started": "starting", "import commit": "committing"}[where]
    @contextmanager
    def writing(db_dir, part, what):
        if what.startswith(first_word):
            seen.append(1)
            if len(seen) == 2:
                stall()
        with original_writing(db_dir, part, what) as conn:
            yield conn
    st._writing = writing
if where == "backup copy":  # one partition copied
    original_connect = bk.sqlite3.connect
    copies = []
    def connect(path, *args, **kwargs):
        if ".backup-" in str(path):
            copies.append(1)
            if len(copies) == 2:
                stall()
        return original_connect(path, *args, **kwargs)
    bk.sqlite3.connect = connect
sys.exit(main(["recovery", *sys.argv[2:]]))
"""


def stall_and_kill(cwd: Path, where: str, *args: object) -> None:
    (cwd / "stalling.py").write_text(STALLING)
    proc = subprocess.Popen([sys.executable, "stalling.py", where, *map(str, args)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line == "STALLED\n", f"never reached {where}: {line}{proc.stderr.read()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (cwd / "stalling.py").unlink()


def two_steps_store(cwd: Path, parts: int) -> None:
    (cwd / "flow.py").write_text(SUMS_FLOW)
    ok("init-recovery", "db", parts, cwd=cwd)
    run_sums(cwd, "db", " ".join(str(i) for i in range(30)))


@pytest.mark.parametrize("where, count_after", [
    ("building", 2), ("before swap", 2), ("after swap", 3),
])
def test_sigkill_during_repartition_leaves_the_old_or_the_new_store(
    tmp_path: Path, where: str, count_after: int
) -> None:
    two_steps_store(tmp_path, 2)
    export = sorted(ok("recovery", "export", "db", cwd=tmp_path).splitlines())
    stall_and_kill(tmp_path, where, "repartition", "db", "3")
    with RecoveryStore.inspect(tmp_path / "db") as store:
        assert store.part_count == count_after
    assert sorted(ok("recovery", "export", "db", cwd=tmp_path).splitlines()) == export
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".db.repartition-")]
    assert len(leftovers) == 1
    # The next repartition removes what the killed one left; runs go on as before.
    ok("recovery", "repartition", "db", "2", cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "flow.py"]
    assert run_sums(tmp_path, "db", "30 31 32") == "('k0', 165)\n('k1', 176)\n('k2', 187)\n"


def test_sigkill_at_random_moments_of_a_repartition(tmp_path: Path) -> None:
    """Killed anywhere, the directory holds a complete store: the old or the new one."""
    (tmp_path / "flow.py").write_text(SUMS_FLOW)
    write_states(tmp_path / "db", {f"key{i}": {"n": i} for i in range(60_000)}, parts=2)
    expected = stored_state(tmp_path / "db", KEEP)
    started = time.monotonic()
    ok("recovery", "repartition", "db", "3", cwd=tmp_path)
    took = time.monotonic() - started
    rng = random.Random(13)
    counts = set()
    for attempt in range(6):
        proc = subprocess.Popen([FASTFLOW, "recovery", "repartition", "db", str(2 + attempt % 2)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, took))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with RecoveryStore.inspect(tmp_path / "db") as store:
            counts.add(store.part_count)
            assert store.plan().problem is None
        assert stored_state(tmp_path / "db", KEEP) == expected
    assert counts <= {2, 3}


# Import crash.


@pytest.mark.parametrize("where", ["import started", "import commit"])
def test_sigkill_between_two_partitions_transactions_of_an_import_keeps_the_old_state(
    tmp_path: Path, where: str
) -> None:
    two_steps_store(tmp_path, 2)
    before = ok("recovery", "export", "db", cwd=tmp_path)
    edit = "".join(
        f'{{"step": "{SUM}", "key": "k{i}", "state": {1000 * i}}}\n' for i in range(3))
    (tmp_path / "edit.jsonl").write_text(edit)
    stall_and_kill(tmp_path, where, "import", "db", "edit.jsonl")
    assert ok("recovery", "export", "db", cwd=tmp_path) == before
    # The next import (or run) starts from the old state: nothing of the killed one is left.
    ok("recovery", "import", "db", "edit.jsonl", cwd=tmp_path)
    assert stored_state(tmp_path / "db", SUM) == {"k0": 0, "k1": 1000, "k2": 2000}
    assert run_sums(tmp_path, "db", "30 31 32") == "('k0', 30)\n('k1', 1031)\n('k2', 2032)\n"


# Backup.


def test_backup_of_a_stopped_store_resumes(tmp_path: Path) -> None:
    two_steps_store(tmp_path, 3)
    assert ok("recovery", "backup", "db", "copies/bk", cwd=tmp_path) == (
        "backed up 3 partition(s) of db to copies/bk; a run on it resumes at epoch 2\n")
    assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == ["bk"]
    assert sorted(p.name for p in (tmp_path / "copies" / "bk").iterdir()) == [
        "part-0.sqlite3", "part-1.sqlite3", "part-2.sqlite3"]
    assert ok("recovery", "export", "copies/bk", cwd=tmp_path) == ok(
        "recovery", "export", "db", cwd=tmp_path)
    assert run_sums(tmp_path, "copies/bk", "30") == run_sums(tmp_path, "db", "30")
    (tmp_path / "empty").mkdir()
    ok("recovery", "backup", "db", "empty", cwd=tmp_path)
    assert len(list((tmp_path / "empty").iterdir())) == 3


def test_backup_refuses_a_destination_that_is_not_new_or_empty(tmp_path: Path) -> None:
    two_steps_store(tmp_path, 1)
    assert refused("recovery", "backup", "db", "db", cwd=tmp_path) == (
        "fastflow recovery backup: error: db already holds recovery partitions "
        "(part-0.sqlite3); a backup never overwrites a store: pick a new or empty directory. "
        "Nothing was written\n"
    )
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert refused("recovery", "backup", "db", "full", cwd=tmp_path) == (
        "fastflow recovery backup: error: cannot back up into full: it is not empty (x); pick "
        "a new or empty directory. Nothing was written\n"
    )
    assert refused("recovery", "backup", "db", "flow.py", cwd=tmp_path) == (
        "fastflow recovery backup: error: cannot back up into flow.py: it is a file; nothing "
        "was written\n"
    )
    assert "does not exist" in refused("recovery", "backup", "nowhere", "bk", cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "flow.py", "full"]


def test_sigkill_during_a_backup_leaves_no_store_at_the_destination(tmp_path: Path) -> None:
    two_steps_store(tmp_path, 2)
    stall_and_kill(tmp_path, "backup copy", "backup", "db", "bk")
    assert not (tmp_path / "bk").exists()
    assert [p.name.startswith(".bk.backup-") for p in tmp_path.iterdir()].count(True) == 1
    ok("recovery", "backup", "db", "bk", cwd=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bk", "db", "flow.py"]
    assert stored_state(tmp_path / "bk", SUM) == stored_state(tmp_path / "db", SUM)


SLOW_FLOW = """
import time
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

def slow(batch):
    time.sleep(0.002)
    return batch

flow = Dataflow("slow")
nums = op.flat_map_batch("slow", op.input("inp", flow, TestingSource(range(4000), batch_size=5)),
                         slow)
sums = op.stateful_map("sum", op.key_on("k", nums, lambda i: f"k{i % 500}"),
                       lambda acc, i: ((acc or 0) + i, None))
op.output("out", sums, StdOutSink())
"""


def test_backups_taken_while_a_flow_runs_resume_to_the_same_state(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SLOW_FLOW)
    ok("init-recovery", "db", "3", cwd=tmp_path)
    run = ["run", "flow.py", "-s", "0.01", "-b", "0"]  # no backup window: the hardest case
    proc = subprocess.Popen([FASTFLOW, *run, "-r", "db"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    taken = []
    try:
        while proc.poll() is None and len(taken) < 4:
            time.sleep(0.3)
            out = fastflow("recovery", "backup", "db", f"bk{len(taken)}", cwd=tmp_path)
            assert (out.returncode, out.stderr) == (0, ""), out.stderr
            taken.append(int(out.stdout.rsplit(" ", 1)[1]))
    finally:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    assert len(taken) >= 2, "the flow ended before two backups were taken"
    assert len(set(taken)) == len(taken), f"backups not from different epochs: {taken}"
    expected = {f"k{k}": sum(range(k, 4000, 500)) for k in range(500)}
    assert stored_state(tmp_path / "db", "slow.sum.stateful_batch") == expected
    for index in range(len(taken)):
        copy = f"bk{index}"
        with RecoveryStore.inspect(tmp_path / copy) as store:
            assert store.plan().epoch == taken[index]
        resumed = subprocess.run([FASTFLOW, *run, "-r", copy], cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
        assert (resumed.returncode, resumed.stderr) == (0, "")
        assert stored_state(tmp_path / copy, "slow.sum.stateful_batch") == expected


def test_offline_commands_refuse_a_store_a_running_flow_holds(tmp_path: Path) -> None:
    """The lock of a real run in another process (flock), not only this process's registry."""
    (tmp_path / "flow.py").write_text(SLOW_FLOW)
    ok("init-recovery", "db", "2", cwd=tmp_path)
    proc = subprocess.Popen([FASTFLOW, "run", "flow.py", "-r", "db", "-s", "0.01"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not fastflow("recovery", "get", "db", "slow.sum.stateful_batch", "k1",
                           cwd=tmp_path).stdout:
            assert time.monotonic() < deadline, "the flow never committed"
            time.sleep(0.05)
        (tmp_path / "edit.jsonl").write_text(
            '{"step": "slow.sum.stateful_batch", "key": "k1", "state": 5}\n')
        in_use = ("is in use by another running execution (it holds the lock on "
                  "part-0.sqlite3); stop that execution first, or use another directory\n")
        for command in (("import", "db", "edit.jsonl"), ("repartition", "db", "3")):
            assert proc.poll() is None, "the flow ended too soon"
            assert refused("recovery", *command, cwd=tmp_path) == (
                f"fastflow recovery {command[0]}: error: recovery directory "
                f"{tmp_path / 'db' if command[0] == 'repartition' else 'db'} {in_use}")
    finally:
        assert proc.wait(timeout=120) == 0
    with RecoveryStore.inspect(tmp_path / "db") as store:
        assert store.part_count == 2
        assert [e.worker_count for e in store.executions()] == [1]

"""What a store may make fastflow do: no code from pickles, private files, no symlinks.

Every refusal is checked end to end (the real `fastflow` command on real SQLite files): exit
code 2, one exact line on stderr, and every byte of the store unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import pickle
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastflow._store import partitions as pt
from fastflow._store.changesets import ChangeSet
from fastflow._store.pickles import RefusedClassError, safe_loads
from fastflow._store.store import RecoveryStore

STEP = "trust.tally.stateful_batch"

FLOW = '''
import os

import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource


def double(x):
    return 2 * x


class Tally:
    """A plain class: its instances are stored as pickles."""

    def __init__(self):
        self.n = 0
        if os.environ.get("WITH_FN"):
            self.fn = double  # a function: rebuilt only from a trusted store


def add(tally, x):
    tally = tally or Tally()
    tally.n += x
    return tally, tally.n


inp = [int(x) for x in os.environ["INPUT"].split()]
flow = Dataflow("trust")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(inp)), lambda x: "a")
op.output("out", op.stateful_map("tally", keyed, add), StdOutSink())
'''


def digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``: equal before and after = not a byte changed."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*")) if path.is_file() and not path.is_symlink()
    }


@pytest.fixture
def cli(fastflow_command: list[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: object, cwd: Path, env: dict[str, str] | None = None,
            umask: int | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*fastflow_command, *map(str, args)], cwd=cwd, capture_output=True, text=True,
            timeout=300, env={**os.environ, "INPUT": "1 2", **(env or {})},
            preexec_fn=None if umask is None else (lambda: os.umask(umask)),
        )
    return run


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line of a run refused with exit code 2."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr.rstrip("\n")


def flow_store(tmp_path: Path, cli: Callable[..., Any], parts: int = 2) -> Path:
    """``flow.py`` in ``tmp_path`` and a store ``db`` it has run on once."""
    (tmp_path / "flow.py").write_text(FLOW)
    assert cli("init-recovery", "db", parts, cwd=tmp_path).returncode == 0
    done = cli("run", "flow.py", "-r", "db", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "('a', 1)\n('a', 3)\n"), done.stderr
    return tmp_path / "db"


def plant(db_dir: Path, step_id: str, key: str, payload: bytes) -> None:
    """Commit ``{"$pickle": payload}`` as the state of ``key``, as an attacker could."""
    state = base64.b64encode(payload).decode()
    blob = b'{"set":{"%s":{"$pickle":"%s"}},"del":[]}' % (key.encode(), state.encode())
    with RecoveryStore.open(db_dir) as store:
        start = store.start_execution(1)
        changes: list[list[ChangeSet]] = [[] for _ in range(store.part_count)]
        changes[0].append(ChangeSet(step_id, 0, 0, 1, blob))
        store.commit(start.epoch, [0], changes, gc_before=None)


class _Reduce:
    def __init__(self, call: Any, *args: Any) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.call, self.args


def payloads(marker: Path) -> dict[str, bytes]:
    """Pickles that would create ``marker`` when loaded, by the name they make pickle look up."""
    import subprocess as sp

    return {
        "posix.system": pickle.dumps(_Reduce(os.system, f"touch {marker}")),
        "builtins.eval": pickle.dumps(
            _Reduce(eval, f"__import__('os').system('touch {marker}')")),
        "subprocess.Popen": pickle.dumps(_Reduce(sp.Popen, ["touch", str(marker)])),
        "builtins.exec": pickle.dumps(_Reduce(exec, f"open({str(marker)!r}, 'w')")),
    }


# Pickles on resume.


@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "subprocess.Popen",
                                  "builtins.exec"])
def test_a_planted_pickle_is_refused_on_resume(
    tmp_path: Path, cli: Callable[..., Any], name: str
) -> None:
    db_dir, marker = flow_store(tmp_path, cli), tmp_path / "pwned"
    plant(db_dir, STEP, "evil", payloads(marker)[name])
    before = digest(db_dir)
    line = refusal(cli("run", "flow.py", "-r", "db", cwd=tmp_path))
    assert line == (
        f"fastflow run: error: cannot resume from db: the state of step {STEP!r} for key "
        f"'evil' is a pickle naming {name!r}, which is neither a class of the flow's own "
        "modules nor a standard value type; nothing was changed (if you trust this store, run "
        "with --trust-store-pickles: docs/recovery.md, Trust model)"
    )
    assert not marker.exists()
    assert digest(db_dir) == before


def test_a_pickle_of_a_step_the_flow_lacks_is_never_decoded(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    db_dir, marker = flow_store(tmp_path, cli), tmp_path / "pwned"
    plant(db_dir, "trust.gone.stateful_batch", "evil", payloads(marker)["posix.system"])
    # The source resumes after the items it consumed: each run adds one item of 5.
    for env, total in (({}, 8), ({"FASTFLOW_TRUST_STORE_PICKLES": "1"}, 13)):
        items = "1 2 5" if total == 8 else "1 2 5 5"
        done = cli("run", "flow.py", "-r", "db", cwd=tmp_path, env={**env, "INPUT": items})
        assert (done.returncode, done.stdout, done.stderr) == (0, f"('a', {total})\n", "")
    assert not marker.exists()


def test_the_flows_own_classes_resume_and_functions_need_the_opt_in(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    with_fn = {"WITH_FN": "1"}
    (tmp_path / "flow.py").write_text(FLOW)
    cli("init-recovery", "db", 1, cwd=tmp_path)
    assert cli("run", "flow.py", "-r", "db", cwd=tmp_path, env=with_fn).returncode == 0
    before = digest(tmp_path / "db")
    line = refusal(cli("run", "flow.py", "-r", "db", cwd=tmp_path, env=with_fn))
    assert f"the state of step {STEP!r} for key 'a' is a pickle naming 'flow.double'" in line
    assert digest(tmp_path / "db") == before
    # Each run adds one item to the source (it resumes after those it consumed).
    for trust, more, items in (({"FASTFLOW_TRUST_STORE_PICKLES": "1"}, (), "1 2 4"),
                               ({}, ("--trust-store-pickles",), "1 2 4 0")):
        done = cli("run", "flow.py", "-r", "db", *more, cwd=tmp_path,
                   env={**with_fn, **trust, "INPUT": items})
        assert (done.returncode, done.stdout, done.stderr) == (0, "('a', 7)\n", "")
    # A plain instance of the flow file's class needs no opt-in.
    (tmp_path / "plain").mkdir()
    flow_store(tmp_path / "plain", cli)
    done = cli("run", "flow.py", "-r", "db", cwd=tmp_path / "plain", env={"INPUT": "1 2 10"})
    assert (done.returncode, done.stdout, done.stderr) == (0, "('a', 13)\n", "")


def test_trust_store_pickles_needs_a_store(tmp_path: Path, cli: Callable[..., Any]) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    assert refusal(cli("run", "flow.py", "--trust-store-pickles", cwd=tmp_path)) == (
        "fastflow run: error: --trust-store-pickles only applies with -r")


def global_lookup(module: str, name: str) -> bytes:
    """A pickle that only looks up ``module.name`` (protocol 4 ``STACK_GLOBAL``)."""
    def text(value: str) -> bytes:
        return b"\x8c" + bytes([len(value)]) + value.encode()

    return b"\x80\x04" + text(module) + text(name) + b"\x93."


def test_the_unpickler_allows_value_types_and_the_modules_own_classes_only() -> None:
    import datetime
    from collections import Counter, OrderedDict, defaultdict, deque
    from decimal import Decimal
    from fractions import Fraction
    from uuid import UUID
    from zoneinfo import ZoneInfo

    values = [
        Counter("abca"), OrderedDict(a=1), defaultdict(list, a=[1]), deque([1, 2]),
        Decimal("1.5"), Fraction(1, 3), UUID(int=7), complex(1, 2), bytearray(b"x"),
        range(3), datetime.datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Paris")),
        datetime.timezone(datetime.timedelta(hours=1), "X"),
    ]
    for value in values:
        assert safe_loads(pickle.dumps(value, 5)) == value
    assert safe_loads(global_lookup(__name__, "_Reduce")) is _Reduce  # this module's class
    refused = [
        (__name__, "os.system"),  # a global reached through a module of the tests
        (__name__, "payloads"),  # a function of that module
        (__name__, "pickle"),  # a module it imported
        ("os", "system"), ("posix", "system"), ("builtins", "eval"),
        ("builtins", "__import__"), ("importlib", "import_module"), ("sys", "modules"),
        ("fastflow.__main__", "main"),  # not imported: never imported because of a store
    ]
    for module, name in refused:
        with pytest.raises(RefusedClassError, match=f"'{module}.{name}'"):
            safe_loads(global_lookup(module, name))
    assert "fastflow.__main__" not in sys.modules
    # getattr only reaches the class methods pickle needs (ZoneInfo's), nothing else.
    through_getattr = pickle.dumps(_Reduce(getattr, Decimal, "__subclasses__"), 5)
    with pytest.raises(RefusedClassError, match="getattr.decimal.Decimal, '__subclasses__'"):
        safe_loads(through_getattr)


# `recovery import`.


def import_case(tmp_path: Path, cli: Callable[..., Any], text: bytes,
                *more: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "edit.jsonl").write_bytes(text)
    return cli("recovery", "import", "db", "edit.jsonl", *more, cwd=tmp_path)


GOOD = b'{"step": "%s", "key": "z", "state": 5}\n' % STEP.encode()


@pytest.mark.parametrize(("text", "message"), [
    (GOOD + b"{nope\n", "line 2: not valid JSON"),
    (GOOD + b"[1]\n", "line 2: expected an object with exactly the members step, key and state"),
    (GOOD + b'{"step": "x", "key": "a", "state": 1}\n', "line 2: unknown step 'x'"),
    (GOOD + GOOD, f"line 2: key 'z' of step {STEP!r} is already on line 1"),
    (GOOD + b'{"step": "%s", "key": "p", "state": {"$pickle": "gAVLAS4="}}\n' % STEP.encode(),
     "line 2: the state holds a pickled object"),
    (GOOD + b'{"step": ' + b"x" * 50_000_000 + b"\n", "line 2: not valid JSON"),
    (GOOD + b'{"step": "' + b"x" * 50_000_000 + b'", "key": "a", "state": 1}\n',
     f"line 2: unknown step {'x' * 100!r}... (50000000 characters); the store holds state of"),
])
def test_a_refused_import_leaves_every_byte_of_the_store(
    tmp_path: Path, cli: Callable[..., Any], text: bytes, message: str
) -> None:
    db_dir = flow_store(tmp_path, cli)
    before = digest(db_dir)
    line = refusal(import_case(tmp_path, cli, text))
    assert line.startswith(f"fastflow recovery import: error: {message}"), line
    assert digest(db_dir) == before


def test_an_import_of_blank_lines_leaves_every_byte_of_the_store(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    db_dir = flow_store(tmp_path, cli)
    before = digest(db_dir)
    done = import_case(tmp_path, cli, b"\n  \n\n")
    assert (done.returncode, done.stdout) == (0, "edit.jsonl holds no state lines; nothing was "
                                                 "changed\n")
    assert digest(db_dir) == before


def test_an_overlong_import_line_is_refused(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastflow._store_tools import importer as state_edit

    db_dir = flow_store(tmp_path, cli)
    before = digest(db_dir)
    monkeypatch.setattr(state_edit, "MAX_LINE_BYTES", 1000)
    line = b'{"step": "%s", "key": "a", "state": "%s"}\n' % (STEP.encode(), b"y" * 2000)
    with pytest.raises(state_edit.BadImportError, match="line 2: longer than 0 MiB"):
        state_edit.import_state(db_dir, io.BytesIO(GOOD + line))
    assert digest(db_dir) == before


def test_import_never_imports_a_module_a_dataclass_names_unless_allowed(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    flow_store(tmp_path, cli)
    (tmp_path / "sidefx.py").write_text(
        "import dataclasses, pathlib\n"
        "pathlib.Path('imported').touch()\n"
        "@dataclasses.dataclass\nclass P:\n    x: int\n"
    )
    text = b'{"step": "%s", "key": "d", "state": {"$dataclass": ["sidefx:P", {"x": 1}]}}\n' % (
        STEP.encode())
    env = {"PYTHONPATH": str(tmp_path)}
    (tmp_path / "edit.jsonl").write_bytes(text)
    before = digest(tmp_path / "db")
    line = refusal(cli("recovery", "import", "db", "edit.jsonl", cwd=tmp_path, env=env))
    assert line == (
        "fastflow recovery import: error: line 1: the state names class 'sidefx:P'; checking "
        "it would import module 'sidefx', which runs its code: pass --allow-import if you "
        "trust this file"
    )
    assert not (tmp_path / "imported").exists()
    assert digest(tmp_path / "db") == before
    done = cli("recovery", "import", "db", "edit.jsonl", "--allow-import", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "imported").exists()


# File modes.


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_stores_and_backups_are_private_whatever_the_umask(
    tmp_path: Path, cli: Callable[..., Any], umask: int
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    assert cli("init-recovery", "db", 2, cwd=tmp_path, umask=umask).returncode == 0
    assert cli("run", "flow.py", "-r", "db", cwd=tmp_path, umask=umask).returncode == 0
    assert cli("recovery", "backup", "db", "bak", cwd=tmp_path, umask=umask).returncode == 0
    assert cli("recovery", "repartition", "bak", 3, cwd=tmp_path, umask=umask).returncode == 0
    for store in ("db", "bak"):
        assert stat.S_IMODE((tmp_path / store).stat().st_mode) == 0o700, store
        files = sorted((tmp_path / store).iterdir())
        assert files and {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}, files
    old = os.umask(umask)
    try:  # a running store's -wal and -shm
        with RecoveryStore.open(tmp_path / "db") as store:
            store.start_execution(1)
            sides = sorted((tmp_path / "db").glob("*-[ws][ah][lm]"))
            assert len(sides) == 4, sides
            assert {stat.S_IMODE(f.stat().st_mode) for f in sides} == {0o600}
    finally:
        os.umask(old)


@pytest.mark.parametrize(("target", "mode", "what"), [
    ("db/part-1.sqlite3", 0o620, "partition"),
    ("db/part-0.sqlite3", 0o602, "partition"),
    ("db", 0o770, "recovery directory"),
])
def test_a_store_writable_by_others_is_refused(
    tmp_path: Path, cli: Callable[..., Any], target: str, mode: int, what: str
) -> None:
    db_dir = flow_store(tmp_path, cli)
    (tmp_path / target).chmod(mode)
    before = digest(db_dir)
    shown = stat.filemode(os.stat(tmp_path / target).st_mode)
    expected = (
        f"{what} {target} is writable by other users (mode {shown}), who could swap or edit "
        "its state: make it private (`chmod go-w`) first. Nothing was changed"
    )
    assert refusal(cli("run", "flow.py", "-r", "db", cwd=tmp_path)) == (
        f"fastflow run: error: {expected}")
    for verb in ("status", "export", "upgrade"):
        assert refusal(cli("recovery", verb, "db", cwd=tmp_path)) == (
            f"fastflow recovery {verb}: error: {expected}")
    assert digest(db_dir) == before


# Symlinks and unreadable partitions.


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_partition_is_refused_by_every_command(
    tmp_path: Path, cli: Callable[..., Any], dangling: bool
) -> None:
    db_dir = flow_store(tmp_path, cli)
    other = tmp_path / "other"
    assert cli("init-recovery", "other", 2, cwd=tmp_path).returncode == 0
    (db_dir / "part-1.sqlite3").unlink()
    target = "../other/part-1.sqlite3" if not dangling else "../nowhere.sqlite3"
    (db_dir / "part-1.sqlite3").symlink_to(target)
    before, other_before = digest(db_dir), digest(other)
    suffix = ", which does not exist" if dangling else ""
    expected = (
        f"db/part-1.sqlite3 is a symbolic link (to {target}{suffix}); fastflow never opens a "
        "partition through a link, which could write to another store: put the file itself "
        "there. Nothing was changed"
    )
    commands = [("run", "flow.py", "-r", "db"), ("recovery", "status", "db"),
                ("recovery", "upgrade", "db"), ("recovery", "export", "db"),
                ("recovery", "get", "db", STEP, "a"), ("recovery", "repartition", "db", "3"),
                ("recovery", "backup", "db", "bak"), ("recovery", "import", "db", "edit.jsonl")]
    (tmp_path / "edit.jsonl").write_bytes(GOOD)
    for command in commands:
        line = refusal(cli(*command, cwd=tmp_path))
        name = " ".join(command[:2]) if command[0] == "recovery" else "run"
        # repartition names the store by its real path (it swaps the directory itself).
        shown = f"{db_dir.resolve()}/" if command[1] == "repartition" else "db/"
        assert line == f"fastflow {name}: error: {expected.replace('db/', shown, 1)}"
    assert digest(db_dir) == before and digest(other) == other_before
    assert not (tmp_path / "bak").exists()


def test_an_unreadable_partition_is_named(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_dir = flow_store(tmp_path, cli)
    real_access = os.access
    monkeypatch.setattr(pt.os, "access", lambda path, mode: not (
        Path(path).name == "part-1.sqlite3" and mode & os.R_OK) and real_access(path, mode))
    from fastflow._store_tools.backup import backup_store
    from fastflow._store_tools.export import export_state
    from fastflow._store_tools.repartition import repartition_store
    from fastflow._store_tools.status import read_status
    from fastflow._store_tools.upgrade import upgrade_store

    before = digest(db_dir)
    attempts: list[Callable[[Path], object]] = [
        RecoveryStore.open, RecoveryStore.inspect, read_status, upgrade_store,
        lambda db: export_state(db, io.BytesIO()), lambda db: repartition_store(db, 3),
        lambda db: backup_store(db, tmp_path / "bak"),
    ]
    for attempt in attempts:  # never "not writable": the file cannot be read
        with pytest.raises(pt.StoreAccessError) as info:
            attempt(db_dir)
        assert str(info.value) == (
            f"cannot read {db_dir}/part-1.sqlite3: Permission denied; fix its permissions or "
            "run as the store's owner. Nothing was changed")
    assert digest(db_dir) == before and not (tmp_path / "bak").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anyway")
def test_an_unreadable_partition_is_refused_by_the_commands(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    db_dir = flow_store(tmp_path, cli)
    (db_dir / "part-1.sqlite3").chmod(0)
    for command in [("run", "flow.py", "-r", "db"), ("recovery", "status", "db"),
                    ("recovery", "repartition", "db", "3")]:
        line = refusal(cli(*command, cwd=tmp_path))
        assert "part-1.sqlite3: Permission denied; fix its permissions" in line, line


def test_a_backup_inside_the_store_is_refused(tmp_path: Path, cli: Callable[..., Any]) -> None:
    db_dir = flow_store(tmp_path, cli)
    before = digest(db_dir)
    assert refusal(cli("recovery", "backup", "db", "db/inside", cwd=tmp_path)) == (
        "fastflow recovery backup: error: cannot back up db into db/inside: it is inside the "
        "store, which must hold nothing but its partitions; pick a directory outside it. "
        "Nothing was written")
    assert sorted(p.name for p in db_dir.iterdir()) == ["part-0.sqlite3", "part-1.sqlite3"]
    assert digest(db_dir) == before


def test_init_into_a_directory_others_can_write_is_refused(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o777)
    assert refusal(cli("init-recovery", "shared", 1, cwd=tmp_path)) == (
        "fastflow init-recovery: error: recovery directory shared is writable by other users "
        "(mode drwxrwxrwx), who could swap or edit its state: make it private (`chmod go-w`) "
        "first. Nothing was changed")
    assert list((tmp_path / "shared").iterdir()) == []

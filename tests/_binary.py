"""The standalone executable and a clean place to run it, shared by the binary tests.

Import ``binary``, ``sandbox`` and ``pytestmark`` into a test module to use them (the marks
skip the module with FASTFLOW_SKIP_BINARY=1).
"""

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List

import pytest
from _paths import ROOT

BINARY = ROOT / "dist" / "fastflow"

pytestmark = [
    pytest.mark.binary,
    pytest.mark.skipif(
        os.environ.get("FASTFLOW_SKIP_BINARY") == "1", reason="FASTFLOW_SKIP_BINARY=1"
    ),
]


def _sources() -> Iterator[Path]:
    yield from (ROOT / "fastflow").rglob("*.py")
    yield from (ROOT / "cext").glob("*.pyx")
    yield from (ROOT / "cext").glob("*.pxi")
    yield from (ROOT / "packaging").iterdir()
    yield from (ROOT / "setup.py", ROOT / "pyproject.toml", ROOT / "scripts" / "build-binary")


@pytest.fixture(scope="session")
def binary() -> Path:
    """dist/fastflow, built first unless it is newer than every source."""
    newest = max(path.stat().st_mtime for path in _sources())
    if not BINARY.exists() or BINARY.stat().st_mtime < newest:
        build = subprocess.run(
            [str(ROOT / "scripts" / "build-binary")], capture_output=True, text=True, timeout=1800
        )
        if build.returncode != 0:
            pytest.fail(f"scripts/build-binary failed:\n{build.stdout}\n{build.stderr[-5000:]}")
    return BINARY


@dataclass
class Sandbox:
    """An empty work directory, HOME and TMPDIR for running commands under `env -i`;
    ``exe`` is the binary."""

    root: Path
    binary: Path

    def __post_init__(self) -> None:
        for name in ("work", "home", "tmp"):
            (self.root / name).mkdir()
        self.work, self.home, self.tmpdir = (self.root / n for n in ("work", "home", "tmp"))
        self.exe = [str(self.binary)]

    def command(self, exe: List[str], *args: object, **env: str) -> List[str]:
        """``exe args`` under ``env -i HOME=... TMPDIR=... COLUMNS=100 **env``."""
        settings = {"HOME": self.home, "TMPDIR": self.tmpdir, "COLUMNS": "100", **env}
        return ["env", "-i", *(f"{k}={v}" for k, v in settings.items()), *exe, *map(str, args)]

    def run(self, exe: List[str], *args: object, **env: str) -> subprocess.CompletedProcess:
        """Run to the end and check that TMPDIR holds nothing new afterwards."""
        before = sorted(self.tmpdir.iterdir())
        proc = subprocess.run(
            self.command(exe, *args, **env), cwd=self.work, capture_output=True, text=True,
            timeout=300,
        )
        assert sorted(self.tmpdir.iterdir()) == before, f"{args} left temporary files behind"
        return proc

    def start(self, exe: List[str], *args: object) -> subprocess.Popen:
        """Start in a new session (its own process group), SIGINT not ignored, stdout piped."""
        return subprocess.Popen(
            self.command(exe, *args), cwd=self.work, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def write(self, name: str, text: str) -> Path:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@pytest.fixture
def sandbox(tmp_path: Path, binary: Path) -> Sandbox:
    return Sandbox(tmp_path, binary)


@pytest.fixture
def ff(sandbox: Sandbox):
    """Run the binary in the sandbox; fail unless it exits 0; return its stdout."""

    def run(*args: object, **env: str) -> str:
        proc = sandbox.run(sandbox.exe, *args, **env)
        assert proc.returncode == 0, f"fastflow {args} exited {proc.returncode}:\n{proc.stderr}"
        return proc.stdout

    return run


HEADER = """\
import fastflow.operators as op
from fastflow.connectors.stdio import StdOutSink
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource
"""

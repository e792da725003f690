"""Bytewax 0.21.1's recorded output, and how to get it live, for the parity tests.

``tests/parity/flows/<flow>.stdout`` and ``<flow>.exit`` hold what
``python -m bytewax.run <flow>.py`` printed and returned for each
``tests/flows/<flow>.py``; ``tests/parity/windowing/<scenario>.txt`` holds
the ``repr`` of each windowing scenario's result under Bytewax. The suite
compares fastflow with these files everywhere, and, when a Bytewax
interpreter is at hand, Bytewax itself too.

The Bytewax interpreter is ``FASTFLOW_BYTEWAX_PYTHON`` or the repository's
``.bytewax-venv`` (``scripts/test`` builds it). Regenerate the files with
``scripts/parity-update`` (it runs ``python tests/_parity.py update``).
"""

from __future__ import annotations

import ast
import os
import pprint
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FLOWS_DIR = TESTS / "flows"
EXPECTED_FLOWS = TESTS / "parity" / "flows"
EXPECTED_WINDOWING = TESTS / "parity" / "windowing"
SCENARIOS_SCRIPT = TESTS / "operators" / "windowing_scenarios.py"
BYTEWAX_VERSION = "0.21.1"
TIMEOUT = 300  # seconds; only guards against a hung run


def flow_files() -> List[Path]:
    """The Bytewax flow files compared."""
    return sorted(FLOWS_DIR.glob("*.py"))


@dataclass(frozen=True)
class Outcome:
    """What a run of a flow file printed on stdout and returned (``stderr`` is not compared)."""

    stdout: str
    exit_code: int
    stderr: str = field(default="", compare=False, repr=False)


def expected_flow(name: str) -> Outcome:
    """Bytewax's recorded outcome of ``tests/flows/<name>.py``."""
    stdout = (EXPECTED_FLOWS / f"{name}.stdout").read_text()
    exit_code = int((EXPECTED_FLOWS / f"{name}.exit").read_text())
    return Outcome(stdout, exit_code)


def expected_scenario(name: str) -> Any:
    """Bytewax's recorded result of windowing scenario ``name``."""
    return ast.literal_eval((EXPECTED_WINDOWING / f"{name}.txt").read_text())


def bytewax_python() -> Optional[str]:
    """The Bytewax interpreter to compare with live, or ``None`` if there is none.

    An interpreter named by ``FASTFLOW_BYTEWAX_PYTHON`` must work (``scripts/test`` names
    the one it built): a broken one raises instead of quietly skipping the live checks.
    """
    explicit = os.environ.get("FASTFLOW_BYTEWAX_PYTHON")
    python = explicit or str(REPO / ".bytewax-venv" / "bin" / "python")
    if not Path(python).is_file():
        if explicit:
            raise RuntimeError(f"FASTFLOW_BYTEWAX_PYTHON names {python}, which does not exist")
        return None
    probe = subprocess.run(
        [python, "-c", "import bytewax.run, importlib.metadata as m; "
                       "print(m.version('bytewax'))"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != BYTEWAX_VERSION:
        raise RuntimeError(
            f"{python} has no Bytewax {BYTEWAX_VERSION}: "
            f"{(probe.stdout + probe.stderr).strip()[-300:]}"
        )
    return python


def run_flow(cmd: List[str], flow_file: Path, text: str, workdir: Path) -> Outcome:
    """Run ``cmd <file name>`` in ``workdir`` on a copy of ``flow_file`` holding ``text``."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / flow_file.name).write_text(text)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([*cmd, flow_file.name], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    return Outcome(done.stdout, done.returncode, done.stderr)


def run_bytewax_flow(python: str, flow_file: Path, workdir: Path) -> Outcome:
    """Run ``flow_file`` with Bytewax's ``python -m bytewax.run``; it must print something."""
    outcome = run_flow([python, "-m", "bytewax.run"], flow_file, flow_file.read_text(), workdir)
    if not outcome.stdout:
        raise AssertionError(f"Bytewax printed nothing for {flow_file.name}; "
                             f"stderr:\n{outcome.stderr}")
    return outcome


def run_bytewax_scenarios(python: str) -> Dict[str, Any]:
    """Every windowing scenario's result under Bytewax."""
    done = subprocess.run([python, str(SCENARIOS_SCRIPT), "bytewax"], capture_output=True,
                          text=True, cwd=tempfile.gettempdir(), timeout=TIMEOUT, check=False)
    if done.returncode != 0:
        raise AssertionError(f"Bytewax scenarios failed:\n{done.stderr}")
    results: Dict[str, Any] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return results


def update(python: str) -> None:
    """Record Bytewax's output of every flow and scenario, replacing the old recordings."""
    for directory, suffixes in ((EXPECTED_FLOWS, ("*.stdout", "*.exit")),
                                (EXPECTED_WINDOWING, ("*.txt",))):
        directory.mkdir(parents=True, exist_ok=True)
        for suffix in suffixes:
            for stale in directory.glob(suffix):
                stale.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        for flow_file in flow_files():
            outcome = run_bytewax_flow(python, flow_file, Path(tmp) / flow_file.stem)
            (EXPECTED_FLOWS / f"{flow_file.stem}.stdout").write_text(outcome.stdout)
            (EXPECTED_FLOWS / f"{flow_file.stem}.exit").write_text(f"{outcome.exit_code}\n")
    for name, result in run_bytewax_scenarios(python).items():
        (EXPECTED_WINDOWING / f"{name}.txt").write_text(pprint.pformat(result) + "\n")


def main(argv: List[str]) -> int:
    """``python tests/_parity.py update``: record Bytewax's output anew."""
    if argv != ["update"]:
        print("usage: python tests/_parity.py update", file=sys.stderr)
        return 2
    python = bytewax_python()
    if python is None:
        print("no Bytewax interpreter: set FASTFLOW_BYTEWAX_PYTHON or run scripts/parity-update",
              file=sys.stderr)
        return 2
    update(python)
    print(f"recorded Bytewax {BYTEWAX_VERSION}'s output in {EXPECTED_FLOWS.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`scripts/quickstart`, the README's first command: the tutorial, then how to go on."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_shows_state_surviving_a_restart_and_how_to_get_the_command() -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "quickstart")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    # The tutorial's three runs: a sum, the sum resumed with new input, nothing new.
    sections = proc.stdout.split("\x1b[1m$ ")[1:]  # each command as quickstart shows it
    runs = [s.split("\n", 1)[1].strip() for s in sections if s.startswith("fastflow run")]
    assert runs == [
        "('ALL', 0)\n('ALL', 1)\n('ALL', 3)",
        "('ALL', 6)\n('ALL', 10)",
        "",
    ]
    # The README's next command is `fastflow run ...`: say how `fastflow` gets on the PATH.
    assert proc.stdout.endswith(
        f"    source {ROOT}/.venv/bin/activate\n"
        f"(or `pip install {ROOT}` into an environment of your own)\n"
    )

"""The engine owns its contracts: importing it must not import the operator layer."""

import subprocess
import sys


def test_engine_does_not_import_operators() -> None:
    code = (
        "import sys, fastflow._engine.worker\n"
        "print(sorted(m for m in sys.modules if m.startswith('fastflow.operators')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

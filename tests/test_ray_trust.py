"""`fastflow run --ray` against strangers, dead addresses and a killed driver (issue 17).

Real local Ray instances started by the real `fastflow` command, as in tests/test_ray.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import ray  # noqa: F401 - the extra must be installed, or these tests fail loudly
from test_ray import SUMS

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent))
STRANGER = Path(__file__).with_name("_stranger.py")


def test_a_stranger_connecting_first_runs_nothing_and_the_run_finishes(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SUMS)
    marker = tmp_path / "pwned"
    local = subprocess.run([FASTFLOW, "run", "flow.py"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=180)
    run = subprocess.Popen([FASTFLOW, "run", "flow.py", "--ray", "-p", "3"], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stranger = subprocess.Popen([sys.executable, str(STRANGER), str(run.pid), str(marker)])
    try:
        out, err = run.communicate(timeout=300)
    finally:
        stranger.kill()
        stranger.wait()
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert sorted(out.splitlines()) == sorted(local.stdout.splitlines())
    assert not marker.exists()
    refused = err.splitlines()
    assert all(line.startswith("fastflow: refused a connection from ") for line in refused), err
    # The stranger got at the driver's listener during its window, with every payload.
    assert sum("to the driver's control listener: it" in line for line in refused) >= 4, err

"""The same flow file gives the same stdout and exit code under Bytewax 0.21.1 and fastflow.

Every ``tests/flows/*.py`` imports ``bytewax``. With ``bytewax`` replaced by
``fastflow`` in its text it is run with the ``fastflow run`` command, and its
stdout and exit code must equal Bytewax's, recorded in ``tests/parity/flows/``
(see ``_parity.py``): this runs everywhere. When a Bytewax interpreter is at
hand (``scripts/test`` builds one), Bytewax's live output must equal the
recording too, so the recording cannot drift from what Bytewax does.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
from _parity import (
    EXPECTED_FLOWS,
    Outcome,
    bytewax_python,
    expected_flow,
    flow_files,
    run_bytewax_flow,
    run_flow,
)

pytestmark = pytest.mark.bytewax

FLOWS = flow_files()

# Flows whose output differs on purpose (see docs/migrating-from-bytewax.md).
KNOWN_DIFFERENCES = {
    "stateful_batch_order": (
        "Bytewax handles a batch key by key in sorted key order; fastflow's stateful steps "
        "keep arrival order (map/flat_map fast paths) or first-seen key order (stateful_batch), "
        "which saves a sort per batch; per-key order and final states are the same"
    ),
}


class KnownDifference(AssertionError):
    """The output differs from Bytewax's only as a known difference says: same lines, reordered."""


@pytest.fixture(scope="session")
def live_bytewax() -> str:
    """The Bytewax 0.21.1 interpreter, or skip (``scripts/test`` always provides one)."""
    python = bytewax_python()
    if python is None:
        pytest.skip("no .bytewax-venv and no FASTFLOW_BYTEWAX_PYTHON (scripts/test builds it)")
    return python


def _flows(known_differences_fail: bool) -> List[object]:
    params: List[object] = []
    for path in FLOWS:
        reason = KNOWN_DIFFERENCES.get(path.stem) if known_differences_fail else None
        # Only the difference described may fail the test: anything else is a real failure.
        xfail = pytest.mark.xfail(strict=True, raises=KnownDifference, reason=reason)
        marks = [xfail] if reason else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def test_there_are_flows_to_compare() -> None:
    assert len(FLOWS) >= 10
    assert set(KNOWN_DIFFERENCES) <= {path.stem for path in FLOWS}


def test_every_flow_has_exactly_one_recording() -> None:
    assert sorted(EXPECTED_FLOWS.iterdir()) == sorted(
        EXPECTED_FLOWS / f"{path.stem}{suffix}" for path in FLOWS for suffix in (".exit", ".stdout")
    ), "a flow without a recording, or a recording without a flow: run scripts/parity-update"


@pytest.mark.parametrize("flow_file", _flows(known_differences_fail=True))
def test_same_output_as_bytewax(
    flow_file: Path, tmp_path: Path, fastflow_command: List[str]
) -> None:
    text = flow_file.read_text()
    assert "import bytewax" in text or "from bytewax" in text
    assert "fastflow" not in text
    expected = expected_flow(flow_file.stem)
    assert expected.stdout, "Bytewax printed something for every flow"

    got = run_flow([*fastflow_command, "run"], flow_file, text.replace("bytewax", "fastflow"),
                   tmp_path)
    if flow_file.stem in KNOWN_DIFFERENCES:
        assert got.exit_code == expected.exit_code, f"fastflow stderr:\n{got.stderr}"
        assert sorted(got.stdout.splitlines()) == sorted(expected.stdout.splitlines())
        if got != expected:
            raise KnownDifference(KNOWN_DIFFERENCES[flow_file.stem])
    assert got == expected, f"fastflow stderr:\n{got.stderr}"


@pytest.mark.parametrize("flow_file", _flows(known_differences_fail=False))
def test_live_bytewax_gives_the_recorded_output(
    flow_file: Path, tmp_path: Path, live_bytewax: str
) -> None:
    got = run_bytewax_flow(live_bytewax, flow_file, tmp_path)
    assert got == expected_flow(flow_file.stem), (
        f"Bytewax's output changed; check it and run scripts/parity-update. "
        f"Bytewax stderr:\n{got.stderr}"
    )


def test_outcomes_compare_stdout_and_exit_code_only() -> None:
    assert Outcome("x\n", 0, "one") == Outcome("x\n", 0, "other")
    assert Outcome("x\n", 0) != Outcome("x\n", 1)
    assert Outcome("x\n", 0) != Outcome("y\n", 0)

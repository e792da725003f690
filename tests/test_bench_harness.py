"""The benchmark harness in bench/ keeps working: flows agree with their plain loops,
measure.py reports what it timed, and compare.py builds its table.

Bytewax is not needed: these run fastflow and the plain loop only, on tiny inputs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _import_bench_modules():
    """Import bench/'s modules without leaving their generic names importable."""
    sys.path.insert(0, str(BENCH))
    try:
        import compare
        import engines
        import flows

        return compare, engines.load, flows.WORKLOADS
    finally:
        sys.path.remove(str(BENCH))
        for name in ("compare", "engines", "flows"):
            sys.modules.pop(name, None)


compare, load, WORKLOADS = _import_bench_modules()


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_flow_output_equals_plain_loop_output(workload):
    spec = WORKLOADS[workload]
    items = spec.items(3000, 40)
    expected, got = [], []
    spec.plain(items, expected)
    api = load("fastflow")
    api.run_main(spec.build(api, items, got, 256))
    assert sorted(got) == sorted(expected)
    assert got


def _measure(*args):
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(
        [sys.executable, str(BENCH / "measure.py"), *args],
        env=env, capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout)


def test_measure_reports_the_same_output_for_engine_and_plain_loop():
    engine = _measure("fastflow", "keyed_sum", "--items", "5000", "--keys", "50")
    plain = _measure("plain", "keyed_sum", "--items", "5000", "--keys", "50")
    assert engine["count"] == plain["count"] == 5000
    assert engine["checksum"] == plain["checksum"]
    assert engine["seconds"] > 0 and engine["cpu_seconds"] > 0


def test_measure_resumes_from_the_store_it_built(tmp_path):
    store = str(tmp_path / "store")
    args = ("fastflow", "keyed_sum", "--items", "300", "--keys", "300", "--recovery-dir", store)
    built = _measure(*args, "--fresh-store")
    resumed = _measure(*args)
    assert built["count"] == 300
    assert resumed["count"] == 0  # the input was all processed: only the state is restored


def test_table_shows_medians_ratios_and_timeouts():
    rows = compare.cases(1000, [10, 100])
    stateless, keyed_off, keyed_on = rows[0], rows[2], rows[3]
    stateless.times = {"plain": [1.0, 2.0, 9.0], "fastflow": [1.5, 2.5, 2.0],
                       "bytewax": [4.0, 5.0, 6.0]}
    keyed_off.times = {"fastflow": [1.0]}
    keyed_on.times = {"fastflow": [3.0], "bytewax": [None]}
    table = compare.table(rows, timeout=60, metric="times")
    assert "| 2.000 | 2.000 | 5.000 | 1.00x | 0.40x |" in table
    assert "| — | 3.000 | > 60 | — | — |" in table
    assert "recovery on / off (100k keys): fastflow 3.00x" in table


def test_kafka_bench_checks_fastflow_and_the_plain_loop_on_the_mock_cluster(tmp_path):
    out = tmp_path / "table.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "kafka.py"), "--bytewax-python", sys.executable,
         "--quix-python", sys.executable, "--only", "plain,fastflow,fastflow_rec",
         "--rounds", "1", "--events", "2000", "--users", "50", "--output", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr  # every run's output topic was checked exactly
    rows = [line.split("|")[1].strip() for line in out.read_text().splitlines()[2:5]]
    assert rows == ["plain confluent-kafka loop (the floor)", "fastflow",
                    "fastflow, recovery on (-s 1)"]
    assert "fastflow with recovery takes" in out.read_text()

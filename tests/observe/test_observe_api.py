"""`fastflow run --api`: scrape a real running flow over real HTTP (issue 18).

The flow (tests/fixtures/observed_flow.py) emits N items, then waits until the test
creates its gate file: so the counts a test reads while the flow runs are final, with
no sleeping. /metrics is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List

import pytest
from _paths import ROOT, TESTS
from prometheus_client.parser import text_string_to_metric_families

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent)) or "fastflow"
FLOW = TESTS / "fixtures" / "observed_flow.py"
STEPS = {  # step id -> (items in, items out) for N items
    "observed.inp": (0, 1),
    "observed.double.flat_map_batch": (1, 1),
    "observed.key.flat_map_batch": (1, 1),
    "observed.count.stateful_batch": (1, 1),
    "observed.out": (1, 0),
}
HANG_GUARD = 120.0


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        assert response.status == 200
        body: bytes = response.read()
        return body


def status(port: int) -> Dict[str, Any]:
    document: Dict[str, Any] = json.loads(get(port, "/status"))
    return document


def metrics(port: int) -> Dict[str, Dict[str, float]]:
    """Sample name -> step id (or "") -> value, summed over workers and processes."""
    sums: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(get(port, "/metrics").decode()):
        for sample in family.samples:
            sums[sample.name][sample.labels.get("step_id", "")] += sample.value
    return sums


class ObservedRun:
    """A running `fastflow run observed_flow.py --api 127.0.0.1:0 ...`, and its port."""

    def __init__(self, tmp_path: Path, items: int, *args: str) -> None:
        self.gate = tmp_path / "gate"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FASTFLOW_")}
        environment.update(OBSERVED_ITEMS=str(items), OBSERVED_GATE=str(self.gate))
        self.proc = subprocess.Popen(
            [FASTFLOW, "run", str(FLOW), "--api", "127.0.0.1:0", "--log-level", "INFO", *args],
            cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self.err: List[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            found = re.search(r"dataflow API at http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
                break
        else:
            raise AssertionError(f"no API line: {''.join(self.err)}")

    def wait_for(self, done: Any) -> Dict[str, Any]:
        """Poll /status until ``done(status)``; a hang guard, not a timing assertion."""
        deadline = time.monotonic() + HANG_GUARD
        while True:
            if self.proc.poll() is not None:
                assert self.proc.stderr is not None
                raise AssertionError("the run ended: " + "".join(self.err)
                                     + self.proc.stderr.read())
            now = status(self.port)
            if done(now):
                return now
            assert time.monotonic() < deadline, now
            time.sleep(0.05)

    def counted(self, items: int) -> Dict[str, Any]:
        """Wait until every step has seen all ``items``."""
        def done(now: Dict[str, Any]) -> bool:
            return all((step["items_in"], step["items_out"])
                       == tuple(n * items for n in STEPS[step["step_id"]])
                       for step in now["steps"])

        return self.wait_for(done)

    def finish(self) -> subprocess.CompletedProcess:
        self.gate.touch()
        out, err = self.proc.communicate(timeout=HANG_GUARD)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out,
                                           "".join(self.err) + err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def observed(tmp_path: Path):
    runs: List[ObservedRun] = []

    def start(items: int, *args: str) -> ObservedRun:
        runs.append(ObservedRun(tmp_path, items, *args))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


@pytest.mark.parametrize(
    "args", [[], ["-w", "2"], ["-p", "2"], ["-p", "2", "-w", "2"], ["--ray", "-p", "2"]],
    ids=["1 process", "-w 2", "-p 2", "-p 2 -w 2", "--ray -p 2"])
def test_each_steps_counters_are_the_items_it_handled_summed_over_processes(observed, args):
    items = 250
    run = observed(items, *args)
    run.counted(items)
    scraped = metrics(run.port)
    for step_id, (inp, out) in STEPS.items():
        assert scraped["fastflow_item_inp_count_total"][step_id] == inp * items, step_id
        assert scraped["fastflow_item_out_count_total"][step_id] == out * items, step_id
    # the user's own counter, incremented in the mapper of every process, summed
    assert scraped["observed_mapped_items_total"][""] == items
    # every source partition's lag() says it has nothing left to emit
    assert scraped["fastflow_source_lag"]["observed.inp"] == 0
    assert scraped["fastflow_live_keys"]["observed.count.stateful_batch"] == 5  # even x % 10
    sent = scraped["fastflow_exchange_items_sent_total"][""]
    assert sent > 0 if ("-p" in args) else sent == 0  # keys owned by the other process
    done = run.finish()
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == items
    if "-p" in args:  # the mapper's warning, from each process (a Ray actor's too), tagged
        readers = (0,) if "-w" in args else (0, 1)  # -w 2: process 0 reads both partitions
        for process in readers:
            assert re.search(rf"^\[process {process}\] first item mapped: \d+$", done.stderr,
                             re.M), done.stderr


def test_per_worker_labels_follow_bytewax(observed):
    run = observed(100, "-p", "2", "-w", "2")
    run.counted(100)
    text = get(run.port, "/metrics").decode()
    labels = set()
    for family in text_string_to_metric_families(text):
        if family.name == "fastflow_item_out_count":
            for sample in family.samples:
                if sample.labels["step_id"] == "observed.inp":
                    labels.add((sample.labels["worker_index"], sample.labels["process"]))
    # the source's 2 partitions are read by workers 0 and 1 (of process 0)... and the
    # other workers of the run appear too, with what they read (nothing)
    assert labels == {("0", "0"), ("1", "0"), ("2", "1"), ("3", "1")}
    run.finish()


def test_the_bytewax_prefix_serves_bytewax_names(observed):
    run = observed(30, "--metrics-prefix", "bytewax")
    run.counted(30)
    scraped = metrics(run.port)
    assert scraped["bytewax_item_inp_count_total"]["observed.double.flat_map_batch"] == 30
    assert scraped["bytewax_flat_map_batch_duration_seconds_count"][
        "observed.double.flat_map_batch"] >= 1
    assert not any(name.startswith("fastflow_") for name in scraped)
    run.finish()


def test_dataflow_is_what_visualize_prints(observed, tmp_path):
    run = observed(10)
    served = json.loads(get(run.port, "/dataflow"))
    printed = subprocess.run([FASTFLOW, "visualize", str(FLOW), "--format", "json"],
                             cwd=tmp_path, capture_output=True, text=True, check=True)
    assert served == json.loads(printed.stdout)
    run.finish()


def _resume_epoch(tmp_path: Path) -> int:
    shown = subprocess.run([FASTFLOW, "recovery", "status", "db"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    found = re.search(r"next run resumes at epoch: (\d+)", shown)
    assert found, shown
    return int(found.group(1))


@pytest.mark.parametrize("args", [[], ["-p", "2"]], ids=["1 process", "-p 2"])
def test_status_reports_the_committed_epoch_recovery_status_reports(observed, tmp_path, args):
    subprocess.run([FASTFLOW, "init-recovery", "db", "2"], cwd=tmp_path, check=True,
                   capture_output=True)
    run = observed(50, "-r", "db", "-s", "0.05", "--api-linger", "600", *args)
    # The 50 items are in by then; the idle epochs after them write nothing (issue 23).
    first = run.wait_for(lambda s: (s["epoch"]["committed"] or 0) >= 1)
    assert first["state"] == "running"
    assert first["epoch"]["resume"] == 1
    assert first["commits"][-1]["bytes"] > 0
    run.gate.touch()
    final = run.wait_for(lambda s: s["state"] == "finished")  # served while it lingers
    assert final["epoch"]["current"] is None
    assert final["epoch"]["committed"] == _resume_epoch(tmp_path) - 1
    assert [c["epoch"] for c in final["commits"]] == sorted(c["epoch"] for c in final["commits"])
    assert final["store"]["partitions"] == 2 and final["store"]["bytes"] > 0
    run.proc.send_signal(signal.SIGINT)  # ends the linger: the run itself succeeded
    assert run.proc.wait(timeout=HANG_GUARD) == 0


def _taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("option, message", [
    (["--api", "127.0.0.1:{port}"], "fastflow run: error: --api: cannot listen on "
     "127.0.0.1:{port}: Address already in use"),
    (["--api", "localhost:http"], "fastflow run: error: --api: 'localhost:http' is not "
     "[HOST:]PORT with PORT from 0 to 65535"),
    (["--api", "70000"], "fastflow run: error: --api: '70000' is not [HOST:]PORT with PORT "
     "from 0 to 65535"),
    (["--log-level", "NOPE"], "fastflow run: error: --log-level: 'NOPE' is not a log level "
     "(DEBUG, INFO, WARNING, ERROR, CRITICAL)"),
    (["--api-linger", "-1"], "fastflow run: error: --api-linger: '-1' must not be negative"),
    (["--metrics-prefix", "a-b"], "fastflow run: error: --metrics-prefix: 'a-b' is not a "
     "metric name prefix (letters, digits, _)"),
])
def test_bad_options_are_one_line_and_exit_2_before_anything_runs(tmp_path, option, message):
    taken = _taken_port()
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run(
            [FASTFLOW, "run", str(FLOW), *[o.format(port=port) for o in option]],
            cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD,
            env={**os.environ, "OBSERVED_GATE": str(tmp_path / "gate")},
        )
    finally:
        taken.close()
    assert (proc.returncode, proc.stdout) == (2, "")  # the flow printed nothing: never ran
    assert proc.stderr == message.format(port=port) + "\n"


@pytest.mark.parametrize("variables, served", [
    ({"FASTFLOW_DATAFLOW_API_ENABLED": "true", "FASTFLOW_DATAFLOW_API_PORT": "{port}"}, True),
    ({"BYTEWAX_DATAFLOW_API_ENABLED": "1", "BYTEWAX_DATAFLOW_API_PORT": "{port}"}, True),
    ({"FASTFLOW_DATAFLOW_API_ENABLED": "false", "FASTFLOW_DATAFLOW_API_PORT": "{port}"}, False),
])
def test_the_api_variables_turn_it_on(tmp_path, variables, served):
    taken = _taken_port()  # a port in use shows whether the run tried to serve on it
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run(
            [FASTFLOW, "run", str(FLOW)], cwd=tmp_path, capture_output=True, text=True,
            timeout=HANG_GUARD,
            env={**{k: v for k, v in os.environ.items() if "DATAFLOW_API" not in k},
                 **{k: v.format(port=port) for k, v in variables.items()},
                 "OBSERVED_ITEMS": "5", "OBSERVED_GATE": str(tmp_path)},  # gate: exists
        )
    finally:
        taken.close()
    if served:
        assert (proc.returncode, proc.stderr) == (
            2, f"fastflow run: error: --api: cannot listen on 127.0.0.1:{port}: "
            "Address already in use\n")
    else:
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.splitlines()) == 5


def _family(name: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_total"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_the_docs_and_the_grafana_dashboard_name_exactly_the_served_families(observed,
                                                                              tmp_path):
    subprocess.run([FASTFLOW, "init-recovery", "db", "1"], cwd=tmp_path, check=True,
                   capture_output=True)
    run = observed(40, "-r", "db", "-s", "0.05", "-p", "2")
    run.wait_for(lambda s: (s["epoch"]["committed"] or 0) >= 1)
    run.counted(40)
    served = {family.name for family in text_string_to_metric_families(
        get(run.port, "/metrics").decode()) if family.name.startswith("fastflow_")}
    run.finish()
    docs = ROOT / "docs"
    documented = {_family(name) for name in re.findall(
        r"^\| `(fastflow_[a-z_]+)` \|", (docs / "observability.md").read_text(), re.M)}
    assert documented == served
    dashboard = json.loads((docs / "grafana" / "fastflow-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set()
    for expr in exprs:
        for alternatives, rest in re.findall(r"\$\{prefix\}_\(([a-z_|]+)\)([a-z_]+)", expr):
            used |= {_family(f"fastflow_{name}{rest}") for name in alternatives.split("|")}
        used |= {_family(f"fastflow_{name}") for name in
                 re.findall(r"\$\{prefix\}_([a-z][a-z_]*)", expr)}
    assert used and used <= served


def _descendants(pid: int) -> List[int]:
    """Every process below ``pid`` (Ray's raylet starts the actors under the driver)."""
    children: Dict[int, List[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children[todo.pop()]:
            found.append(child)
            todo.append(child)
    return found


def _actors_of(pid: int) -> List[int]:
    actors = []
    for child in _descendants(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if command.startswith(b"ray::RayProcess"):
            actors.append(child)
    return actors


def test_a_ray_restart_is_counted_and_the_final_status_served(observed, tmp_path):
    subprocess.run([FASTFLOW, "init-recovery", "db", "2"], cwd=tmp_path, check=True,
                   capture_output=True)
    run = observed(60, "--ray", "-p", "2", "-r", "db", "-s", "0.1", "--api-linger", "600")
    run.counted(60)
    run.wait_for(lambda s: (s["epoch"]["committed"] or 0) >= 1)
    actors = _actors_of(run.proc.pid)  # this run's actors only: never another test's
    assert len(actors) == 2, actors
    os.kill(actors[-1], signal.SIGKILL)
    restarted = run.wait_for(lambda s: s["processes"][0]["restarts"] == 1)
    assert restarted["state"] == "running"
    run.gate.touch()
    final = run.wait_for(lambda s: s["state"] == "finished")
    assert [p["restarts"] for p in final["processes"]] == [1, 1]
    assert metrics(run.port)["fastflow_restarts_total"][""] == 1
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=HANG_GUARD) == 0
    assert "restarting from the last committed epoch (restart 1 of 3)" in run.proc.stderr.read()

"""What the dashboard page costs a running flow (issue 19: <= 1% on a head-to-head flow).

The keyed running sum of ``bench/compare.py`` (1k keys, recovery on, 1 s epochs) runs as the
real ``fastflow run`` command in three ways, rounds alternating their order:

- ``no api``: without ``--api``;
- ``api``: with ``--api`` and nobody reading it;
- ``api + page``: with ``--api`` and the dashboard open in headless Chromium, polling
  ``/status`` twice a second for the whole run.

Each run's wall time and CPU time (user + system of the ``fastflow`` process, from
``wait4``) are taken; the table shows medians and the ratio to ``api``. Run it with
``.venv/bin/python bench/dashboard_cost.py [--items N] [--rounds R]`` (needs chromium and
chromium-driver, as the browser tests do).

On a busy machine the runs vary more than the page could cost, so it also measures the
cost of one poll directly: after a run, while its API lingers, ``/status`` is asked
``--requests`` times in a row and the process's CPU time (``/proc/PID/stat``) counted; the
page's cost is then that times its polls per second, against the one core the flow uses.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Tuple

FLOW = """
import fastflow.operators as op
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSink, TestingSource

ITEMS = {items}
out = []
flow = Dataflow("keyed_sum")
keyed = op.key_on("key", op.input("inp", flow, TestingSource(range(ITEMS), 10_000)),
                  lambda x: str(x % 1000))
sums = op.stateful_map("sum", keyed, lambda total, x: ((total or 0) + x, (total or 0) + x))
op.output("out", sums, TestingSink(out))
"""
MODES = ("no api", "api", "api + page")
FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent)) or "fastflow"


def browser():  # type: ignore[no-untyped-def]
    """Headless Chromium, as tests/test_dashboard.py drives it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options,
                            service=Service(shutil.which("chromedriver") or "chromedriver"))


def run_once(where: Path, mode: str, page) -> Tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """One timed run: (wall seconds, CPU seconds, /status requests the page made)."""
    db = where / "db"
    shutil.rmtree(db, ignore_errors=True)
    subprocess.run([FASTFLOW, "init-recovery", str(db), "1"], check=True, capture_output=True)
    args = [FASTFLOW, "run", str(where / "flow.py"), "-r", str(db), "-s", "1"]
    if mode != "no api":
        args += ["--api", "127.0.0.1:0", "--log-level", "INFO"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTFLOW_")}
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stderr is not None
    if mode == "api + page":
        for line in proc.stderr:
            found = re.search(r"dataflow API at (http://\S+/)", line)
            if found:
                page.get(found.group(1))
                break
    _, code, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(code)
    rest = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"fastflow run failed ({proc.returncode}): {rest}")
    polls = 0
    if mode == "api + page":
        polls = int(page.execute_script(
            "return performance.getEntriesByType('resource')"
            ".filter(e => e.name.endsWith('/status')).length"))
        page.get("about:blank")
    return wall, usage.ru_utime + usage.ru_stime, polls


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def poll_cost(where: Path, requests: int) -> float:
    """CPU seconds the ``fastflow run`` process spends answering one ``/status``."""
    db = where / "db"
    shutil.rmtree(db, ignore_errors=True)
    subprocess.run([FASTFLOW, "init-recovery", str(db), "1"], check=True, capture_output=True)
    proc = subprocess.Popen(
        [FASTFLOW, "run", str(where / "flow.py"), "-r", str(db), "-s", "1", "--api",
         "127.0.0.1:0", "--api-linger", "600", "--log-level", "INFO"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        found = re.search(r"dataflow API at (http://\S+/)", line)
        if found:
            url = found.group(1) + "status"
            break
    assert url is not None
    try:
        while b'"state": "running"' in urllib.request.urlopen(url).read():
            time.sleep(0.5)  # the flow's own work is over once it finished
        before = process_cpu(proc.pid)
        for _ in range(requests):
            urllib.request.urlopen(url).read()
        return (process_cpu(proc.pid) - before) / requests
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def main(argv: Optional[List[str]] = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=3_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "flow.py").write_text(FLOW.format(items=args.items))
        per_poll = poll_cost(Path(tmp), args.requests)
    page = browser()
    walls: Dict[str, List[float]] = {mode: [] for mode in MODES}
    cpus: Dict[str, List[float]] = {mode: [] for mode in MODES}
    polls: List[int] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            where = Path(tmp)
            (where / "flow.py").write_text(FLOW.format(items=args.items))
            for round_ in range(args.rounds):
                order = MODES if round_ % 2 == 0 else MODES[::-1]
                for mode in order:
                    wall, cpu, seen = run_once(where, mode, page)
                    walls[mode].append(wall)
                    cpus[mode].append(cpu)
                    if seen:
                        polls.append(seen)
                    print(f"round {round_ + 1} {mode:>10}: wall {wall:.3f} s, cpu {cpu:.3f} s"
                          + (f", {seen} /status polls" if seen else ""), file=sys.stderr)
    finally:
        page.quit()
    base_wall, base_cpu = statistics.median(walls["api"]), statistics.median(cpus["api"])
    print(f"keyed running sum, {args.items:,} items, 1k keys, recovery on, "
          f"median of {args.rounds} rounds")
    print(f"{'':>12} {'wall s':>8} {'/ api':>7} {'cpu s':>8} {'/ api':>7}")
    for mode in MODES:
        wall, cpu = statistics.median(walls[mode]), statistics.median(cpus[mode])
        print(f"{mode:>12} {wall:8.3f} {wall / base_wall:7.3f} {cpu:8.3f} {cpu / base_cpu:7.3f}")
    if polls:
        print(f"the page polled /status {statistics.median(polls):.0f} times per run (median)")
    print(f"one /status costs the flow's process {per_poll * 1000:.2f} ms of CPU: at the "
          f"page's 2 polls a second, {per_poll * 2 * 100:.2f}% of the core the flow runs on")


if __name__ == "__main__":
    main()

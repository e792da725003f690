"""The dashboard page in a real browser: headless Chromium driven by selenium (issue 19).

A real `fastflow run --api` runs tests/fixtures/dashboard_flow.py (a slow source that runs
until the test creates its gate file); the test opens the page the run serves and reads
everything from the DOM. Waits are WebDriverWait with a generous hang guard: nothing is
timed. scripts/_venv.sh installs Debian's chromium and chromium-driver.

With FASTFLOW_DASHBOARD_SCREENSHOT=FILE, the one-process test saves the page of the running
flow to FILE (scripts/dashboard-screenshot makes docs/images/dashboard.png that way).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest
from _paths import ROOT, TESTS
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent)) or "fastflow"
FLOW = TESTS / "fixtures" / "dashboard_flow.py"
HANG_GUARD = 120.0
STEPS = ["digits.numbers", "digits.evens", "digits.by_digit", "digits.total", "digits.out"]


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver") or "chromedriver")
    )
    yield driver
    driver.quit()


def wait(browser: WebDriver, what: str, condition: Callable[[WebDriver], object]) -> object:
    """Wait until ``condition`` holds (a hang guard, not a timing assertion)."""
    return WebDriverWait(
        browser, HANG_GUARD, poll_frequency=0.2,
        ignored_exceptions=(StaleElementReferenceException,),  # a row redrawn meanwhile
    ).until(condition, message=what)


def text_of(browser: WebDriver, selector: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, selector).text


def attribute(browser: WebDriver, selector: str, name: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, selector).get_attribute(name) or ""


# Tables are redrawn on every update: read a table's rows in one script, as of one update.
ROWS_SCRIPT = """return Array.from(document.querySelectorAll('#' + arguments[0] + ' tbody tr')).map(
  (row) => ({data: Object.assign({}, row.dataset), dead: row.classList.contains('dead'),
             slow: row.classList.contains('slow'),
             cells: Array.from(row.cells).map((cell) => cell.textContent)}));"""


def rows(browser: WebDriver, table: str) -> List[Dict[str, object]]:
    return list(browser.execute_script(ROWS_SCRIPT, table))


def number(text: str) -> float:
    return float(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else float("nan")


class Server:
    """A `fastflow` command serving the page on a free port (it prints where)."""

    def __init__(self, args: List[str], cwd: Path, pattern: str, env: Dict[str, str]):
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FASTFLOW_")}
        environment.update(env)
        self.proc = subprocess.Popen(
            [FASTFLOW, *args], cwd=cwd, env=environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if "run" in args else subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        stream = self.proc.stderr if "run" in args else self.proc.stdout
        self.lines: List[str] = []
        for line in stream:
            self.lines.append(line)
            found = re.search(pattern, line)
            if found:
                self.url = f"http://127.0.0.1:{found.group(1)}/"
                break
        else:
            raise AssertionError(f"no address in {self.lines}: {self.proc.stderr.read()}")
        # keep reading, so that a full pipe never blocks the command
        self._reader = threading.Thread(target=self.lines.extend, args=(stream,), daemon=True)
        self._reader.start()

    def stop(self) -> int:
        """Ctrl-C, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=HANG_GUARD)
        self._reader.join(timeout=HANG_GUARD)
        return code


def start_run(tmp_path: Path, *args: str, env: Optional[Dict[str, str]] = None) -> Server:
    subprocess.run([FASTFLOW, "init-recovery", "db", "2"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=HANG_GUARD)
    return Server(
        ["run", str(FLOW), "-r", "db", "-s", "0.2", "--api", "127.0.0.1:0",
         "--api-linger", "600", "--log-level", "INFO", *args],
        tmp_path, r"dataflow API at http://127\.0\.0\.1:(\d+)/",
        {"DASHBOARD_GATE": str(tmp_path / "gate"), **(env or {})},
    )


# Read in one script, so that every box is seen as of the same update of the page.
STEPS_SCRIPT = """return Array.from(document.querySelectorAll('#graph [data-step-id]')).map(
  (box) => [box.dataset.stepId, {'in-per-second': box.dataset.inPerSecond || '',
  'out-per-second': box.dataset.outPerSecond || '', 'busy-share': box.dataset.busyShare || '',
  'slowest': box.classList.contains('slowest')}]);"""


def steps_drawn(browser: WebDriver) -> Dict[str, Dict[str, object]]:
    return dict(browser.execute_script(STEPS_SCRIPT))


def rates_flowing(browser: WebDriver) -> bool:
    drawn = steps_drawn(browser)
    return all(number(drawn[s]["in-per-second"]) > 0 for s in STEPS[1:]) and all(
        number(drawn[s]["out-per-second"]) > 0 for s in STEPS[:-1]
    )


def test_page_of_a_running_flow(browser, tmp_path):
    run = start_run(tmp_path)
    try:
        browser.get(run.url)
        wait(browser, "the graph", lambda b: sorted(steps_drawn(b)) == sorted(STEPS))
        edges = browser.find_elements(By.CSS_SELECTOR, "#edges path[data-edge]")
        assert [e.get_attribute("data-edge") for e in edges] == [
            f"{a}->{b}" for a, b in zip(STEPS, STEPS[1:], strict=False)
        ]
        assert text_of(browser, "#flow-id") == "digits"
        assert attribute(browser, "#run-state", "data-state") == "running"

        wait(browser, "item rates above 0 at every step", rates_flowing)
        drawn = steps_drawn(browser)
        shares = {step: float(figures["busy-share"]) for step, figures in drawn.items()}
        assert [step for step, figures in drawn.items() if figures["slowest"]] == [
            max(shares, key=shares.__getitem__)
        ]
        assert sum(shares.values()) == pytest.approx(1.0)

        wait(browser, "a committed epoch", lambda b: number(text_of(b, "#committed-epoch")) >= 1)
        first = number(text_of(browser, "#committed-epoch"))
        wait(browser, "the committed epoch to advance",
             lambda b: number(text_of(b, "#committed-epoch")) > first)
        assert number(text_of(browser, "#current-epoch")) > first
        assert text_of(browser, "#resume-epoch") == "1"
        wait(browser, "commits in the timeline",
             lambda b: len(b.find_elements(By.CSS_SELECTOR, "#timeline rect")) >= 2)
        newest, committed = browser.execute_script(  # one script: as of one update
            "return [document.querySelector('#commits tbody tr').dataset.commitEpoch,"
            " document.getElementById('committed-epoch').textContent]")
        assert first < int(newest) <= int(committed)  # the newest commit comes first

        assert text_of(browser, "#store-partitions") == "2"
        wait(browser, "live keys of the stateful step", lambda b: [
            r["cells"] for r in rows(b, "live-keys")] == [["digits.total.stateful_batch", "5"]])
        assert [r["data"]["alive"] for r in rows(browser, "processes")] == ["true"]
        wait(browser, "items/s of process 0",
             lambda b: number(rows(b, "processes")[0]["cells"][3]) > 0)
        wait(browser, "items written by the sink", lambda b: [
            int(r["data"]["items"]) > 0 for r in rows(b, "sinks")
            if r["data"]["sinkStep"] == "digits.out"] == [True])
        shot = os.environ.get("FASTFLOW_DASHBOARD_SCREENSHOT")
        if shot:
            browser.save_screenshot(shot)

        (tmp_path / "gate").touch()  # the source ends: the flow finishes, the API lingers
        wait(browser, "finished", lambda b: attribute(b, "#run-state", "data-state")
             == "finished")
        assert text_of(browser, "#run-state") == "finished"
        assert text_of(browser, "#run-error") == ""
        ended = rows(browser, "processes")
        assert [(r["cells"][2], r["dead"]) for r in ended] == [("ended", False)]
        browser.refresh()  # the page survives a reload and shows the end again
        wait(browser, "finished after a reload",
             lambda b: attribute(b, "#run-state", "data-state") == "finished"
             and sorted(steps_drawn(b)) == sorted(STEPS))
        assert run.stop() == 0  # Ctrl-C ends the linger
        wait(browser, "disconnected", lambda b: attribute(b, "#connection", "data-state")
             == "disconnected")
        assert attribute(browser, "#run-state", "data-state") == "finished"
    finally:
        run.stop()


def children(pid: int) -> List[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_slow_then_killed_process_of_p_2_stands_out(browser, tmp_path):
    # Process 1 reads partition 1, which emits ten times slower than partition 0.
    run = start_run(tmp_path, "-p", "2", env={"DASHBOARD_SLOW_MS": "200"})
    try:
        browser.get(run.url)
        wait(browser, "both processes alive", lambda b: [
            r["data"]["alive"] for r in rows(b, "processes")] == ["true", "true"])
        wait(browser, "item rates above 0 at every step", rates_flowing)
        wait(browser, "process 1 marked slow", lambda b: [
            (r["slow"], r["cells"][2]) for r in rows(b, "processes")
        ] == [(False, "yes"), (True, "yes, slow")])
        workers = children(run.proc.pid)
        assert len(workers) == 2
        os.kill(workers[1], signal.SIGKILL)
        wait(browser, "failed", lambda b: attribute(b, "#run-state", "data-state") == "failed")
        assert text_of(browser, "#run-state") == "failed"
        error = text_of(browser, "#run-error")
        assert re.search(r"process \d", error), error
        shown = rows(browser, "processes")
        assert [r["data"]["process"] for r in shown] == ["0", "1"]
        assert all(r["dead"] and r["data"]["alive"] == "false" for r in shown)
        assert error in [r["cells"][5] for r in shown]
        assert run.stop() == 1
    finally:
        run.stop()


def test_page_of_a_store_at_rest(browser, tmp_path):
    subprocess.run([FASTFLOW, "init-recovery", "db", "2"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=HANG_GUARD)
    (tmp_path / "gate").touch()  # one round, then the flow ends

    def execution() -> None:
        subprocess.run([FASTFLOW, "run", str(FLOW), "-r", "db"], cwd=tmp_path, check=True,
                       capture_output=True, timeout=HANG_GUARD,
                       env={**os.environ, "DASHBOARD_GATE": str(tmp_path / "gate")})

    execution()
    execution()
    def recovery_status() -> Tuple[str, str]:
        """What `fastflow recovery status` prints, and the resume epoch it names."""
        status = subprocess.run([FASTFLOW, "recovery", "status", "db"], cwd=tmp_path,
                                check=True, capture_output=True, text=True,
                                timeout=HANG_GUARD).stdout
        return status, re.search(r"next run resumes at epoch: (\d+)", status).group(1)

    status, resume_text = recovery_status()
    resume = int(resume_text)
    live = {step: keys for step, keys in re.findall(r"^  (digits\.\S+)\s+(\d+)", status, re.M)}
    assert live  # the source's positions, at least

    server = Server(["dashboard", "db", "--api", "127.0.0.1:0"], tmp_path,
                    r"at http://127\.0\.0\.1:(\d+)/", {})
    try:
        browser.get(server.url)
        wait(browser, "at rest", lambda b: attribute(b, "#run-state", "data-state") == "at_rest")
        assert text_of(browser, "#run-state") == "at rest"
        assert text_of(browser, "#resume-epoch") == str(resume)
        assert text_of(browser, "#committed-epoch") == str(resume - 1)
        assert text_of(browser, "#current-epoch") == "–"
        assert not browser.find_element(By.ID, "graph-panel").is_displayed()
        assert [r["data"]["partitionIndex"] for r in rows(browser, "partitions")] == ["0", "1"]
        assert [r["data"]["execution"] for r in rows(browser, "executions")] == ["0", "1"]
        assert {r["cells"][0]: r["cells"][1] for r in rows(browser, "live-keys")} == live
        assert text_of(browser, "#store-partitions") == "2"
        execution()  # the store changes under the page: it is read again
        _, now = recovery_status()
        wait(browser, "a third execution", lambda b: [
            r["data"]["execution"] for r in rows(b, "executions")] == ["0", "1", "2"])
        assert text_of(browser, "#resume-epoch") == now
        assert server.stop() == 130
        wait(browser, "disconnected", lambda b: attribute(b, "#connection", "data-state")
             == "disconnected")
        assert attribute(browser, "#run-state", "data-state") == "at_rest"
    finally:
        server.stop()


def test_dashboard_of_a_missing_store_is_one_line(tmp_path):
    done = subprocess.run([FASTFLOW, "dashboard", "nowhere", "--api", "127.0.0.1:0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("fastflow dashboard: error: recovery directory nowhere ")
    assert done.stderr.count("\n") == 1


def test_the_page_needs_nothing_from_elsewhere():
    page = (ROOT / "fastflow" / "_observe" / "dashboard.html").read_text()
    assert not re.search(r"\b(src|href)=", page)  # no scripts, styles or images to fetch
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}


def test_page_of_a_flow_on_ray(browser, tmp_path):
    # A Ray instance of its own, even if another one runs on this machine.
    run = start_run(tmp_path, "-p", "2", "--ray", env={"RAY_ADDRESS": "local"})
    try:
        browser.get(run.url)
        wait(browser, "the graph", lambda b: sorted(steps_drawn(b)) == sorted(STEPS))
        wait(browser, "both actors alive", lambda b: [
            r["data"]["alive"] for r in rows(b, "processes")] == ["true", "true"])
        wait(browser, "item rates above 0 at every step", rates_flowing)
        wait(browser, "a committed epoch", lambda b: number(text_of(b, "#committed-epoch")) >= 1)
        first = number(text_of(browser, "#committed-epoch"))
        wait(browser, "the committed epoch to advance",
             lambda b: number(text_of(b, "#committed-epoch")) > first)
        (tmp_path / "gate").touch()
        wait(browser, "finished", lambda b: attribute(b, "#run-state", "data-state")
             == "finished")
        assert run.stop() == 0
    finally:
        run.stop()

"""Head-to-head: the same flows on fastflow and on Bytewax 0.21.1, plus the plain-loop floor.

Run through ``scripts/bench --compare`` (which installs Bytewax into its own
venv), or directly::

    python bench/compare.py --bytewax-python .bench-venv/bin/python [--rounds 5]

Every measurement is a fresh interpreter running ``bench/measure.py`` (see
there for exactly what is timed). Rounds alternate the engines' order, so
slow drift of the machine hits all of them alike; the table shows medians.
Each case's outputs must agree across engines (length and checksum).

Resume cases first build a store holding K keys (one item per key, untimed),
then time a run that resumes from it with the same input (so the source
resumes at its end and only the restore of the state is left). Every timed
resume starts from a copy of the store as built, so all rounds do the same
work (a resume also commits, and its first commit garbage-collects the
build's last epoch). Bytewax's
resume from 1M keys takes over 15 minutes, so it runs once, under ``--timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from flows import BATCH_SIZE

HERE = Path(__file__).resolve().parent
COLUMNS = ("plain", "fastflow", "bytewax")


@dataclass
class Case:
    """One row of the table."""

    name: str
    label: str
    workload: str
    keys: int
    recovery: bool = False
    resume: bool = False
    items: Optional[int] = None
    """Items of the input (default: ``--items``; a resume row: one per key)."""
    interval: float = 1.0
    """Epoch length, seconds."""
    retouch: bool = False
    """A resume row whose input has new values for every key, so every key changes again."""
    api: bool = False
    """Serve the dataflow API and scrape it every second while the flow runs."""
    target: str = ""
    engines: tuple = COLUMNS
    times: Dict[str, List[Optional[float]]] = field(default_factory=dict)
    cpu: Dict[str, List[Optional[float]]] = field(default_factory=dict)
    outputs: Dict[str, set] = field(default_factory=dict)
    bytes_per_key: Dict[str, float] = field(default_factory=dict)

    def median(self, engine: str, metric: str = "times") -> Optional[float]:
        """The median wall (``times``) or ``cpu`` time; None if a run timed out or none ran."""
        runs = getattr(self, metric).get(engine, [])
        if not runs or any(t is None for t in runs):
            return None
        return statistics.median(runs)  # type: ignore[type-var]


def cases(items: int, resume_keys: List[int]) -> List[Case]:
    """The rows: the issue's flows, in its order."""
    rows = [
        Case("stateless", f"stateless chain (map, filter, flat_map), {items:,} items",
             "stateless", 0, target="fastflow <= 1.25x plain"),
        Case("keyed_1k", "keyed running sum, 1k keys", "keyed_sum", 1000,
             target="fastflow <= 1.25x plain"),
        Case("keyed_100k", "keyed running sum, 100k keys", "keyed_sum", 100_000,
             target="fastflow <= 1.25x plain"),
        Case("keyed_100k_rec", "same, recovery on (-s 1)", "keyed_sum", 100_000,
             recovery=True, engines=("fastflow", "bytewax"), target="<= 1.10x recovery off"),
        Case("stateless_api", "stateless chain, --api on, scraped every second", "stateless", 0,
             api=True, engines=("fastflow",), target="<= 1.03x --api off"),
        Case("keyed_100k_rec_api", "keyed 100k, recovery on, --api on, scraped every second",
             "keyed_sum", 100_000, recovery=True, api=True, engines=("fastflow",),
             target="<= 1.03x --api off"),
    ]
    for keys in resume_keys:
        rows.append(Case(f"resume_{keys}", f"resume from a store of {keys:,} keys", "keyed_sum",
                         keys, recovery=True, resume=True, engines=("fastflow", "bytewax"),
                         target="< 1 s" if keys >= 1_000_000 else ""))
    # What an epoch costs per changed key: one epoch (-s 30) changing every one of K keys.
    only_fastflow = ("fastflow",)
    for keys, name in ((100_000, "100k"), (1_000_000, "1m")):
        rows.append(Case(f"once_{name}", f"every one of {keys:,} keys changed once, -s 30",
                         "keyed_sum", keys, items=keys, interval=30, engines=only_fastflow))
        rows.append(Case(f"once_{name}_rec", "same, recovery on", "keyed_sum", keys,
                         items=keys, interval=30, recovery=True, engines=only_fastflow,
                         target="<= 1.5 µs per changed key"))
    rows.append(Case("retouch_1m_rec", "resume 1M keys and change each once, -s 30",
                     "keyed_sum", 1_000_000, interval=30, recovery=True, resume=True,
                     retouch=True, engines=only_fastflow, target="<= 3 s more than recovery off"))
    return rows


class Runner:
    """Runs ``measure.py`` under the right interpreter."""

    def __init__(self, pythons: Dict[str, str], items: int, batch_size: int, timeout: float,
                 workdir: Path) -> None:
        self.pythons = pythons
        self.items = items
        self.batch_size = batch_size
        self.timeout = timeout
        self.workdir = workdir

    def store(self, case: Case, engine: str) -> Path:
        return self.workdir / f"{case.name}-{engine}"

    def keep_built(self, case: Case, engine: str) -> None:
        """Keep a copy of the store as built, to start every timed resume from."""
        shutil.copytree(self.store(case, engine), self.workdir / f"{case.name}-{engine}.built")

    def reset_to_built(self, case: Case, engine: str) -> None:
        store = self.store(case, engine)
        shutil.rmtree(store)
        shutil.copytree(self.workdir / f"{case.name}-{engine}.built", store)

    def measure(self, case: Case, engine: str, fresh_store: bool = False) -> Optional[dict]:
        items = case.keys if case.resume else (case.items or self.items)
        cmd = [
            self.pythons[engine], str(HERE / "measure.py"), engine, case.workload,
            "--items", str(items), "--keys", str(case.keys or 1),
            "--batch-size", str(self.batch_size), "--interval", str(case.interval),
        ]
        if case.retouch and not fresh_store:
            cmd.append("--shift")
        if case.api:
            cmd.append("--api")
        if case.recovery:
            cmd += ["--recovery-dir", str(self.store(case, engine))]
            if fresh_store or not case.resume:
                cmd.append("--fresh-store")
            else:
                self.reset_to_built(case, engine)
        env = dict(os.environ, PYTHONHASHSEED="0")
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            print(f"  {case.name} {engine}: timed out after {self.timeout:.0f} s", file=sys.stderr)
            return None
        except subprocess.CalledProcessError as ex:
            sys.exit(f"{' '.join(cmd)} failed:\n{ex.stderr}")
        return json.loads(done.stdout.splitlines()[-1])

    def record(self, case: Case, engine: str, result: Optional[dict]) -> None:
        case.times.setdefault(engine, []).append(None if result is None else result["seconds"])
        case.cpu.setdefault(engine, []).append(None if result is None else result["cpu_seconds"])
        if result is not None:
            case.outputs.setdefault(engine, set()).add((result["count"], result["checksum"]))
        shown = "timeout" if result is None else (
            f"{result['seconds']:.3f} s (cpu {result['cpu_seconds']:.3f} s)")
        print(f"  {case.name:16s} {engine:9s} {shown}", file=sys.stderr)


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run(runner: Runner, rows: List[Case], rounds: int, slow_resume_keys: int) -> None:
    for case in rows:
        if not case.resume:
            continue
        for engine in case.engines:
            print(f"building the store for {case.name} ({engine})", file=sys.stderr)
            if runner.measure(case, engine, fresh_store=True) is None:
                sys.exit(f"building the {engine} store for {case.name} timed out")
            case.bytes_per_key[engine] = store_bytes(runner.store(case, engine)) / case.keys
            runner.keep_built(case, engine)
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
        for case in rows:
            order = case.engines if r % 2 == 0 else tuple(reversed(case.engines))
            for engine in order:
                once = engine == "bytewax" and case.resume and case.keys >= slow_resume_keys
                if once and r > 0:
                    continue
                runner.record(case, engine, runner.measure(case, engine))


def _secs(t: Optional[float]) -> str:
    return "—" if t is None else f"{t:.3f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None:
        return "—"
    return f"{a / b:.2f}x" if a / b >= 0.1 else f"{a / b:.4f}x"


def table(rows: List[Case], timeout: float, metric: str) -> str:
    """The markdown table of ``metric`` (``times``: wall, or ``cpu``) and the derived ratios."""
    by_name = {c.name: c for c in rows}
    lines = [
        "| flow | plain loop (s) | fastflow (s) | Bytewax 0.21.1 (s) | fastflow / plain "
        "| fastflow / Bytewax | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]

    def median(case: Case, engine: str) -> Optional[float]:
        return case.median(engine, metric)

    for c in rows:
        ff, bw, pl = median(c, "fastflow"), median(c, "bytewax"), median(c, "plain")
        bw_text = _secs(bw)
        if bw is None and None in c.times.get("bytewax", []):
            bw_text = f"> {timeout:.0f}"
        lines.append(
            f"| {c.label} | {_secs(pl)} | {_secs(ff)} | {bw_text} | {_ratio(ff, pl)} "
            f"| {_ratio(ff, bw)} | {c.target} |"
        )
    notes = []
    off, on = by_name.get("keyed_100k"), by_name.get("keyed_100k_rec")
    if off and on:
        notes.append(
            "recovery on / off (100k keys): fastflow "
            f"{_ratio(median(on, 'fastflow'), median(off, 'fastflow'))}, Bytewax "
            f"{_ratio(median(on, 'bytewax'), median(off, 'bytewax'))} (target: fastflow <= 1.10x)"
        )
    for off_name, on_name in (("stateless", "stateless_api"),
                              ("keyed_100k_rec", "keyed_100k_rec_api")):
        off, on = by_name.get(off_name), by_name.get(on_name)
        if off and on:
            notes.append(f"--api on / off ({off_name}): fastflow "
                         f"{_ratio(median(on, 'fastflow'), median(off, 'fastflow'))} "
                         "(target <= 1.03x)")
    for size in ("100k", "1m"):
        off, on = by_name.get(f"once_{size}"), by_name.get(f"once_{size}_rec")
        if off and on and median(off, "fastflow") and median(on, "fastflow"):
            extra = (median(on, "fastflow") - median(off, "fastflow")) / on.keys * 1e6
            notes.append(f"extra time per changed key, {on.keys:,} keys: {extra:.2f} µs "
                         "(target <= 1.5 µs, and at 1M <= 1.3x the 100k figure)")
    off, again = by_name.get("once_1m"), by_name.get("retouch_1m_rec")
    if off and again and median(off, "fastflow") and median(again, "fastflow"):
        notes.append("second run resuming 1M keys and changing each: "
                     f"+{median(again, 'fastflow') - median(off, 'fastflow'):.2f} s over recovery "
                     "off (target <= 3 s)")
    resumes = [c for c in rows if c.resume and not c.retouch]
    if len(resumes) >= 2:
        small, big = resumes[0], resumes[-1]
        notes.append(
            f"resume time, {big.keys:,} / {small.keys:,} keys: fastflow "
            f"{_ratio(median(big, 'fastflow'), median(small, 'fastflow'))}, Bytewax "
            f"{_ratio(median(big, 'bytewax'), median(small, 'bytewax'))} "
            f"(target: at most {1.2 * big.keys / small.keys:.0f}x)"
        )
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def checks(rows: List[Case]) -> str:
    """Store sizes, and whether the engines' outputs agreed."""
    notes = []
    for c in rows:
        if c.resume and not c.retouch:
            sizes = ", ".join(f"{e} {b:.0f}" for e, b in c.bytes_per_key.items())
            notes.append(f"store bytes per key, {c.keys:,} keys: {sizes}")
        for engine, runs in c.times.items():
            if len(runs) == 1 and len(c.times.get("fastflow", [])) > 1:
                notes.append(f"{c.name}, {engine}: one run (round 1), not a median")
    bad = [c.name for c in rows if len(set().union(*c.outputs.values())) > 1]
    notes.append(f"OUTPUTS DIFFER between engines in: {', '.join(bad)}" if bad
                 else "outputs (length and checksum) agreed across engines in every case")
    return "\n".join(f"- {n}" for n in notes)


def machine(pythons: Dict[str, str]) -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    versions = {}
    for engine, python in pythons.items():
        code = ("import sys, importlib.metadata as m; "
                f"print(sys.version.split()[0], m.version({engine!r}) if {engine!r} != 'plain' "
                "else '')")
        versions[engine] = subprocess.run([python, "-c", code], capture_output=True, text=True,
                                          check=True).stdout.split()
    return (
        f"- machine: {os.cpu_count()} CPUs (nproc), {model}, {platform.system()} "
        f"{platform.release()}\n"
        f"- python: {versions['plain'][0]} (fastflow {versions['fastflow'][1]}); "
        f"Bytewax {versions['bytewax'][1]} on python {versions['bytewax'][0]}"
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytewax-python", required=True,
                        help="interpreter of a venv with bytewax==0.21.1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--resume-keys", default="100000,1000000",
                        help="comma-separated store sizes for the resume rows")
    parser.add_argument("--only", help="comma-separated row names (e.g. stateless,keyed_1k)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds before one measurement is given up")
    parser.add_argument("--output", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args(argv)
    pythons = {"plain": sys.executable, "fastflow": sys.executable,
               "bytewax": args.bytewax_python}
    resume_keys = [int(k) for k in args.resume_keys.split(",") if k]
    rows = cases(args.items, resume_keys)
    if args.only:
        wanted = args.only.split(",")
        rows = [c for c in rows if c.name in wanted]
    workdir = Path(tempfile.mkdtemp(prefix="fastflow-bench-"))
    try:
        runner = Runner(pythons, args.items, args.batch_size, args.timeout, workdir)
        run(runner, rows, args.rounds, slow_resume_keys=1_000_000)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report = (
        f"Wall time, medians:\n\n{table(rows, args.timeout, 'times')}\n\n"
        f"CPU time of the process (all threads), medians:\n\n"
        f"{table(rows, args.timeout, 'cpu')}\n\n{checks(rows)}\n{machine(pythons)}\n"
        f"- {args.rounds} rounds, medians; batch_size {args.batch_size}; one worker; "
        "epoch interval 1 s\n"
    )
    print(report)
    if args.output:
        args.output.write_text(report)
    return 1 if "OUTPUTS DIFFER" in report else 0


if __name__ == "__main__":
    sys.exit(main())

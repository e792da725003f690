"""Time one run of one workload in this process and print the result as JSON.

Run by ``compare.py`` in a fresh interpreter per measurement (so start-up,
imports and building the input are never timed, and runs cannot warm each
other up)::

    python bench/measure.py ENGINE WORKLOAD [--items N] [--keys K] [--batch-size B]
                            [--interval S] [--recovery-dir DIR [--fresh-store]] [--shift]
                            [--api]

ENGINE is ``fastflow``, ``bytewax`` or ``plain`` (the plain loop). What is
timed: the ``run_main(flow, ...)`` call alone (for ``plain``, the loop
alone), as wall time (``time.perf_counter``) and as the CPU time of the
process, all threads (``time.process_time``). Before it: imports (the
engine's lazily imported runtime included, see ``engines.load``), building
the input list and the flow, creating a fresh recovery store (``--fresh-store``), then
``gc.collect(); gc.freeze()`` so the collector does not rescan the
pre-built input during the run (the same for all three). The output is
checked outside the timing: its length and an order-independent checksum
(``PYTHONHASHSEED`` is fixed by the caller) must agree across engines.

``--api`` (fastflow only) runs the flow as ``fastflow run --api`` does, with the dataflow
API served on 127.0.0.1 and a thread scraping ``/metrics`` and ``/status`` every second
(Prometheus scrapes every 15 s by default: this is the heavier case), after one untimed
scrape (the first request's one-time imports would otherwise weigh on a 0.3 s run).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any, List, Optional

from flows import BATCH_SIZE, WORKLOADS


def checksum(out: List[Any]) -> int:
    """An order-independent digest of the output (needs a fixed ``PYTHONHASHSEED``)."""
    return sum(hash(item) for item in out) & 0xFFFFFFFFFFFFFFFF


def measure(
    engine: str,
    workload: str,
    items: int,
    keys: int,
    batch_size: int = BATCH_SIZE,
    interval: float = 1.0,
    recovery_dir: Optional[Path] = None,
    fresh_store: bool = False,
    shift: bool = False,
    api: bool = False,
) -> dict[str, Any]:
    """Build the input and the flow, then time one run; return what was measured."""
    spec = WORKLOADS[workload]
    data = spec.items(items, keys)
    if shift:  # the same keys with new values: a resumed source starts over, every key changes
        data = [(key, value + 1) for key, value in data]
    out: List[Any] = []
    if engine == "plain":
        run = lambda: spec.plain(data, out)  # noqa: E731
    else:
        from engines import load

        engine_api = load(engine)
        flow = spec.build(engine_api, data, out, batch_size)
        config = None
        if recovery_dir is not None:
            if fresh_store:
                shutil.rmtree(recovery_dir, ignore_errors=True)
                recovery_dir.mkdir(parents=True)
                engine_api.init_db_dir(recovery_dir, 1)
            config = engine_api.RecoveryConfig(str(recovery_dir))
        epoch = timedelta(seconds=interval)
        run = lambda: engine_api.run_main(  # noqa: E731
            flow, epoch_interval=epoch, recovery_config=config)
    observed = served(flow, interval, recovery_dir) if api else contextlib.nullcontext()
    gc.collect()
    gc.freeze()
    with observed:
        start, cpu_start = time.perf_counter(), time.process_time()
        run()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    gc.unfreeze()
    return {
        "engine": engine,
        "workload": workload,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "count": len(out),
        "checksum": checksum(out),
    }


@contextlib.contextmanager
def served(flow: Any, interval: float, recovery_dir: Optional[Path]) -> Any:
    """The dataflow API of ``fastflow run --api``, scraped every second while it runs."""
    from fastflow._observe.options import DEFAULT_PREFIX, ObserveOptions
    from fastflow._observe.session import ObservedRun

    options = ObserveOptions(("127.0.0.1", 0), 0.0, DEFAULT_PREFIX, None)
    with ObservedRun(flow, options, processes=1, workers_per_process=1,
                     interval=timedelta(seconds=interval), store=recovery_dir) as observed:
        assert observed.address is not None
        host, port = observed.address
        base = f"http://{host}:{port}"
        stop = threading.Event()

        def scrape_once() -> None:
            for path in ("/metrics", "/status"):
                with urllib.request.urlopen(base + path, timeout=30) as response:
                    response.read()

        def scrape() -> None:
            while not stop.wait(1.0):
                scrape_once()

        scrape_once()  # untimed: the first request's imports and set-up, paid once per run
        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        try:
            yield
        finally:
            stop.set()
            scraper.join()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=["fastflow", "bytewax", "plain"])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--interval", type=float, default=1.0, help="epoch length, seconds")
    parser.add_argument("--recovery-dir", type=Path)
    parser.add_argument("--fresh-store", action="store_true", help="init a new store first")
    parser.add_argument("--shift", action="store_true",
                        help="add 1 to every value (a resume then changes every key again)")
    parser.add_argument("--api", action="store_true",
                        help="serve the dataflow API and scrape it every second (fastflow)")
    args = parser.parse_args(argv)
    result = measure(
        args.engine, args.workload, args.items, args.keys, args.batch_size, args.interval,
        args.recovery_dir, args.fresh_store, args.shift, args.api,
    )
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()

"""The recovery store: snapshot writes per epoch, and resuming a large store.

- ``snapshot write``: one epoch's commit of N changed keys (encoding their
  states and ``RecoveryStore.commit_epoch``), the work a worker does when an
  epoch closes with recovery on. Each round is the next epoch of one store,
  rewriting the same keys, so superseded snapshots get collected as in a run.
- ``resume``: ``run_main`` of the keyed running sum on a store already
  holding K keys (built untimed by the same flow), with the same input, so
  the source resumes at its end and only the restore is left. One round each
  (the 1M-key store takes a while to build); 100k beside 1M shows whether
  resume time is linear in the keys.
"""

from datetime import timedelta

import pytest
from engines import load
from flows import BATCH_SIZE, WORKLOADS

from fastflow._cext import codec
from fastflow._engine.store import RecoveryStore

pytest.importorskip("pytest_benchmark")

STEP = "keyed_sum.sum"


@pytest.mark.parametrize("keys", [10_000, 100_000])
def test_snapshot_write(benchmark, tmp_path, keys):
    benchmark.group = "snapshot write: one epoch's commit"
    api = load("fastflow")
    api.init_db_dir(tmp_path, 1)
    names = [f"k{i}" for i in range(keys)]
    epoch = iter(range(1, 1_000_000))
    with RecoveryStore.open(tmp_path) as store:
        store.start_execution(worker_count=1)

        def commit():
            e = next(epoch)
            rows = [(STEP, name, codec.encode(e * 1000 + i)) for i, name in enumerate(names)]
            store.commit_epoch(e, 0, rows, gc_before=e - 1)

        benchmark.pedantic(commit, rounds=5, warmup_rounds=1)
        benchmark.extra_info["keys"] = keys


@pytest.mark.parametrize("keys", [100_000, 1_000_000])
def test_resume(benchmark, tmp_path, keys):
    benchmark.group = "resume: run_main on a store of K keys"
    api = load("fastflow")
    spec = WORKLOADS["keyed_sum"]
    data = spec.items(keys, keys)
    api.init_db_dir(tmp_path, 1)
    config = api.RecoveryConfig(str(tmp_path))
    epoch = timedelta(seconds=1)
    api.run_main(spec.build(api, data, [], BATCH_SIZE), epoch_interval=epoch,
                 recovery_config=config)
    out = []
    flow = spec.build(api, data, out, BATCH_SIZE)
    benchmark.pedantic(
        api.run_main, (flow,), {"epoch_interval": epoch, "recovery_config": config}, rounds=1
    )
    assert out == []  # everything was already processed: only the state was restored
    size = sum(f.stat().st_size for f in tmp_path.iterdir())
    benchmark.extra_info["store bytes per key"] = round(size / keys, 1)

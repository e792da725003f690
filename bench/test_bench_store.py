"""The recovery store: snapshot writes per epoch, and resuming a large store.

- ``snapshot write``: one epoch's commit of N changed keys: encoding their
  states into change sets (``encode_epoch``, on the flow's thread) and writing
  them (``RecoveryStore.commit``, on the committer's thread in a run), timed
  apart. Each round is the next epoch of one store, rewriting the same keys, so
  GC and (untimed) compaction run as in a run.
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

from fastflow._runtime.snapshot import encode_epoch
from fastflow._store.store import RecoveryStore

pytest.importorskip("pytest_benchmark")

STEP = "keyed_sum.sum"


class _Changed:
    """What a stateful node hands over at an epoch's end: every key changed."""

    step_id = STEP

    def __init__(self, keys: int) -> None:
        self.states = {f"k{i}": i for i in range(keys)}

    def changes(self):
        return self.states, dict.fromkeys(self.states, True)


@pytest.mark.parametrize("keys", [100_000, 1_000_000])
def test_snapshot_encode(benchmark, keys):
    benchmark.group = "snapshot encode: one epoch's changed keys, on the flow's thread"
    node = _Changed(keys)
    benchmark.pedantic(encode_epoch, ([(0, node)], 1), rounds=5, warmup_rounds=1)
    benchmark.extra_info["keys"] = keys


@pytest.mark.parametrize("keys", [100_000, 1_000_000])
def test_snapshot_write(benchmark, tmp_path, keys):
    benchmark.group = "snapshot write: one epoch's commit, on the committer's thread"
    api = load("fastflow")
    api.init_db_dir(tmp_path, 1)
    changes = encode_epoch([(0, _Changed(keys))], 1)
    epoch = iter(range(1, 1_000_000))
    with RecoveryStore.open(tmp_path) as store:
        store.start_execution(worker_count=1)

        def commit() -> None:
            e = next(epoch)
            store.commit(e, [0], changes, gc_before=e - 1)

        def compact() -> None:  # as the committer does after a commit; untimed
            store.compact(0)

        commit()
        benchmark.pedantic(commit, setup=compact, rounds=5)
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

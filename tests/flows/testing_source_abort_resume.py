"""Resuming after TestingSource.ABORT continues with the batches Bytewax gives.

First at the partition level: read ``[0, 1, 2, ABORT, 3, 4]`` two at a time,
keep the resume state after ``[0, 1]``, read on until the abort, then build
the partition again from that resume state (the marker has fired, so it is
skipped). Then end to end: the flow runs twice with recovery on and a
snapshot every epoch; the second execution resumes after the first aborted.
"""

import tempfile
from datetime import timedelta

import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.inputs import AbortExecution
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSource, run_main


def read(part, label):
    while True:
        try:
            print(f"{label}: {part.next_batch()}")
        except StopIteration:
            print(f"{label}: end")
            return
        except AbortExecution:
            print(f"{label}: abort")
            return


items = [0, 1, 2, TestingSource.ABORT(), 3, 4]
source = TestingSource(items, batch_size=2)
part = source.build_part("inp", "iterable", None)
print(f"first: {part.next_batch()}")
resume_state = part.snapshot()
read(part, "first")
read(source.build_part("inp", "iterable", resume_state), "resumed")
read(source.build_part("inp", "iterable", resume_state), "resumed again")


def build(label, items):
    def show(batch):
        print(f"{label}: {batch}")
        return batch

    flow = Dataflow("abort_resume")
    s = op.input("inp", flow, TestingSource(items, batch_size=2))
    op.inspect("seen", op.flat_map_batch("show", s, show), lambda _id, _item: None)
    return flow


for items in ([0, 1, 2, TestingSource.ABORT(), 3, 4], [0, 1, TestingSource.ABORT(), 2, 3, 4]):
    with tempfile.TemporaryDirectory() as db_dir:
        init_db_dir(db_dir, 1)
        config = RecoveryConfig(db_dir)
        run_main(build("run", items), epoch_interval=timedelta(0), recovery_config=config)
        run_main(build("resumed run", items), epoch_interval=timedelta(0), recovery_config=config)

flow = Dataflow("abort_resume")
op.output("out", op.input("inp", flow, TestingSource(["done"])), StdOutSink())

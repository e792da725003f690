"""Names every doctest in the package may use without importing them."""

import pytest


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import fastflow.operators as op
    from fastflow.dataflow import Dataflow
    from fastflow.testing import TestingSink, TestingSource, run_main

    doctest_namespace.update(
        op=op, Dataflow=Dataflow, TestingSource=TestingSource, TestingSink=TestingSink,
        run_main=run_main,
    )

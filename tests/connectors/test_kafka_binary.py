"""The standalone binary and the Kafka connector: in it, or saying clearly that it is not.

packaging/fastflow.spec bundles fastflow.connectors.kafka with confluent-kafka when the
build venv (.build-venv) has confluent-kafka, and otherwise only the package's
``__init__``, whose ImportError says the executable was built without it. This check
reuses test_binary's fixtures (the binary is built once per session, only when stale)
and costs one run of the binary.
"""

from __future__ import annotations

import subprocess

from _binary import ROOT, Sandbox, binary, pytestmark, sandbox  # noqa: F401 - fixtures

BUILD_PYTHON = ROOT / ".build-venv" / "bin" / "python"

FLOW = """
import fastflow.operators as op
from fastflow.connectors.kafka import KafkaSource
from fastflow.connectors.kafka import operators as kop
from fastflow.dataflow import Dataflow
from fastflow.testing import TestingSource

flow = Dataflow("kafka_loaded")
op.inspect("show", op.input("inp", flow, TestingSource([KafkaSource.__name__, kop.__name__])))
"""


def _build_venv_has_confluent_kafka() -> bool:
    probe = subprocess.run([str(BUILD_PYTHON), "-c", "import confluent_kafka"],
                           capture_output=True)
    return probe.returncode == 0


def test_binary_has_the_kafka_connector_or_says_it_was_built_without(
    sandbox: Sandbox,  # noqa: F811
) -> None:
    sandbox.write("flow.py", FLOW)
    proc = sandbox.run(sandbox.exe, "run", "flow.py")
    if _build_venv_has_confluent_kafka():
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (
            "kafka_loaded.show: 'KafkaSource'\n"
            "kafka_loaded.show: 'fastflow.connectors.kafka.operators'\n"
        )
        return
    message = (
        "fastflow.connectors.kafka needs the confluent-kafka package, which is missing: this "
        "fastflow executable was built without it; rebuild it with confluent-kafka installed "
        "in the build venv (see docs/connectors.md), or use the Python package"
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (
        f"fastflow run: error: importing 'flow.py' raised ImportError: {message}"
    )

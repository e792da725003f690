"""Tracing: spans reach a real OTLP/HTTP endpoint started here (issue 18).

The endpoint is a plain HTTP server on 127.0.0.1 that decodes what it receives with
opentelemetry-proto (``ExportTraceServiceRequest``), as a collector would.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

FASTFLOW = shutil.which("fastflow", path=str(Path(sys.executable).parent)) or "fastflow"

TRACED = """
import os
from bytewax.tracing import OtlpTracingConfig, setup_tracing
import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

tracer = setup_tracing(OtlpTracingConfig(service_name="traced", url=os.environ["OTLP_URL"]))

flow = Dataflow("traced")
keyed = op.key_on("k", op.input("inp", flow, TestingSource(range(40), 4)), lambda i: str(i % 7))
op.output("out", op.stateful_map("sum", keyed, lambda s, i: ((s or 0) + i, i)), StdOutSink())
"""


class Span:
    def __init__(self, span: Any, service: str) -> None:
        self.name = span.name
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent = span.parent_span_id.hex()
        self.service = service
        self.attributes: Dict[str, Any] = {}
        for kv in span.attributes:
            value = kv.value
            self.attributes[kv.key] = getattr(value, value.WhichOneof("value"))


class Collector:
    """An OTLP/HTTP traces endpoint: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: List[Span] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(a.value.string_value for a in resource_spans.resource.attributes
                                   if a.key == "service.name")
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend(Span(s, service) for s in scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> List[Span]:
        return [span for span in self.spans if span.name == name]


@pytest.fixture
def collector() -> Iterator[Collector]:
    served = Collector()
    yield served
    served.server.shutdown()
    served.server.server_close()


def run(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTFLOW_")}
    return subprocess.run([FASTFLOW, "run", "flow.py", *args], cwd=tmp_path, text=True,
                          capture_output=True, timeout=300, env={**env, "OTLP_URL": url})


@pytest.mark.parametrize("args", [[], ["-p", "2"], ["--ray", "-p", "2"]],
                         ids=["1 process", "-p 2", "--ray -p 2"])
def test_a_runs_spans_are_one_trace_run_resume_epochs_commits_batches(tmp_path, collector,
                                                                       args):
    (tmp_path / "flow.py").write_text(TRACED)
    subprocess.run([FASTFLOW, "init-recovery", "db", "1"], cwd=tmp_path, check=True)
    done = run(tmp_path, collector.url, "-r", "db", "-s", "0.05", *args)
    assert (done.returncode, done.stderr) == (0, "")
    (root,) = collector.named("run")
    assert root.parent == "" and root.service == "traced"
    assert root.attributes["flow_id"] == "traced"
    assert {span.trace_id for span in collector.spans} == {root.trace_id}
    (resume,) = collector.named("resume")
    assert (resume.parent, resume.attributes["epoch"], resume.attributes["keys"]) == (
        root.span_id, 1, 0)
    epochs = collector.named("epoch")
    assert epochs and all(epoch.parent == root.span_id for epoch in epochs)
    numbers = sorted(epoch.attributes["epoch"] for epoch in epochs)
    assert numbers == list(range(1, len(numbers) + 1))
    commits = {span.parent: span for span in collector.named("commit")}
    for epoch in epochs:  # each epoch has its commit as a child, with the same figures
        commit = commits[epoch.span_id]
        for name in ("epoch", "keys", "bytes"):
            assert commit.attributes[name] == epoch.attributes[name]
    assert sum(e.attributes["keys"] for e in epochs) > 0
    batches = collector.named("batch")
    assert all(batch.parent == root.span_id for batch in batches)
    steps = {batch.attributes["step_id"] for batch in batches}
    assert steps == {"traced.k.flat_map_batch", "traced.sum.stateful_batch", "traced.out"}
    assert all(batch.attributes["items"] > 0 for batch in batches)
    processes = {batch.attributes["process"] for batch in batches}
    assert processes == ({0, 1} if args else {0})  # both processes' spans: the same trace


def test_a_resume_span_says_what_was_loaded(tmp_path, collector):
    (tmp_path / "flow.py").write_text(TRACED)
    subprocess.run([FASTFLOW, "init-recovery", "db", "1"], cwd=tmp_path, check=True)
    assert run(tmp_path, collector.url, "-r", "db").returncode == 0
    collector.spans.clear()
    assert run(tmp_path, collector.url, "-r", "db").returncode == 0
    (resume,) = collector.named("resume")
    assert (resume.attributes["epoch"], resume.attributes["keys"]) == (2, 8)  # 7 keys, 1 part


def test_jaeger_config_sends_otlp_too(tmp_path, collector):
    host_port = collector.url.split("/")[2]
    (tmp_path / "flow.py").write_text(TRACED.replace(
        'OtlpTracingConfig(service_name="traced", url=os.environ["OTLP_URL"])',
        'JaegerConfig(service_name="traced", endpoint=os.environ["OTLP_URL"])').replace(
        "import OtlpTracingConfig,", "import JaegerConfig,"))
    done = run(tmp_path, f"http://{host_port}")  # no path: /v1/traces is the default
    assert done.returncode == 0, done.stderr
    assert len(collector.named("run")) == 1


def test_tracing_without_the_extra_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "flow.py").write_text(TRACED)
    hide = ("import sys; sys.modules['opentelemetry'] = None; "
            "from fastflow.cli import main; sys.exit(main())")
    done = subprocess.run([sys.executable, "-c", hide, "run", "flow.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OTLP_URL": "http://127.0.0.1:9/v1/traces"})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "fastflow run: error: tracing needs the fastflow[tracing] extra (opentelemetry-sdk "
        "and its OTLP exporter), which is not installed: pip install 'fastflow[tracing]' "
        "(opentelemetry)\n")

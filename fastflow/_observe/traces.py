"""The spans of a run, on OpenTelemetry (the ``fastflow[tracing]`` extra).

The ``fastflow run`` process makes the ``run`` span and, as they happen, the
``resume``, each ``epoch`` (from the end of the previous one's cut to its commit) with
its ``commit`` as a child. Every process samples step batches (``Meter.sample_from_now``:
about one per step, worker and second), as children of the run span: a worker process
is handed the run span's ids, so all spans of a run are one trace. Spans are batched
and sent over OTLP/HTTP; each process flushes its own before it exits.

Each process has its own ``TracerProvider`` (not OpenTelemetry's global one): a forked
process must not use the exporting thread of its parent, which did not fork with it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

if TYPE_CHECKING:
    from fastflow._observe.tracing_config import TracingConfig
    from fastflow._runtime.worker import Workers

SCOPE = "fastflow"
EXPORT_SECONDS = 5.0
"""How long one export may take: an unreachable collector must not hold up a run's end."""


def _provider(config: TracingConfig, process: int) -> TracerProvider:
    resource = Resource.create({"service.name": config.service_name,
                                "fastflow.process": process})
    provider = TracerProvider(resource=resource,
                              sampler=ParentBased(TraceIdRatioBased(config.sampling_ratio)))
    exporter = OTLPSpanExporter(endpoint=config.otlp_url(), timeout=EXPORT_SECONDS)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _wall_ns(perf: float) -> int:
    """A ``perf_counter`` time as Unix nanoseconds."""
    return time.time_ns() - int((time.perf_counter() - perf) * 1e9)


@dataclass(frozen=True)
class ParentSpan:
    """The run span's ids, handed to worker processes (picklable)."""

    trace_id: int
    span_id: int
    flags: int

    def context(self) -> Any:
        """An OpenTelemetry context whose current span is the (remote) run span."""
        remote = SpanContext(self.trace_id, self.span_id, is_remote=True,
                             trace_flags=TraceFlags(self.flags))
        return trace.set_span_in_context(trace.NonRecordingSpan(remote))


class _Spans:
    """A process's provider, and the context its spans are children of."""

    def __init__(self, config: TracingConfig, process: int) -> None:
        self.config = config
        self._provider = _provider(config, process)
        self.tracer = self._provider.get_tracer(SCOPE)
        self.process = process
        self.context: Any = None

    def span(self, name: str, start_ns: int, end_ns: int, attributes: Mapping[str, Any],
             context: Any = None) -> Any:
        """A finished span from ``start_ns`` to ``end_ns``; returns it (for children)."""
        span = self.tracer.start_span(name, context=context or self.context,
                                      attributes=dict(attributes), start_time=start_ns)
        span.end(end_time=end_ns)
        return span

    def sample_batches(self, workers: Workers) -> None:
        """Sample the batches of every step of ``workers``."""
        for worker in workers.workers:
            index = worker.clock.worker_index
            for node in worker.nodes:
                node.meter.sample_from_now(self._sampler(node.step_id, index))

    def _sampler(self, step_id: str, worker: int) -> Any:
        def sample(items: int, started: float, seconds: float) -> None:
            start = _wall_ns(started)
            self.span("batch", start, start + int(seconds * 1e9),
                      {"step_id": step_id, "worker_index": worker, "items": items,
                       "process": self.process})

        return sample

    def close(self) -> None:
        """Send every span not sent yet, and stop."""
        self._provider.force_flush(int(EXPORT_SECONDS * 1000))
        self._provider.shutdown()


class RunTracer(_Spans):
    """The spans of the ``fastflow run`` process: the run, resume, epochs and commits."""

    def __init__(self, config: TracingConfig, attributes: Mapping[str, Any]) -> None:
        super().__init__(config, 0)
        self._run = self.tracer.start_span("run", attributes=dict(attributes))
        self.context = trace.set_span_in_context(self._run)
        self._epoch_began: dict[int, int] = {}
        self._first_epoch_began = time.time_ns()
        ids = self._run.get_span_context()
        self.parent = ParentSpan(ids.trace_id, ids.span_id, int(ids.trace_flags))

    def resumed(self, epoch: int, keys: int, seconds: float) -> None:
        """The ``resume`` span: loading the state."""
        end = time.time_ns()
        self.span("resume", end - int(seconds * 1e9), end, {"epoch": epoch, "keys": keys})
        self._first_epoch_began = end

    def encoded(self, epoch: int) -> None:
        """``epoch``'s cut is taken: the next epoch begins."""
        self._epoch_began[epoch + 1] = time.time_ns()

    def committed(self, epoch: int, seconds: float, size: int, keys: int,
                  encode_seconds: float | None) -> None:
        """The ``epoch`` span, ending now, and its ``commit`` child."""
        end = time.time_ns()
        began = self._epoch_began.pop(epoch, self._first_epoch_began)
        attributes = {"epoch": epoch, "keys": keys, "bytes": size}
        epoch_span = self.span("epoch", min(began, end), end, attributes)
        self.span("commit", end - int(seconds * 1e9), end,
                  {**attributes, "encode_seconds": encode_seconds or 0.0,
                   "write_seconds": seconds},
                  context=trace.set_span_in_context(epoch_span))

    def finish(self, error: str | None) -> None:
        """End the run span (with the error, if it failed) and flush."""
        if error is not None:
            self._run.set_status(Status(StatusCode.ERROR, error))
        self._run.end()
        self.close()


class ChildTracer(_Spans):
    """A worker process's spans: sampled batches, children of the run span."""

    def __init__(self, config: TracingConfig, parent: ParentSpan, process: int) -> None:
        super().__init__(config, process)
        self.context = parent.context()

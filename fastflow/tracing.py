"""Send a run's traces to Jaeger or any OpenTelemetry collector (``bytewax.tracing``).

Call :func:`setup_tracing` in the flow file, as with Bytewax::

    from fastflow.tracing import OtlpTracingConfig, setup_tracing

    tracer = setup_tracing(OtlpTracingConfig(service_name="my-flow",
                                             url="http://127.0.0.1:4318/v1/traces"))

Spans are exported over OTLP/HTTP (``opentelemetry-sdk`` and its OTLP exporter: the
``fastflow[tracing]`` extra). The run is one trace: a ``run`` span, the ``resume``, one
``epoch`` span per epoch with its ``commit`` as a child, and sampled step batches (about
one per step, worker and second); under ``-p N`` and Ray the processes' spans join the
same trace. docs/observability.md shows how to send them to Jaeger.
"""

from __future__ import annotations

from fastflow._observe.tracing_config import (
    JaegerConfig,
    OtlpTracingConfig,
    TracingConfig,
    TracingUnavailable,
    remember,
)

__all__ = [
    "JaegerConfig",
    "OtlpTracingConfig",
    "TracingConfig",
    "TracingUnavailable",
    "setup_tracing",
]


class Tracer:
    """What :func:`setup_tracing` returns; keep it (Bytewax's handle), or ignore it."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config


def setup_tracing(
    tracing_config: TracingConfig | None = None, log_level: str | None = None
) -> Tracer:
    """Trace the run of this process's flow, sending spans as ``tracing_config`` says.

    ``log_level`` (``"DEBUG"``, ``"INFO"``...), if given, is the level of fastflow's own
    log messages, as ``fastflow run --log-level``. Raises :class:`TracingUnavailable`
    if the ``fastflow[tracing]`` extra is missing.
    """
    config = tracing_config or OtlpTracingConfig(service_name="fastflow")
    if not 0.0 <= config.sampling_ratio <= 1.0:
        raise ValueError(f"sampling_ratio must be from 0 to 1; got {config.sampling_ratio!r}")
    try:
        from fastflow._observe import traces  # noqa: F401 - fails without the extra
    except ImportError as ex:
        raise TracingUnavailable(
            "tracing needs the fastflow[tracing] extra (opentelemetry-sdk and its OTLP "
            f"exporter), which is not installed: pip install 'fastflow[tracing]' ({ex.name})"
        ) from None
    if log_level is not None:
        from fastflow._observe.logs import configure
        from fastflow._observe.options import parse_level

        configure(parse_level(log_level, "setup_tracing(log_level=...)"))
    remember(config)
    return Tracer(config)

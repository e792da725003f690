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

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "JaegerConfig",
    "OtlpTracingConfig",
    "TracingConfig",
    "TracingUnavailable",
    "setup_tracing",
]

DEFAULT_OTLP_URL = "http://127.0.0.1:4318/v1/traces"
_TRACES_PATH = "/v1/traces"
_OTLP_HTTP_PORT = 4318


_configured: TracingConfig | None = None


class TracingUnavailable(ImportError):
    """Tracing needs the ``fastflow[tracing]`` extra, which is not installed."""


class TracingConfig:
    """Base of the tracing configurations."""

    service_name: str
    sampling_ratio: float

    def otlp_url(self) -> str:
        """The OTLP/HTTP URL the spans are sent to."""
        raise NotImplementedError


def _http_url(text: str) -> str:
    """An OTLP/HTTP traces URL from what a user wrote (Bytewax's defaults were gRPC).

    ``host:port`` or a ``grpc://`` URL, or port 4317 (OTLP/gRPC) or 6831 (the Jaeger
    agent) become the same host's OTLP/HTTP port 4318; an empty path becomes
    ``/v1/traces``.
    """
    parts = urlsplit(text if "://" in text else f"http://{text}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port
    if parts.scheme not in ("http", "https") or port in (4317, 6831, 6832, 14250):
        port = _OTLP_HTTP_PORT
    scheme = parts.scheme if parts.scheme in ("http", "https") else "http"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or _TRACES_PATH, parts.query, ""))


@dataclass(frozen=True)
class OtlpTracingConfig(TracingConfig):
    """Send spans to an OpenTelemetry collector (or Jaeger, Tempo...) over OTLP/HTTP."""

    service_name: str
    url: str | None = None
    """The collector's OTLP/HTTP traces URL (default ``http://127.0.0.1:4318/v1/traces``)."""
    sampling_ratio: float = 1.0
    """Share of traces kept, 0 to 1."""

    def otlp_url(self) -> str:
        """``url``, as an OTLP/HTTP URL."""
        return DEFAULT_OTLP_URL if self.url is None else _http_url(self.url)


@dataclass(frozen=True)
class JaegerConfig(TracingConfig):
    """Send spans to Jaeger, which accepts OTLP (on port 4318 for HTTP)."""

    service_name: str
    endpoint: str | None = None
    """Jaeger's host and port; an agent's (``host:6831``) means the same host's OTLP port."""
    sampling_ratio: float = 1.0
    """Share of traces kept, 0 to 1."""

    def otlp_url(self) -> str:
        """Jaeger's OTLP/HTTP traces URL."""
        return DEFAULT_OTLP_URL if self.endpoint is None else _http_url(self.endpoint)


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
    global _configured
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
    _configured = config
    return Tracer(config)


def configured() -> TracingConfig | None:
    """The configuration :func:`setup_tracing` was given in this process, if it was called."""
    return _configured

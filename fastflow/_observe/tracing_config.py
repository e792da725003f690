"""The tracing configurations of ``fastflow.tracing`` (Bytewax's names), and the one in force.

Why here and not in the public module: the observing layer reads them, and the public
module (``fastflow.tracing``, which sets them up) imports that layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_OTLP_URL = "http://127.0.0.1:4318/v1/traces"
_TRACES_PATH = "/v1/traces"
_OTLP_HTTP_PORT = 4318


_configured: TracingConfig | None = None
"""What ``setup_tracing`` was given in this process (None: tracing is off)."""


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


def configured() -> TracingConfig | None:
    """The configuration :func:`fastflow.tracing.setup_tracing` was given here, if any."""
    return _configured


def remember(config: TracingConfig) -> None:
    """Make ``config`` this process's tracing configuration."""
    global _configured
    _configured = config

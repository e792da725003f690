"""The dataflow API: ``/metrics``, ``/dataflow``, ``/status`` and the dashboard page at ``/``.

A stdlib ``ThreadingHTTPServer`` on a daemon thread: each request runs one of the three
callables it was given, on its own thread, while the flow runs on the main thread. It
binds 127.0.0.1 unless told otherwise (docs/observability.md says why).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"

_POLL_SECONDS = 0.02
"""How often the server's loop checks whether it is to stop."""


@dataclass(frozen=True)
class ApiSources:
    """What the routes serve, each computed when asked."""

    status: Callable[[], dict[str, Any]]
    dataflow: Callable[[], dict[str, Any]]
    metrics: Callable[[], bytes]


def _page() -> bytes | None:
    try:
        return resources.files("fastflow._observe").joinpath("dashboard.html").read_bytes()
    except (FileNotFoundError, OSError):
        return None


class _Handler(BaseHTTPRequestHandler):
    sources: ApiSources  # set on the subclass made for each server

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, PROMETHEUS_TEXT, self.sources.metrics())
            elif path in ("/status", "/dataflow"):
                document = self.sources.status() if path == "/status" else self.sources.dataflow()
                self._send(200, "application/json", json.dumps(document).encode())
            elif path in ("/", "/index.html") and (page := _page()) is not None:
                self._send(200, "text/html; charset=utf-8", page)
            else:
                self._send(404, "text/plain", b"not found\n")
        except Exception as ex:  # a figure that failed to read must not kill the server
            self._send(500, "text/plain", f"{type(ex).__name__}: {ex}\n".encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        """Requests are not logged: the flow's stderr is the user's."""


class ApiServer:
    """The running server; :meth:`close` stops it."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        # Shutting down waits for the loop's next look at its flag: poll often, so the end
        # of a run is not delayed (the default, 0.5 s, added that much to every run).
        self._thread = threading.Thread(target=server.serve_forever, args=(_POLL_SECONDS,),
                                        name="fastflow-api", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on (the port chosen, if 0 was asked)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_api(host: str, port: int, sources: ApiSources) -> ApiServer:
    """Serve ``sources`` on ``host:port``; raises ``OSError`` if the port cannot be bound."""
    handler = type("Handler", (_Handler,), {"sources": sources})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return ApiServer(server)

"""One observed run of ``fastflow run``: install the observer, serve the API, and tidy up.

``fastflow run`` opens a :class:`ObservedRun` after the flow is built and before it
starts: a port in use fails here, before anything ran. When the run ends the observer
says how (``finished`` or ``failed``), the API keeps serving for the linger asked for,
then stops.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fastflow import _hooks as hooks
from fastflow._observe.observer import Observer, RunInfo
from fastflow._observe.options import ObserveOptions
from fastflow._runtime.plan import flatten

if TYPE_CHECKING:
    from fastflow._observe.api import ApiServer
    from fastflow.dataflow import Dataflow

log = logging.getLogger("fastflow.run")


class ApiUnavailable(OSError):
    """The API's address cannot be listened on (a port in use, a host not ours)."""


class ObservedRun:
    """The observer and API of a run, for the ``with`` block the run happens in."""

    def __init__(
        self,
        flow: Dataflow,
        options: ObserveOptions,
        *,
        processes: int,
        workers_per_process: int,
        interval: timedelta,
        store: Path | None,
        child_setup: Any = None,
        progress: bool = False,
        describe: Callable[[Dataflow], str] | None = None,
    ) -> None:
        """Describe the run; nothing starts until the ``with`` block is entered.

        ``progress``: ``--progress`` shows the processes' figures, so they are collected
        even without the API. ``describe`` renders the flow as ``/dataflow``'s JSON
        (``visualize.to_json``, handed in: this layer does not import the public modules).
        """
        self._describe = describe
        plan = flatten(flow)
        self.observer = Observer(
            RunInfo(flow.flow_id, {step.step_id: step.kind for step in plan}, processes,
                    workers_per_process, interval.total_seconds(), store),
            child_setup, collect=options.api is not None or progress,
        )
        self._flow = flow
        self._options = options
        self._server: ApiServer | None = None
        self._previous: hooks.RunHooks | None = None

    def __enter__(self) -> ObservedRun:
        """Serve the API (if asked for) and install the observer."""
        if self._options.api is not None:
            self._serve(*self._options.api)
        self._trace()
        if "prometheus_client" in sys.modules:  # the flow has metrics of its own
            from fastflow._observe.usermetrics import pickle_metrics_by_name

            pickle_metrics_by_name()
        self._previous = hooks.install(self.observer)
        self.observer.started()
        return self

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the API listens (the port chosen, if 0 was asked); None without it."""
        return None if self._server is None else self._server.address

    def _trace(self) -> None:
        """Start the run span, if the flow called ``setup_tracing``."""
        from fastflow._observe.tracing_config import configured

        config = configured()
        if config is not None:
            from fastflow._observe.traces import RunTracer

            info = self.observer.info
            self.observer.tracer = RunTracer(config, {
                "flow_id": info.flow_id, "processes": info.processes,
                "workers_per_process": info.workers_per_process,
            })

    def _serve(self, host: str, port: int) -> None:
        """Start the API (imported only now: a run without it does not load it)."""
        from fastflow._observe.api import ApiSources, start_api
        from fastflow._observe.metrics import exposition
        from fastflow._observe.status import StatusView
        dataflow = json.loads(self._describe(self._flow)) if self._describe else {}
        prefix = self._options.metrics_prefix
        sources = ApiSources(
            status=StatusView(self.observer).status,
            dataflow=lambda: dataflow,
            metrics=lambda: exposition(self.observer, prefix),
        )
        try:
            self._server = start_api(host, port, sources)
        except OSError as ex:
            raise ApiUnavailable(
                f"--api: cannot listen on {host}:{port}: {ex.strerror or ex}"
            ) from None
        host, port = self._server.address
        log.info("dataflow API at http://%s:%d/ (/metrics, /dataflow, /status)", host, port)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record how the run ended, linger if asked, and stop serving."""
        from fastflow._tracebacks import one_line

        if self._previous is not None:
            hooks.install(self._previous)
        self.observer.finished(None if error is None else one_line(error))
        if self._server is not None:
            if self._options.linger > 0 and not isinstance(error, KeyboardInterrupt):
                try:
                    time.sleep(self._options.linger)
                except KeyboardInterrupt:  # the run is over: Ctrl-C only ends the linger
                    pass
            self._server.close()

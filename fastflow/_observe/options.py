"""The observability options of ``fastflow run``, with their environment variables.

``--api``, ``--api-linger``, ``--metrics-prefix`` and ``--log-level``.

They are checked after parsing (not by argparse), so a bad value is one line on stderr
and exit code 2, like every other bad input of ``fastflow run``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass

DEFAULT_PORT = 3030
DEFAULT_PREFIX = "fastflow"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_PREFIX = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class BadOption(ValueError):
    """A bad value of an observability option; the message is the one line to print."""


@dataclass(frozen=True)
class ObserveOptions:
    """What ``fastflow run`` was asked to observe."""

    api: tuple[str, int] | None
    """Host and port to serve the dataflow API on; None: no API."""
    linger: float
    """Seconds to keep serving after the flow ended."""
    metrics_prefix: str
    log_level: int | None
    """The level asked for; None: not asked (fastflow's WARNINGs show as Python shows them)."""


def add_observe_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options (values are checked by :func:`resolve`)."""
    group = parser.add_argument_group(
        "observability", "see inside a running flow (docs/observability.md)")
    group.add_argument(
        "--api", nargs="?", const=str(DEFAULT_PORT), metavar="[HOST:]PORT",
        help=f"serve /metrics, /dataflow and /status over HTTP while the flow runs, on "
        f"127.0.0.1 unless HOST is given (default port {DEFAULT_PORT}) [env "
        "FASTFLOW_DATAFLOW_API_ENABLED, FASTFLOW_DATAFLOW_API_PORT; BYTEWAX_DATAFLOW_API_* too]",
    )
    group.add_argument(
        "--api-linger", metavar="SECONDS",
        help="keep serving the API this long after the flow ended, so its final /status "
        "can be read (default: 0) [env FASTFLOW_DATAFLOW_API_LINGER]",
    )
    group.add_argument(
        "--metrics-prefix", metavar="PREFIX",
        help=f"prefix of fastflow's metric names; `bytewax` serves Bytewax's names for "
        f"existing dashboards (default: {DEFAULT_PREFIX}) [env FASTFLOW_METRICS_PREFIX]",
    )
    group.add_argument(
        "--log-level", metavar="LEVEL",
        help="log fastflow's own messages at LEVEL and above to stderr: DEBUG, INFO, "
        "WARNING, ERROR or CRITICAL (default: WARNING) [env FASTFLOW_LOG_LEVEL]",
    )


def _env(*names: str) -> tuple[str, str] | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return name, value
    return None


def parse_address(text: str, what: str = "--api") -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> host and port."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise BadOption(f"{what}: {text!r} is not [HOST:]PORT with PORT from 0 to 65535")
    return host, int(port)


def _api(given: str | None) -> tuple[str, int] | None:
    if given is not None:
        return parse_address(given)
    enabled = _env("FASTFLOW_DATAFLOW_API_ENABLED", "BYTEWAX_DATAFLOW_API_ENABLED")
    if enabled is None or enabled[1].strip().lower() not in _TRUE:
        return None
    port = _env("FASTFLOW_DATAFLOW_API_PORT", "BYTEWAX_DATAFLOW_API_PORT")
    if port is None:
        return "127.0.0.1", DEFAULT_PORT
    return parse_address(port[1], f"environment variable {port[0]}")


def _linger(given: str | None) -> float:
    where = "--api-linger"
    if given is None:
        env = _env("FASTFLOW_DATAFLOW_API_LINGER")
        if env is None:
            return 0.0
        where, given = f"environment variable {env[0]}", env[1]
    try:
        seconds = float(given)
    except ValueError:
        raise BadOption(f"{where}: {given!r} is not a number of seconds") from None
    if not seconds >= 0:
        raise BadOption(f"{where}: {given!r} must not be negative")
    return seconds


def _prefix(given: str | None) -> str:
    where = "--metrics-prefix"
    if given is None:
        env = _env("FASTFLOW_METRICS_PREFIX")
        if env is None:
            return DEFAULT_PREFIX
        where, given = f"environment variable {env[0]}", env[1]
    if not _PREFIX.fullmatch(given):
        raise BadOption(f"{where}: {given!r} is not a metric name prefix (letters, digits, _)")
    return given


def parse_level(given: str | None, where: str = "--log-level") -> int | None:
    """A level name (any case) -> its number; None -> FASTFLOW_LOG_LEVEL, else None."""
    if given is None:
        env = _env("FASTFLOW_LOG_LEVEL")
        if env is None:
            return None
        where, given = f"environment variable {env[0]}", env[1]
    name = given.strip().upper()
    if name not in LEVELS:
        raise BadOption(f"{where}: {given!r} is not a log level ({', '.join(LEVELS)})")
    return int(getattr(logging, name))


def resolve(args: argparse.Namespace) -> ObserveOptions:
    """The options as given, else from the environment, else the defaults."""
    return ObserveOptions(
        api=_api(args.api),
        linger=_linger(args.api_linger),
        metrics_prefix=_prefix(args.metrics_prefix),
        log_level=parse_level(args.log_level),
    )

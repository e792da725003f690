"""Joining a running Ray cluster within a bounded time (``fastflow run --ray ADDRESS``).

Why: ``ray.init`` retries an address where nothing answers for minutes, printing Ray's
own warnings meanwhile. So the address is first tried with a plain TCP connection (an
address where nothing listens fails at once, with one line), and ``ray.init`` itself
runs in a daemon thread that is abandoned after the timeout (``--ray-timeout``).
"""

from __future__ import annotations

import socket
import threading
from types import ModuleType
from typing import Any

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class NoAnswer(ConnectionError):
    """The cluster did not answer within the time allowed."""


def _host_port(address: str) -> tuple[str, int] | None:
    """Where ``address`` (``host:port`` or ``ray://host:port``) listens; None for ``auto``."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _reachable(ray: ModuleType, address: str, timeout: float) -> None:
    """Raise ``OSError`` if nothing accepts a TCP connection at ``address``.

    Ray reaches a loopback address at the node's own address; either will do.
    """
    target = _host_port(address)
    if target is None:
        return
    hosts = [target[0]]
    if target[0] in _LOOPBACK:
        hosts.append(str(ray.util.get_node_ip_address()))
    error: OSError | None = None
    for host in hosts:
        try:
            socket.create_connection((host, target[1]), timeout=timeout).close()
            return
        except OSError as ex:
            error = error or ex
    assert error is not None
    raise error


def join(ray: ModuleType, address: str, timeout: float, options: dict[str, Any]) -> None:
    """``ray.init(address=address, **options)``, giving up after ``timeout`` seconds."""
    try:
        _reachable(ray, address, timeout)
    except TimeoutError:
        raise NoAnswer(f"no answer within {timeout:g} s (--ray-timeout)") from None
    outcome: list[BaseException | None] = []

    def init() -> None:
        try:
            ray.init(address=address, **options)
            outcome.append(None)
        except BaseException as ex:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(ex)

    thread = threading.Thread(target=init, name="fastflow-ray-init", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise NoAnswer(f"no answer within {timeout:g} s (--ray-timeout)")
    if outcome[0] is not None:
        raise outcome[0]

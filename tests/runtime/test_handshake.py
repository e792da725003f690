"""The handshake that keeps strangers off the `--ray` links (`_runtime/distributed/handshake.py`).

Real TCP sockets on 127.0.0.1: a gate admits only connections proving the run's key; a
stranger that sends a pickle, garbage, the wrong proof or nothing at all is closed and
logged, the gate keeps waiting for the real peers, and nothing a stranger sent is decoded.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from fastflow._runtime.distributed.handshake import AuthenticationFailed, Gate, introduce, new_key


class Exploit:
    """What an attacker sends: unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0))


def admit_in_thread(gate: Gate, expected: set[int], timeout: float = 60
                    ) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["admitted"] = gate.admit(expected, timeout)
        except Exception as ex:  # reported to the test
            result["error"] = ex

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def peer(address: tuple[str, int], key: bytes, index: int) -> socket.socket:
    sock = socket.create_connection(address, timeout=30)
    introduce(sock, key, index, time.monotonic() + 30)
    return sock


def test_the_right_key_is_admitted_with_its_process_index() -> None:
    key = new_key()
    with listener() as server:
        thread, result = admit_in_thread(Gate(server, key, what="test listener"), {0, 1})
        ones = [peer(server.getsockname(), key, i) for i in (1, 0)]
        thread.join(60)
    admitted = result["admitted"]
    assert isinstance(admitted, dict) and sorted(admitted) == [0, 1]
    admitted[1].sendall(b"hello")
    assert ones[0].recv(5) == b"hello"  # the admitted socket is the one peer 1 opened
    for sock in [*ones, *admitted.values()]:
        sock.close()


def test_strangers_are_refused_and_logged_and_the_real_peer_still_gets_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = new_key()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Exploit(marker))
    with listener() as server:
        address = server.getsockname()
        gate = Gate(server, key, what="test listener", handshake_seconds=1.0)
        with caplog.at_level(logging.WARNING, logger="fastflow.cluster"):
            thread, result = admit_in_thread(gate, {0})
            # The old protocol: a process index, then a length-prefixed pickle.
            pickler = socket.create_connection(address)
            pickler.sendall(struct.pack("<I", 0) + struct.pack("!i", len(payload)) + payload)
            garbage = socket.create_connection(address)
            garbage.sendall(os.urandom(200))
            staller = socket.create_connection(address)  # sends nothing, keeps it open
            wrong = socket.create_connection(address)
            with pytest.raises((AuthenticationFailed, ConnectionError)):
                introduce(wrong, new_key(), 0, time.monotonic() + 30)
            real = peer(address, key, 0)
            thread.join(60)
        admitted = result["admitted"]
        assert isinstance(admitted, dict) and list(admitted) == [0]
    for sock in (pickler, garbage, staller, wrong, real, *admitted.values()):
        sock.close()
    assert not marker.exists()
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) >= 3
    for line in refusals:
        assert line.startswith("fastflow: refused a connection from 127.0.0.1:")
        assert " to the test listener: it " in line


def test_a_staller_does_not_hold_up_the_real_peer(caplog: pytest.LogCaptureFixture) -> None:
    key = new_key()
    with listener() as server:
        address = server.getsockname()
        gate = Gate(server, key, what="test listener", handshake_seconds=30.0)
        thread, result = admit_in_thread(gate, {0})
        staller = socket.create_connection(address)
        real = peer(address, key, 0)  # admitted while the staller's 30 s still run
        thread.join(20)
        assert not thread.is_alive()
        admitted = result["admitted"]
        assert isinstance(admitted, dict) and list(admitted) == [0]
    for sock in (staller, real, *admitted.values()):
        sock.close()


def test_a_listener_without_the_key_is_not_trusted_by_the_connecting_side() -> None:
    with listener() as server:
        thread, result = admit_in_thread(Gate(server, new_key(), what="impostor"), {0}, 1)
        sock = socket.create_connection(server.getsockname())
        with pytest.raises((AuthenticationFailed, ConnectionError)):
            introduce(sock, new_key(), 0, time.monotonic() + 30)
        sock.close()
        thread.join(60)
    assert isinstance(result["error"], TimeoutError)
    assert str(result["error"]) == "processes [0] did not connect to the impostor within 1 s"


def test_a_peer_that_can_no_longer_come_ends_the_wait_with_its_cause() -> None:
    """`--ray`: an actor that died before connecting is reported as dead, not as a timeout."""
    key = new_key()
    died = threading.Event()

    def check() -> None:
        if died.is_set():
            raise ConnectionAbortedError("process 1 died")

    with listener() as server:
        gate = Gate(server, key, what="test listener")
        result: dict[str, object] = {}

        def run() -> None:
            try:
                result["admitted"] = gate.admit({0, 1}, 600, check=check)
            except ConnectionAbortedError as ex:
                result["error"] = ex

        thread = threading.Thread(target=run)
        thread.start()
        one = peer(server.getsockname(), key, 0)
        died.set()
        thread.join(120)  # a hang guard: the gate asks every second, the timeout is 600 s
        one.close()
    assert not thread.is_alive()
    assert str(result["error"]) == "process 1 died"

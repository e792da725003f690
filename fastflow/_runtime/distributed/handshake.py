"""Proving that a TCP connection belongs to this run before anything it sends is decoded.

Why: the links of ``fastflow run --ray`` are TCP connections between nodes, and what they
carry is unpickled, so a stranger who connected first would run code. The driver makes a
random key per run (:func:`new_key`) and hands it to its actors through Ray (their
constructor's arguments); every connection then passes a mutual HMAC-SHA256
challenge-response with that key, as ``multiprocessing.connection``'s authkey handshake
does, before a single byte of it is decoded. Every message of the handshake has a fixed
size: what a stranger sends is compared, never parsed. The process index rides inside
the authenticated message and is read only once the proof checked out.

The listening side (:class:`Gate`) handles every pending handshake at once, each with a
short deadline, so a stranger that stalls, sends garbage or the wrong proof is closed and
logged while the real peers get in; it cannot kill or hang the run.

Not provided: confidentiality. Batches cross in clear text (docs/distributed.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import selectors
import socket
import struct
import time
from collections.abc import Callable

KEY_BYTES = 32
HANDSHAKE_SECONDS = 10.0
"""How long a connection that was accepted may take to prove itself."""
CHECK_SECONDS = 1.0
"""How often :meth:`Gate.admit` asks whether the peers it waits for can still come."""

_NONCE = 32
_INDEX = struct.Struct("<I")
_MAC = hashlib.sha256().digest_size
_CLAIM = _NONCE + _INDEX.size + _MAC  # the connecting side's nonce, index and proof

log = logging.getLogger("fastflow.cluster")


class AuthenticationFailed(ConnectionError):
    """The other end of a connection did not prove it knows the run's key."""


def new_key() -> bytes:
    """A fresh random key for one run."""
    return secrets.token_bytes(KEY_BYTES)


def _proof(key: bytes, role: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"fastflow/" + role + b"".join(parts), hashlib.sha256).digest()


def introduce(sock: socket.socket, key: bytes, index: int, deadline: float) -> None:
    """Prove that process ``index`` belongs to the run, and check that the listener does.

    ``sock`` is connected to a :class:`Gate`; ``deadline`` is a ``time.monotonic`` time.
    """
    peer = _name(sock.getpeername())
    challenge = _receive(sock, _NONCE, deadline, peer)
    nonce = secrets.token_bytes(_NONCE)
    packed = _INDEX.pack(index)
    sock.sendall(nonce + packed + _proof(key, b"client", challenge, nonce, packed))
    answer = _receive(sock, _MAC, deadline, peer)
    if not hmac.compare_digest(answer, _proof(key, b"server", nonce, challenge, packed)):
        raise AuthenticationFailed(f"{peer} did not prove it belongs to this run")
    sock.settimeout(None)


def _receive(sock: socket.socket, size: int, deadline: float, peer: str) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = sock.recv(size - len(data))
        except TimeoutError:
            raise TimeoutError(f"{peer} did not answer the run's handshake in time") from None
        if not chunk:
            raise ConnectionError(f"{peer} closed the connection during the handshake")
        data += chunk
    return data


def _name(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class _Pending:
    """A connection accepted but not yet proven."""

    def __init__(self, sock: socket.socket, peer: str, deadline: float) -> None:
        self.sock = sock
        self.peer = peer
        self.deadline = deadline
        self.challenge = secrets.token_bytes(_NONCE)
        self.claim = b""


class Gate:
    """A listening socket that lets through only connections proving they know the key."""

    def __init__(
        self, listener: socket.socket, key: bytes, *, what: str,
        handshake_seconds: float = HANDSHAKE_SECONDS,
    ) -> None:
        """Guard ``listener`` (``what`` it is, for the log) with ``key``."""
        self._listener = listener
        self._key = key
        self._what = what
        self._handshake_seconds = handshake_seconds

    def admit(
        self, expected: set[int], timeout: float, check: Callable[[], None] | None = None,
    ) -> dict[int, socket.socket]:
        """Wait for one proven connection from each process in ``expected``.

        Anything else that connects meanwhile is closed and logged. Raises
        ``TimeoutError`` if the expected processes are not all in after ``timeout``.
        ``check`` is called every ``CHECK_SECONDS`` and raises (the error ends the wait)
        once a peer can no longer come, e.g. it died: its cause, not a timeout, is reported.
        """
        deadline = time.monotonic() + timeout
        admitted: dict[int, socket.socket] = {}
        pending: dict[socket.socket, _Pending] = {}
        selector = selectors.DefaultSelector()
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ)
        try:
            while len(admitted) < len(expected):
                now = time.monotonic()
                for item in [p for p in pending.values() if p.deadline <= now]:
                    self._refuse(selector, pending, item, "sent no proof in time")
                if now >= deadline:
                    missing = sorted(expected - admitted.keys())
                    raise TimeoutError(
                        f"processes {missing} did not connect to the {self._what} "
                        f"within {timeout:g} s"
                    )
                if check is not None:
                    check()
                wake = min([deadline, *(p.deadline for p in pending.values())])
                if check is not None:
                    wake = min(wake, now + CHECK_SECONDS)
                for ready, _ in selector.select(max(0.0, wake - now)):
                    if ready.fileobj is self._listener:
                        self._accept(selector, pending)
                    else:
                        item = pending[ready.fileobj]  # type: ignore[index]
                        self._read(selector, pending, item, expected, admitted)
        except BaseException:
            for sock in admitted.values():
                sock.close()
            raise
        finally:
            for item in list(pending.values()):
                item.sock.close()
            selector.close()
        return admitted

    def _accept(self, selector: selectors.BaseSelector, pending: dict[socket.socket, _Pending]
                ) -> None:
        try:
            sock, address = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        item = _Pending(sock, _name(address), time.monotonic() + self._handshake_seconds)
        sock.setblocking(False)
        try:
            sock.send(item.challenge)  # a fresh connection's buffer always takes 32 bytes
        except OSError:
            sock.close()
            return
        pending[sock] = item
        selector.register(sock, selectors.EVENT_READ)

    def _read(
        self,
        selector: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        item: _Pending,
        expected: set[int],
        admitted: dict[int, socket.socket],
    ) -> None:
        try:
            chunk = item.sock.recv(_CLAIM - len(item.claim))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as ex:
            self._refuse(selector, pending, item, f"failed ({ex})")
            return
        if not chunk:
            self._refuse(selector, pending, item, "closed it before proving anything")
            return
        item.claim += chunk
        if len(item.claim) < _CLAIM:
            return
        nonce = item.claim[:_NONCE]
        packed = item.claim[_NONCE:_NONCE + _INDEX.size]
        proof = _proof(self._key, b"client", item.challenge, nonce, packed)
        if not hmac.compare_digest(item.claim[_NONCE + _INDEX.size:], proof):
            self._refuse(selector, pending, item, "did not prove it belongs to this run")
            return
        (index,) = _INDEX.unpack(packed)  # decoded only now that it is proven
        if index not in expected or index in admitted:
            self._refuse(selector, pending, item, f"claimed an unexpected process {index}")
            return
        selector.unregister(item.sock)
        del pending[item.sock]
        item.sock.setblocking(True)
        item.sock.settimeout(self._handshake_seconds)
        try:
            item.sock.sendall(_proof(self._key, b"server", nonce, item.challenge, packed))
        except OSError as ex:
            item.sock.close()
            log.warning("fastflow: lost the connection from %s to the %s: %s",
                        item.peer, self._what, ex)
            return
        item.sock.settimeout(None)
        admitted[index] = item.sock

    def _refuse(
        self,
        selector: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        item: _Pending,
        why: str,
    ) -> None:
        selector.unregister(item.sock)
        del pending[item.sock]
        item.sock.close()
        log.warning("fastflow: refused a connection from %s to the %s: it %s",
                    item.peer, self._what, why)

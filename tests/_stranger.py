"""A stranger on the machine attacking a `fastflow run --ray` (run by tests/test_ray_trust.py).

``python _stranger.py DRIVER_PID MARKER REPORT`` watches the driver and its descendants (the
local Ray it started, whose actors are ``ray::RayProcess``) for listening TCP sockets,
learning the ports the way any local user can, from /proc. It opens one silent probe to
each: fastflow's listeners speak first with their 32-byte challenge, or are silent until
their gate opens; Ray's gRPC servers (the only other listeners of those processes) speak
at once with a 46-byte HTTP/2 SETTINGS frame. Every listener that sent exactly the
challenge, or nothing within 50 ms, is then attacked again and again as the old
protocol's peers would: a process index and a pickle whose unpickling creates MARKER
(framed for the control channel and for the mesh), garbage, and connections that say
nothing and stay open. Ray's own ports get only the probes: Ray trusts its network, so
what a stranger does to them is Ray's business, not fastflow's. It runs until killed.

REPORT gets a line ``refused HOST:PORT`` for each attacking connection on which the
listener spoke first (the challenge) and then closed the connection after the stranger's
payload: proof that the stranger reached a live listener of fastflow's.
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import struct
import sys
import time


class Exploit:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def payloads(marker: str) -> list[bytes]:
    exploit = pickle.dumps(Exploit(marker))
    control = struct.pack("!i", len(exploit)) + exploit  # multiprocessing.Connection framing
    mesh = struct.pack("<BIHII", 1 | 0x20, 0, 0, 0, len(exploit)) + exploit  # a wire frame
    out = []
    for index in (0, 1):
        head = struct.pack("<I", index)
        out += [head + control, head + mesh]
    return [*out, os.urandom(512), b""]


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(name))
    return tree


def run_processes(driver: int) -> list[int]:
    """The driver and its descendants that are fastflow's actors."""
    tree, found, todo = children(), [driver], [driver]
    while todo:
        for child in tree.get(todo.pop(), []):
            todo.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    if cmdline.read().startswith(b"ray::RayProcess"):
                        found.append(child)
            except OSError:
                continue
    return found


def socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    return inodes


def listening(inodes: set[str]) -> set[tuple[str, int]]:
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as rows:
            for row in rows.readlines()[1:]:
                fields = row.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                host_hex, port_hex = fields[1].split(":")
                raw = b"".join(bytes.fromhex(host_hex[i:i + 8])[::-1]
                               for i in range(0, len(host_hex), 8))
                host = socket.inet_ntop(family, raw)
                if host in ("0.0.0.0", "::"):
                    host = "127.0.0.1" if family == socket.AF_INET else "::1"
                found.add((host, int(port_hex, 16)))
    return found


CHALLENGE = 32
GRACE_SECONDS = 0.05
"""How long a silent listener may take to speak before it counts as fastflow's (waited for
at once, so that the attacks still come before the real peers): fastflow's listeners are
silent until their gate opens, Ray's gRPC servers speak at once."""

Held = dict[socket.socket, tuple[tuple[str, int], bool, bytearray]]


def watch(held: Held, report: str) -> None:
    """Read what the listeners said; note those that spoke first, then hung up on us."""
    if not held:
        return
    readable, _, _ = select.select(list(held), [], [], 0)
    for sock in readable:
        address, attacked, heard = held[sock]
        try:
            chunk = sock.recv(4096)
        except OSError:
            chunk = b""
        if chunk:
            heard += chunk
            continue
        del held[sock]
        sock.close()
        if attacked and len(heard) == CHALLENGE:  # the challenge, and nothing else
            with open(report, "a") as out:
                out.write(f"refused {address[0]}:{address[1]}\n")


def connect(address: tuple[str, int], data: bytes) -> socket.socket | None:
    try:
        sock = socket.create_connection(address, timeout=1)
        sock.sendall(data)
    except OSError:
        return None
    return sock


class Prober:
    """Finds which listening addresses are fastflow's, with one silent probe each.

    A listener that sends exactly the challenge, or says nothing for ``GRACE_SECONDS``
    (a gate not open yet), is fastflow's; one that sends anything else is not (and is
    struck off even if it was taken for fastflow's while silent).
    """

    def __init__(self) -> None:
        self.fastflow: set[tuple[str, int]] = set()
        self._other: set[tuple[str, int]] = set()
        self._probes: dict[tuple[str, int], tuple[socket.socket, bytearray]] = {}

    def look(self, addresses: set[tuple[str, int]]) -> None:
        for address in addresses - self._other - self._probes.keys() - self.fastflow:
            sock = connect(address, b"")
            if sock is not None:
                select.select([sock], [], [], GRACE_SECONDS)  # give it time to speak
                self._probes[address] = (sock, bytearray())
        for address, (sock, heard) in list(self._probes.items()):
            closed = False
            while not closed and select.select([sock], [], [], 0)[0]:
                try:
                    chunk = sock.recv(4096)
                except OSError:
                    chunk = b""
                heard += chunk
                closed = not chunk
            if len(heard) > CHALLENGE or (closed and len(heard) not in (0, CHALLENGE)):
                self._other.add(address)  # a gRPC server's SETTINGS frame, say
                self.fastflow.discard(address)
            elif len(heard) in (0, CHALLENGE):
                self.fastflow.add(address)
            if closed or address in self._other:
                self._probes.pop(address)
                sock.close()


def main() -> None:
    driver, marker, report = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    attacks = payloads(marker)
    rounds: dict[tuple[str, int], int] = {}
    held: Held = {}
    prober = Prober()
    while True:
        watch(held, report)
        prober.look(listening(socket_inodes(run_processes(driver))))
        for address in prober.fastflow:
            if rounds.get(address, 0) >= 3:
                continue
            rounds[address] = rounds.get(address, 0) + 1
            for data in attacks:
                sock = connect(address, data)
                if sock is not None:  # left open (the silent ones too): it must not wait on them
                    held[sock] = (address, bool(data), bytearray())
        time.sleep(0.005)


if __name__ == "__main__":
    main()

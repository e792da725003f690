"""Batches between two Ray actors: Ray's actor calls against a TCP connection of our own.

Why this exists: ``fastflow run --ray`` had to choose how actors exchange batches
(``fastflow/_runtime/distributed/ray_actors.py``). This measures the candidates on a local Ray
instance: 100 batches of 10k ``(str, int)`` pairs from one actor to another, the
receiver decoding every batch, as items per second of wall time::

    python bench/ray_exchange.py [--batches 100]

- ``ray call, list``: the batch as a Python list argument, one call at a time;
- ``ray call, bytes, pipelined``: the batch pre-encoded (marshal), calls not awaited one
  by one (at most 8 in flight);
- ``tcp link``: fastflow's ``wire.Link`` over a TCP connection between the actors, as
  ``--ray`` runs them.
"""

from __future__ import annotations

import argparse
import marshal
import socket
import time

import ray

from fastflow._runtime.distributed.wire import Link


@ray.remote(num_cpus=1)
class Receiver:
    """Takes batches by call, or serves one TCP connection."""

    def __init__(self) -> None:
        self.items = 0
        self._listener = socket.create_server(("127.0.0.1", 0))

    def address(self) -> tuple[str, int]:
        return self._listener.getsockname()[:2]

    def take_list(self, batch: list[tuple[str, int]]) -> int:
        self.items += len(batch)
        return self.items

    def take_bytes(self, blob: bytes) -> int:
        self.items += len(marshal.loads(blob))
        return self.items

    def serve_tcp(self, expected: int) -> int:
        sock, _ = self._listener.accept()
        link = Link(sock, 0)
        got = 0
        while got < expected:
            for _kind, _step, _port, _worker, batch in link.receive():
                got += len(batch)
            time.sleep(0)  # receive() does not block: yield, as the run loop would select
        return got


@ray.remote(num_cpus=1)
class Sender:
    """Sends the same batch ``batches`` times, the way being measured."""

    def __init__(self, size: int) -> None:
        self.batch = [(f"k{i % 1000}", i) for i in range(size)]

    def by_list(self, receiver: object, batches: int) -> None:
        for _ in range(batches):
            ray.get(receiver.take_list.remote(self.batch))  # type: ignore[attr-defined]

    def by_bytes_pipelined(self, receiver: object, batches: int) -> None:
        in_flight: list[object] = []
        for _ in range(batches):
            blob = marshal.dumps(self.batch, 4)
            in_flight.append(receiver.take_bytes.remote(blob))  # type: ignore[attr-defined]
            if len(in_flight) >= 8:
                ray.get(in_flight.pop(0))
        ray.get(in_flight)

    def by_tcp(self, address: tuple[str, int], batches: int) -> None:
        link = self._link = Link(socket.create_connection(address), 1)  # open until killed
        for _ in range(batches):
            link.send_batch(0, 0, 0, self.batch)
            link.flush()
        while link.pending:
            link.flush()
            time.sleep(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    items = args.batches * args.size
    print("| way | µs per item |")
    print("|---|---:|")
    for way in ("ray call, list", "ray call, bytes, pipelined", "tcp link"):
        receiver, sender = Receiver.remote(), Sender.remote(args.size)
        address = ray.get(receiver.address.remote())
        start = time.perf_counter()
        if way == "ray call, list":
            ray.get(sender.by_list.remote(receiver, args.batches))
        elif way == "ray call, bytes, pipelined":
            ray.get(sender.by_bytes_pipelined.remote(receiver, args.batches))
        else:
            served = receiver.serve_tcp.remote(items)
            ray.get(sender.by_tcp.remote(address, args.batches))
            assert ray.get(served) == items
        seconds = time.perf_counter() - start
        print(f"| {way} | {seconds / items * 1e6:.2f} |", flush=True)
        ray.kill(receiver)
        ray.kill(sender)
    ray.shutdown()


if __name__ == "__main__":
    main()

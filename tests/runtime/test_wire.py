"""The batches between processes (`_runtime/distributed/wire.py`): what crosses a `Link`."""

from __future__ import annotations

import select
import socket

import pytest
from ray import cloudpickle

from fastflow._runtime.distributed.wire import DATA, Link, UnsendableBatch


def _received(link: Link) -> list[object]:
    """The batches that arrive on ``link`` (one frame expected; bounded wait as hang guard)."""
    assert select.select([link.sock], [], [], 30)[0], "nothing arrived"
    frames = link.receive()
    assert [frame[0] for frame in frames] == [DATA]
    return [frame[4] for frame in frames]


def test_only_a_link_given_a_by_value_codec_sends_what_plain_pickle_refuses() -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    by_value = Link(a, 1, by_value=cloudpickle.dumps)
    plain = Link(c, 1)  # made after the other: no switch of the whole process
    add_one = lambda x: x + 1  # noqa: E731 - plain pickle refuses a lambda
    by_value.send_batch(3, 0, 2, [add_one])
    by_value.flush()
    (batch,) = _received(Link(b, 0))
    assert isinstance(batch, list) and batch[0](2) == 3
    with pytest.raises(UnsendableBatch) as refused:
        plain.send_batch(3, 0, 2, [add_one])
    assert (refused.value.step, refused.value.port) == (3, 0)
    plain.send_batch(3, 0, 2, ["still", "sends", 1])  # what marshal takes, as before
    plain.flush()
    assert _received(Link(d, 0)) == [["still", "sends", 1]]
    for sock in (a, b, c, d):
        sock.close()

"""dlsys.data.transport: batches through reused shared-memory segments, never overwritten while
the main process still holds them."""

import multiprocessing as mp

import numpy as np
import pytest

from dlsys.data import transport

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "memfd_create"),
                                reason="needs memfd (Linux)")


def _pair():
    a, b = mp.Pipe(duplex=True)
    return transport.Sender(b), transport.Receiver(a)


def _batch(k, n=200_000):
    return {"x": np.full(n, k, np.float32), "y": np.arange(3) + k, "name": f"b{k}"}


def test_segments_are_reused_once_released_and_never_while_held():
    sender, receiver = _pair()
    held = []
    for k in range(6):                     # held: each batch needs its own segment
        sender.send(_batch(k))
        held.append(receiver.recv())
        sender.release(receiver.take_freed())
    assert sender.segments == 6
    for k, b in enumerate(held):           # nothing was overwritten
        assert b["name"] == f"b{k}" and (b["x"] == k).all() and list(b["y"]) == [k, k + 1, k + 2]
        assert b["x"].flags.writeable
    del held, b
    for k in range(6, 30):                 # dropped at once: the freed segments come back
        sender.release(receiver.take_freed())
        sender.send(_batch(k))
        got = receiver.recv()
        assert (got["x"] == k).all()
        del got
    assert sender.segments == 6


def test_small_and_odd_objects_travel_in_band():
    sender, receiver = _pair()
    for obj in (None, [1, "a"], np.arange(10), {"s": np.zeros((0, 3))},
                np.arange(30_000)[::3]):  # non-contiguous: pickled in-band
        sender.send(obj)
        got = receiver.recv()
        if isinstance(obj, np.ndarray):
            np.testing.assert_array_equal(got, obj)
        elif isinstance(obj, dict):
            assert got["s"].shape == (0, 3)
        else:
            assert got == obj
    assert sender.segments == 0
    big = np.arange(300_000)[::3]              # large, not contiguous: through a segment
    sender.send(big)
    np.testing.assert_array_equal(receiver.recv(), big)
    assert sender.segments == 1


def test_a_smaller_batch_fits_an_existing_segment():
    sender, receiver = _pair()
    sender.send(_batch(0, 300_000))
    receiver.recv()
    sender.release(receiver.take_freed())
    sender.send(_batch(1, 250_000))        # the last batch of an epoch is smaller
    assert (receiver.recv()["x"] == 1).all() and sender.segments == 1

"""Moving a batch from a worker process to the main process without piping its bytes.

A batch is pickled with protocol 5, its arrays as out-of-band buffers. A small batch travels
in-band over the worker's connection. A larger one is copied once into an anonymous
shared-memory file (``memfd``) whose descriptor goes over the connection (a Unix socket,
SCM_RIGHTS); the main process maps it and the batch's arrays are views of that mapping, freed
with the last of them. No named segment ever exists, so nothing leaks when either side dies.
Where there is no memfd (not Linux), every batch travels in-band.
"""

from __future__ import annotations

import mmap
import os
import pickle
from multiprocessing import reduction

__all__ = ["send", "recv", "INLINE_BYTES"]

INLINE_BYTES = 128 * 1024  # below this, piping the bytes is cheaper than mapping a file
_ALIGN = 64
_HAVE_MEMFD = hasattr(os, "memfd_create")


def send(conn, obj) -> None:
    """Send ``obj`` (any picklable object) over the multiprocessing Connection ``conn``."""
    buffers = []
    meta = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    offsets, size = [], 0
    for v in views:
        offsets.append(size)
        size += -(-v.nbytes // _ALIGN) * _ALIGN
    if not _HAVE_MEMFD or size < INLINE_BYTES:
        conn.send_bytes(b"I" + pickle.dumps(obj, protocol=5))
        return
    fd = os.memfd_create("dlsys-batch", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as m:
            for off, v in zip(offsets, views, strict=True):
                m[off:off + v.nbytes] = v
        conn.send_bytes(b"S" + pickle.dumps((meta, offsets, [v.nbytes for v in views], size)))
        reduction.send_handle(conn, fd, None)
    finally:
        os.close(fd)


def recv(conn):
    """Receive an object sent with :func:`send` (EOFError when the other end is gone)."""
    data = conn.recv_bytes()
    if data[:1] == b"I":
        return pickle.loads(memoryview(data)[1:])
    meta, offsets, sizes, size = pickle.loads(memoryview(data)[1:])
    fd = reduction.recv_handle(conn)
    try:
        m = mmap.mmap(fd, size)  # NOTE: keeps its own duplicate of fd
    finally:
        os.close(fd)
    view = memoryview(m)
    return pickle.loads(meta, buffers=[view[o:o + n] for o, n in zip(offsets, sizes,
                                                                     strict=True)])

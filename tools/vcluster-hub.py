#!/usr/bin/env python3
"""The userspace hub of ``tools/virtual-cluster.sh --delay MS``: an Ethernet switch between TAP
devices that holds every frame for MS milliseconds before it forwards it.

    vcluster-hub.py --delay MS --ready FILE --mtu BYTES TAP [TAP ...]

It creates one TAP device per name (in the current network namespace; the caller then moves
each host's device into that host's namespace, which keeps it attached to this process),
touches FILE, and forwards frames until it is killed: a learning switch (a frame goes to the
port its destination MAC was last seen on, else to every other port), each frame delayed by MS
once, so a round trip between two hosts takes 2 MS more than without the hub.

NOTE: no netem qdisc exists on the kernels this project runs on, which is why a constant delay
needs a process in the data path. Frames are held in arrival order (one FIFO: the delay is the
same for all), so none is reordered; a frame a full device queue refuses is dropped, as a
switch drops it, and TCP resends it. Under CPU load the hub runs late: the delay is a lower
bound, with jitter. Every frame costs the hub a read and a write in Python, so the caller
raises the MTU to 9000: one TCP stream through the hub then moved 60-120 MB/s on the 2-core
machine (under load; about 0.5-1 Gbit/s), against 160-790 MB/s over the bridge. Combine
--delay with --rate 100mbit-500mbit for a link the hub does not limit.
"""

from __future__ import annotations

import argparse
import collections
import errno
import fcntl
import os
import select
import struct
import sys
import time
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
BURST = 64  # frames read from one device before looking at the others


def open_tap(name: str) -> int:
    """A TAP device ``name`` (Ethernet frames, no packet-info header), non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def forward(fds: list[int], delay: float, mtu: int):
    """Read, hold for ``delay`` seconds, deliver: forever."""
    ep = select.epoll()
    for fd in fds:
        ep.register(fd, select.EPOLLIN)
    port_of = {fd: port for port, fd in enumerate(fds)}
    where: dict[bytes, int] = {}  # MAC -> port it was last seen on
    held: collections.deque = collections.deque()  # (due time, ingress port, frame)
    room = mtu + 64
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else -1
        for fd, _ in ep.poll(timeout):
            port, now = port_of[fd], time.monotonic()
            for _ in range(BURST):
                try:
                    frame = os.read(fd, room)
                except BlockingIOError:
                    break
                if len(frame) >= 14:
                    held.append((now + delay, port, frame))
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, port, frame = held.popleft()
            where[frame[6:12]] = port
            dst = where.get(frame[0:6]) if not frame[0] & 1 else None  # bit 0: multicast
            for out in (dst,) if dst is not None else range(len(fds)):
                if out == port:
                    continue
                try:
                    os.write(fds[out], frame)
                except OSError as exc:  # a full queue, or a device that is down: dropped
                    if exc.errno not in (errno.EAGAIN, errno.EIO, errno.ENOBUFS):
                        raise


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, required=True, help="milliseconds per frame")
    ap.add_argument("--ready", required=True, help="touched once the devices exist")
    ap.add_argument("--mtu", type=int, default=9000)
    ap.add_argument("taps", nargs="+")
    args = ap.parse_args(argv)
    if not 0 <= args.delay <= 10_000:
        ap.error(f"--delay must be 0-10000 ms, got {args.delay}")
    fds = [open_tap(name) for name in args.taps]
    Path(args.ready).touch()
    try:
        forward(fds, args.delay / 1000.0, args.mtu)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())

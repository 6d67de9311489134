"""Plain TCP between two virtual hosts (no MPI): ``serve PORT`` accepts one connection and
prints the bytes it received (answering every 1-byte message with one byte); ``send HOST PORT
NBYTES`` sends that many zero bytes; ``ping HOST PORT N`` times N one-byte round trips and
prints the shortest in milliseconds."""

from __future__ import annotations

import socket
import sys
import time


def serve(port: int):
    with socket.create_server(("", port)) as srv:
        conn, _ = srv.accept()
        total = 0
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while chunk := conn.recv(1 << 20):
                total += len(chunk)
                if len(chunk) == 1:  # a ping
                    conn.sendall(chunk)
    print(total, flush=True)


def connect(host: str, port: int) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:  # the server may not be listening yet
        try:
            conn = socket.create_connection((host, port), timeout=10)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    return conn


def send(host: str, port: int, nbytes: int):
    with connect(host, port) as conn:
        block = bytes(1 << 20)
        while nbytes > 0:
            conn.sendall(block[:nbytes])
            nbytes -= min(nbytes, len(block))


def ping(host: str, port: int, n: int):
    with connect(host, port) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        best = float("inf")
        for _ in range(n):
            t0 = time.perf_counter()
            conn.sendall(b"x")
            conn.recv(1)
            best = min(best, time.perf_counter() - t0)
    print(f"rtt_ms {best * 1e3:.3f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "ping":
        ping(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))

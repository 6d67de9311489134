"""Plain TCP between two virtual hosts (no MPI): ``serve PORT`` accepts one connection and
prints the bytes it received; ``send HOST PORT NBYTES`` sends that many zero bytes."""

from __future__ import annotations

import socket
import sys
import time


def serve(port: int):
    with socket.create_server(("", port)) as srv:
        conn, _ = srv.accept()
        total = 0
        with conn:
            while chunk := conn.recv(1 << 20):
                total += len(chunk)
    print(total, flush=True)


def send(host: str, port: int, nbytes: int):
    deadline = time.monotonic() + 10
    while True:  # the server may not be listening yet
        try:
            conn = socket.create_connection((host, port), timeout=10)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    with conn:
        block = bytes(1 << 20)
        while nbytes > 0:
            conn.sendall(block[:nbytes])
            nbytes -= min(nbytes, len(block))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))

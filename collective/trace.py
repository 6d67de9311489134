"""The timeline's recorder and file (``col.start_timeline`` / ``col.stop_timeline`` are in
``collective/timeline.py``; ``COLLECTIVE_TIMELINE=path`` records a whole run: ``col.init()``
calls ``autostart``).

A Chrome-trace / Perfetto JSON file (open it in https://ui.perfetto.dev or chrome://tracing)
with one process row per rank and, in each, the tracks

- ``steps``: DistributedOptimizer's phases per step: ``forward`` (from the end of the previous
  step to the first gradient: the forward pass, the loss and the data loading), ``backward``
  (first to last gradient hook), ``step`` with ``synchronize`` (the wait for the reductions
  that backward did not hide) and ``update`` (the wrapped optimizer's step) inside it;
- ``buckets``: each bucket's ``ready`` instant (its last gradient arrived, it is handed to the
  engine) and its reduction from start to done (with its bytes);
- ``collectives``: each collective call's handshake and algorithm phases (allreduce: the
  handshake, then the algorithm with its bytes; a fused shared-memory or recursive-doubling
  call is one phase); the other collectives' handshakes.

Each rank records into a list in memory (one ``perf_counter`` and one append per event, from
any thread); ``stop_timeline()`` (every rank calls it) sends the events to rank 0, which writes
the one merged file, atomically. The file's ``otherData.collective`` holds what
``python -m collective.explain`` needs: the world size, hosts, the tuning table's measured
costs. Times: on one node every rank reads the same monotonic clock (``time.perf_counter`` is
CLOCK_MONOTONIC on Linux), so rank 0's origin is everyone's; across nodes each rank's origin
is the moment it left the barrier of ``start_timeline`` (skew: that barrier's, tens of us).

When no timeline is recorded, every instrumented place costs one attribute test
(``ctx.timeline is None``). The cost when on: ``benchmarks/observability.py``.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import sys
import time

from .safety import agree, describe

TAG = 32  # the events' messages to rank 0, on the Context's obs_comm
TRACKS = ("steps", "buckets", "collectives")
LIMIT = 2_000_000  # events kept per rank (about 200 MB); later ones are dropped, and counted
_now = time.perf_counter


class Recorder:
    """One rank's events: (track, name, start, end or None for an instant, args)."""

    __slots__ = ("path", "origin", "events", "dropped")

    def __init__(self, path, origin):
        self.path, self.origin = path, origin
        self.events: list = []
        self.dropped = 0

    def span(self, track: int, name: str, start: float, end: float | None, args=None):
        if len(self.events) < LIMIT:
            self.events.append((track, name, start, end, args))
        else:
            self.dropped += 1

    def instant(self, track: int, name: str, t: float, args=None):
        self.span(track, name, t, None, args)


def begin(ctx, file_path):
    """Start recording (every rank calls it: a barrier aligns the ranks' clocks)."""
    if ctx.timeline is not None:
        raise RuntimeError(f"a timeline is already being recorded (to "
                           f"{ctx.timeline.path!r}); call col.stop_timeline() first")
    path = os.fspath(file_path)
    agree(ctx, describe("start_timeline"))
    t = _now()
    if ctx.size > 1 and ctx.local_size == ctx.size:
        t = ctx.comm.bcast(t, root=0)  # one clock on one node: rank 0's origin for all
    ctx.timeline = Recorder(path, t)


def _trace_events(rank, payload):
    origin, events = payload["origin"], payload["events"]
    out = [{"ph": "M", "name": "process_name", "pid": rank, "args": {"name": f"rank {rank}"}},
           {"ph": "M", "name": "process_sort_index", "pid": rank, "args": {"sort_index": rank}}]
    out += [{"ph": "M", "name": "thread_name", "pid": rank, "tid": i, "args": {"name": n}}
            for i, n in enumerate(TRACKS)]
    for track, name, start, end, args in events:
        ev = {"name": name, "pid": rank, "tid": track, "ts": round((start - origin) * 1e6, 3)}
        if end is None:
            ev.update(ph="i", s="t")
        else:
            ev.update(ph="X", dur=round((end - start) * 1e6, 3))
        if args:
            ev["args"] = args
        out.append(ev)
    return out


def _write(path, payloads, meta):
    events = []
    for rank, payload in sorted(payloads.items()):
        events += _trace_events(rank, payload)
    doc = {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"collective": meta}}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def end(ctx, timeout: float):
    """Stop recording; rank 0 gathers every rank's events and writes the merged file (its
    path is returned on rank 0). Ranks whose events do not come within ``timeout`` s are left
    out, with a warning: point-to-point with a deadline, so it never hangs, even at exit."""
    rec = ctx.timeline
    if rec is None:
        return None
    ctx.timeline = None
    payload = {"origin": rec.origin, "events": rec.events, "dropped": rec.dropped,
               "host": socket.gethostname()}
    if ctx.size == 1:
        payloads = {0: payload}
    else:
        payloads = _exchange(ctx, payload, timeout)
        if payloads is None:
            return None
    tuning = ctx.tuning.to_json() if ctx.tuning is not None else None
    meta = {"version": 1, "size": ctx.size, "local_size": ctx.local_size,
            "hosts": [payloads[r]["host"] if r in payloads else None for r in range(ctx.size)],
            "missing_ranks": [r for r in range(ctx.size) if r not in payloads],
            "dropped_events": sum(p["dropped"] for p in payloads.values()),
            "tuning": tuning}
    _write(rec.path, payloads, meta)
    return rec.path


def _exchange(ctx, payload, timeout):
    """Point-to-point with a deadline (never a hang, also at exit when a rank is gone)."""
    comm, deadline = ctx.obs_comm, time.monotonic() + timeout
    if ctx.rank != 0:
        req = comm.isend(payload, dest=0, tag=TAG)
        while not req.Test():
            if time.monotonic() > deadline:
                req.Cancel()
                sys.stderr.write(f"[rank {ctx.rank}/{ctx.size}] collective: rank 0 did not take "
                                 f"this rank's timeline events within {timeout:g} s\n")
                return None
            time.sleep(0.001)
        return None
    payloads, waiting = {0: payload}, set(range(1, ctx.size))
    while waiting and time.monotonic() < deadline:
        for r in sorted(waiting):
            msg = comm.improbe(source=r, tag=TAG)
            if msg is not None:
                payloads[r] = msg.recv()
                waiting.discard(r)
        if waiting:
            time.sleep(0.001)
    if waiting:
        sys.stderr.write(f"[rank 0/{ctx.size}] collective: the timeline lacks "
                         f"{', '.join(map(str, sorted(waiting)))}: no events within "
                         f"{timeout:g} s\n")
    return payloads


def autostart(ctx):
    """COLLECTIVE_TIMELINE=path: record from ``col.init()`` on, write at a clean exit."""
    begin(ctx, ctx.config.timeline)

    def at_exit():
        guard = ctx.exit_guard
        failed = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if ctx.timeline is not None and not failed and not (guard and guard.status):
            end(ctx, ctx.config.exit_timeout_s)

    atexit.register(at_exit)

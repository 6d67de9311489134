"""The stall watchdog: a rank that waits in a collective for ``COLLECTIVE_STALL_WARN`` seconds
gets a report, from rank 0, naming the ranks that have not entered that collective and where
each of them is now; after ``COLLECTIVE_STALL_ABORT`` seconds the job is aborted with it.

Two halves:

- ``Monitor``: what the main thread is doing, written by the main thread itself at the start
  and end of every collective call that can wait for other ranks (the handshake every
  collective starts with, allreduce, DistributedOptimizer's synchronize): is it inside one,
  which (name, this rank's call number) and the last one it completed: four attribute stores
  at the start, one at the end (``benchmarks/observability.py`` measures the cost). When the
  wait began is the watchdog's business: it notes the time it first sees a call number, so a
  wait is timed to within one tick.
- ``Watchdog``: a daemon thread per rank that reads the Monitor every ``tick`` seconds. It
  needs nothing from the main thread, so a rank whose main thread is stuck in pure Python (an
  endless loop, a long save) that never calls MPI again still answers: its watchdog takes the
  main thread's stack (``sys._current_frames()``; a pure-Python loop releases the GIL every
  few milliseconds) and sends it. The watchdogs talk over a private communicator (a ``Dup``
  of the world), so this works across nodes as on one; it needs MPI_THREAD_MULTIPLE (which
  ``col.init()`` requests; the embedded MPICH grants it). Without it each rank can only
  report its own wait.

The protocol: a rank whose main thread has waited ``warn`` seconds in the same collective
sends a notice to rank 0; rank 0's watchdog asks every rank for its state (answers that do not
come within a few seconds are reported as such: a dead or stopped process, or one whose main
thread holds the GIL in a long C call), writes the report and sends it to every rank that is
waiting (each prints it once on stderr). Past ``abort`` seconds the waiting rank sends an
abort notice and rank 0 aborts the job (MPI_Abort, non-zero exit) after printing a fresh
report; if rank 0 does not, the waiting rank aborts by itself a little later.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import sys
import threading
import time
import traceback

from .process import abort

TAG = 31  # the watchdogs' messages on their own communicator
_HERE = os.path.dirname(os.path.abspath(__file__))
_DLSYS = os.path.join(os.path.dirname(_HERE), "dlsys")
_MPI4PY = os.path.dirname(getattr(importlib.util.find_spec("mpi4py"), "origin", None) or "?/")
_get_ident, _monotonic = threading.get_ident, time.monotonic


class Monitor:
    """The main thread's collective state (see the module docstring). ``enter(name)`` at the
    start of a call that may wait, ``exit(token)`` at its end (in a ``finally``); calls made
    inside another tracked call, or from other threads, are not tracked."""

    __slots__ = ("main", "active", "seq", "name", "previous")

    def __init__(self):
        self.main = threading.main_thread().ident
        self.active = False
        self.seq = 0  # tracked calls entered so far: the number of the current/last one
        self.name = self.previous = None  # the current/last one's name, the one before's

    def enter(self, name) -> bool:
        if self.active or _get_ident() != self.main:
            return False
        self.seq += 1
        self.previous, self.name = self.name, name
        self.active = True
        return True

    def exit(self, token: bool):
        if token:
            self.active = False

    def last_completed(self):
        """(call number, name) of the last call this rank completed."""
        if self.active:
            return self.seq - 1, self.previous
        return self.seq, self.name


def write_ranks_file(world, path):
    """Rank 0 writes every rank's "pid host rank" to ``path`` (for ./mpirun.sh, which adds
    the rank to the launcher's report of a process killed by a signal). A collective call."""
    rows = world.allgather((os.getpid(), socket.gethostname()))
    if world.Get_rank() == 0:
        try:
            with open(path, "w") as f:
                f.writelines(f"{pid} {host} {r}\n" for r, (pid, host) in enumerate(rows))
        except OSError:
            pass  # only a nicer message is lost


# -- what a rank says about itself ----------------------------------------------------------------

def _frames(frame, limit=40):
    """[(file, line, function)] from ``frame`` outwards (innermost first), without the
    frames of the interpreter's and mpi4py's script runners."""
    out = []
    while frame is not None and len(out) < limit:
        path = frame.f_code.co_filename
        if not (path.startswith("<frozen") or path.startswith(_MPI4PY)):
            out.append((path, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return out


def _is_library(path):
    return path.startswith(_HERE) or path.startswith(_DLSYS)


def _short(path):
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def call_site(frames):
    """The frame that called into collective: the first non-library frame outside the
    outermost collective frame (None when no collective frame is on the stack)."""
    outer = max((i for i, f in enumerate(frames) if f[0].startswith(_HERE)), default=None)
    if outer is None:
        return None
    return next((f for f in frames[outer + 1:] if not _is_library(f[0])), None)


def fmt_frame(f):
    return f"{_short(f[0])}:{f[1]} in {f[2]}"


def snapshot(monitor: Monitor, rank: int, waited: float) -> dict:
    """This rank's state now, taken on any thread (the main thread's stack included);
    ``waited``: how long the current call has been seen waiting."""
    seq, active, name = monitor.seq, monitor.active, monitor.name
    last_seq, last_name = monitor.last_completed()
    frames = _frames(sys._current_frames().get(monitor.main))
    return {"rank": rank, "host": socket.gethostname(), "pid": os.getpid(), "active": active,
            "seq": seq, "name": name, "waited": waited if active else 0.0,
            "last_seq": last_seq, "last_name": last_name, "frames": frames}


# -- the report -----------------------------------------------------------------------------------

def _ranks(rs):
    rs = sorted(rs)
    return f"rank {rs[0]}" if len(rs) == 1 else "ranks " + ", ".join(map(str, rs))


def _where(state, depth=4):
    lines = [f"        {fmt_frame(f)}" for f in state["frames"][:depth]]
    return "\n".join(lines) if lines else "        (no Python frame: the interpreter is exiting)"


def compose(target: dict, states: dict, size: int, warn: float, abort_s: float,
            answer_s: float, aborting: bool) -> str | None:
    """The report about ``target`` (the state of a waiting rank) from every rank's state
    (None: did not answer). None when that rank is no longer waiting in that call."""
    name, seq = target["name"], target["seq"]
    now = states.get(target["rank"])
    if now is None or not now["active"] or now["seq"] != seq:
        return None  # it completed meanwhile: no stall
    waiting = [r for r, s in states.items() if s is not None and s["active"]
               and s["name"] == name and s["seq"] == seq]
    longest = max(states[r]["waited"] for r in waiting)
    site = call_site(now["frames"])
    head = "aborting the job: " if aborting else ""
    lines = [f"collective stall report (from rank 0): {head}{_ranks(waiting)} "
             f"{'has' if len(waiting) == 1 else 'have'} waited {longest:.1f} s in {name} "
             f"(collective call #{seq}" + (f", called at {fmt_frame(site)})" if site else ")")]
    missing = [r for r in range(size) if r not in waiting]
    if missing:
        lines.append(f"  {len(missing)} of {size} ranks {'has' if len(missing) == 1 else 'have'} "
                     f"not entered it:")
    else:
        lines.append("  every rank is inside it: none is missing (a slow transfer, or a rank "
                     "whose process died inside the call)")
    for r in missing:
        s = states.get(r)
        if s is None:
            lines.append(f"    rank {r}: did not answer within {answer_s:.0f} s (its process is "
                         f"dead or stopped, or its main thread holds the GIL in a long C call)")
            continue
        last = (f"{s['last_name']} (#{s['last_seq']})" if s["last_name"] else "none")
        if s["active"]:
            other = call_site(s["frames"])
            lines.append(f"    rank {r} ({s['host']}, pid {s['pid']}): waiting for "
                         f"{s['waited']:.1f} s in another collective call, {s['name']} (#"
                         f"{s['seq']})" + (f" called at {fmt_frame(other)}" if other else "")
                         + f"; last completed: {last}")
        else:
            lines.append(f"    rank {r} ({s['host']}, pid {s['pid']}): not in a collective call; "
                         f"last completed: {last}; now at")
            lines.append(_where(s))
    tail = (f"after {abort_s:g} s of waiting (COLLECTIVE_STALL_ABORT)" if abort_s
            else "never (COLLECTIVE_STALL_ABORT=0)")
    lines.append(f"  (COLLECTIVE_STALL_WARN={warn:g} s; the job is aborted {tail})")
    return "\n".join(lines)


# -- the thread -----------------------------------------------------------------------------------

class Watchdog:
    """The watchdog thread of one rank (see the module docstring)."""

    def __init__(self, comm, monitor: Monitor, warn_s: float, abort_s: float, grace_s: float,
                 threads_ok: bool):
        self.comm, self.monitor = comm, monitor
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.warn, self.abort_s, self.grace = warn_s, abort_s, grace_s
        self.tick = min(1.0, max(0.05, warn_s / 10))
        self.answer_s = min(5.0, max(1.0, warn_s / 2))  # how long rank 0 waits for answers
        self.talk = threads_ok  # MPI calls from this thread are allowed
        self.seen = (-1, 0.0)  # (call number, when this thread first saw it active)
        self.reported = 0  # my call number that a report (or my own note) covered
        self.notified = (0, 0.0)  # (call number, when) of my last notice to rank 0
        self.abort_seq, self.abort_deadline = 0, 0.0
        self.last_report = None
        self.pending: list = []  # rank 0: notices to handle
        self.covered: set = set()  # rank 0: (rank, call number) already sent a report
        self.replies: dict = {}
        self.qid = 0
        self.sends: list = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="collective-watchdog",
                                       daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def stop(self):
        """Stop the thread (at exit, before MPI is finalized)."""
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=self.answer_s + 1)

    # -- plumbing ----------------------------------------------------------------------------
    def _loop(self):
        while not self._stop.wait(self.tick):
            try:
                if self.talk:
                    self._serve()
                self._watch()
                if self.rank == 0 and self.talk:
                    self._coordinate()
            except Exception:  # noqa: BLE001 - say so once, never take the rank down
                self._say("collective: the stall watchdog failed and is off:\n"
                          + traceback.format_exc())
                return

    def _say(self, text):
        try:
            sys.stderr.write(f"[rank {self.rank}/{self.size}] {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def _send(self, dest, obj):
        self.sends = [r for r in self.sends if not r.Test()]
        self.sends.append(self.comm.isend(obj, dest=dest, tag=TAG))

    def _serve(self):
        """Handle every message that has arrived."""
        from mpi4py import MPI

        while True:
            msg = self.comm.improbe(source=MPI.ANY_SOURCE, tag=TAG)
            if msg is None:
                return
            obj = msg.recv()
            kind = obj[0]
            if kind == "query":
                self._send(0, ("state", obj[1], snapshot(self.monitor, self.rank,
                                                         self._waited())))
            elif kind == "state":
                if obj[1] == self.qid:
                    self.replies[obj[2]["rank"]] = obj[2]
            elif kind == "notice":
                self.pending.append(obj)
            elif kind == "report":
                _, text, seqs = obj
                self.last_report = text
                if self.monitor.active and self.monitor.seq == seqs.get(self.rank):
                    self.reported = seqs[self.rank]
                    self._say(text)

    # -- every rank: am I stalled? -----------------------------------------------------------
    def _waited(self) -> float:
        """How long the main thread has been inside its current tracked call (0 when it is
        in none), measured from the first time this thread saw that call."""
        m = self.monitor
        seq, active = m.seq, m.active
        now = _monotonic()
        if not active:
            self.seen = (-1, now)
            return 0.0
        if self.seen[0] != seq:
            self.seen = (seq, now)
        return now - self.seen[1]

    def _watch(self):
        m = self.monitor
        seq = m.seq
        waited = self._waited()
        now = _monotonic()
        if not waited or m.seq != seq:
            return
        if waited < self.warn:
            return
        state = {"rank": self.rank, "seq": seq, "name": m.name}
        if self.abort_s and waited >= self.abort_s:
            if self.abort_seq != seq:
                self.abort_seq, self.abort_deadline = seq, now + 2 * self.answer_s + 2
                self._notify(state, abort=True)
            elif now > self.abort_deadline:  # rank 0 did not end the job: do it here
                self._say(f"collective: aborting the job: this rank has waited {waited:.1f} s "
                          f"in {m.name} (collective call #{seq}) and rank 0 did not end it"
                          + (f"; rank 0's last report:\n{self.last_report}"
                             if self.last_report else ""))
                abort(self.comm, 1, self.grace)
            return
        if self.reported == seq:
            return
        if self.notified[0] != seq:
            self.notified = (seq, now)
            self._notify(state, abort=False)
        elif now > self.notified[1] + 2 * self.answer_s + 1:
            self.reported = seq  # no report came: say what this rank knows, once
            why = ("rank 0 sent no stall report" if self.talk else
                   "the other ranks cannot be asked where they are (MPI did not grant "
                   "MPI_THREAD_MULTIPLE)")
            self._say(f"collective: this rank has waited {waited:.1f} s in {m.name} (collective "
                      f"call #{seq}); {why}")

    def _notify(self, state, abort):
        if self.rank == 0:
            self.pending.append(("notice", state, abort))
        elif self.talk:
            self._send(0, ("notice", state, abort))

    # -- rank 0: the reports -----------------------------------------------------------------
    def _gather(self) -> dict:
        """Every rank's state: {rank: state or None (no answer)}."""
        self.qid += 1
        self.replies = {0: snapshot(self.monitor, 0, self._waited())}
        for r in range(1, self.size):
            self._send(r, ("query", self.qid))
        deadline = _monotonic() + self.answer_s
        while len(self.replies) < self.size and _monotonic() < deadline:
            if self._stop.wait(0.01):
                break
            self._serve()
        return {r: self.replies.get(r) for r in range(self.size)}

    def _coordinate(self):
        while self.pending:
            _, target, aborting = self.pending.pop(0)
            key = (target["rank"], target["seq"])
            if key in self.covered and not aborting:
                continue
            states = self._gather()
            text = compose(target, states, self.size, self.warn, self.abort_s, self.answer_s,
                           aborting)
            if text is None:
                continue
            waiting = {r: s["seq"] for r, s in states.items() if s is not None and s["active"]
                       and s["name"] == target["name"] and s["seq"] == target["seq"]}
            if aborting:
                self._say(text)
                abort(self.comm, 1, self.grace)
            self.covered |= set(waiting.items())
            self.last_report = text
            for r in waiting:
                if r == 0:
                    self.reported = waiting[0]
                    self._say(text)
                else:
                    self._send(r, ("report", text, waiting))

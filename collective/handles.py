"""Asynchronous collectives: handles, ``col.poll``, ``col.synchronize`` and the communication
thread that runs them.

    h = col.allreduce_async(x)        # returns at once
    ...                               # compute while the reduction runs
    y = col.synchronize(h)            # the result; col.poll(h) says whether it is ready

Design: one communication thread per communicator (the world's, and each process set's), which
runs the calls in strict submission order, each one through the very code of the blocking call
(handshake included); a caller waiting in ``synchronize`` while the thread is idle runs the
next calls itself, in the same order (no wake-up latency when the result is wanted at once).
Why a thread rather than non-blocking progress (Test) on the caller's thread: (1) the results
are bitwise those of the blocking call, because they ARE the blocking call, for every
collective and every algorithm ``auto`` may choose (the shared-memory round and recursive
doubling have no non-blocking form); (2) a call progresses while the caller computes, without
``poll`` being called (MPICH moves messages only inside MPI calls of the process); (3) it is
Horovod's model (a background thread), without its name-based negotiation: every rank runs
the calls in the order they were submitted, so ranks must submit the same calls in the same
order, and the handshake of each call checks that they do: calls submitted in different
orders raise ValueError on every rank (at ``synchronize``), they never hang. Several handles
may be in flight and synchronised in any order.

A blocking call on a communicator with calls in flight waits for its turn on the thread, so
the order of calls on the communicator stays the program order on every rank; with nothing in
flight it runs on the caller's thread as always (the blocking path costs one attribute check
more). Tensors are staged (device -> host) at submission and turned back into Tensors in
``synchronize``, on the caller's thread: the thread only ever sees host arrays. Inputs of
calls in flight must not be modified, and in-place results are not valid before
``synchronize`` (as in Horovod).

A handle that is garbage collected without being synchronised is an error: the next blocking
call on its communicator raises it (on every rank, through the handshake: the others name
this rank), and at exit a rank with handles never synchronised (collected or still alive)
prints them and ends the job with a non-zero status instead of leaving it to hang.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading

from . import process
from .safety import agree, describe

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class NeverSynchronized(RuntimeError):
    """Asynchronous collectives whose handles were collected without ``col.synchronize``."""


class _Op:
    """The state of one submitted call (the thread holds this, never the user's Handle)."""

    __slots__ = ("what", "where", "name", "done", "result", "error", "finish", "synced",
                 "waiter")

    def __init__(self, what, where, name, finish):
        self.what, self.where, self.name, self.finish = what, where, name, finish
        self.done = self.synced = False
        self.result = self.error = None
        self.waiter = None  # a threading.Event once a caller waits for this op

    def __repr__(self):
        return f"{self.what}() submitted at {self.where}"


class Handle:
    """What an asynchronous collective returns; pass it to ``col.poll`` / ``col.synchronize``."""

    __slots__ = ("_op", "_executor", "__weakref__")

    def __init__(self, op, executor):
        self._op, self._executor = op, executor

    def __del__(self):
        op = self._op
        if not op.synced:
            self._executor.dropped_handle(op)

    def __repr__(self):
        state = "synchronized" if self._op.synced else "done" if self._op.done else "in flight"
        return f"<collective handle: {self._op!r}, {state}>"


class Executor:
    """The communication thread of one Context (see the module docstring).

    The calls wait in a FIFO; whoever holds ``_running`` runs the next one: the thread, or a
    caller waiting in ``synchronize`` (or a blocking call waiting its turn) that finds the
    thread idle. So the calls still run one at a time in submission order, and a caller that
    waits never pays for the thread's wake-up (a scheduler round on a loaded machine: it cost
    ~0.3 ms per handle here before).
    """

    def __init__(self, ctx):
        self.ctx = ctx
        self._jobs: collections.deque = collections.deque()
        self._cond = threading.Condition()  # guards _jobs, pending, the ops' done and waiter
        self._running = threading.Lock()  # held while a call runs
        self._runner = None  # the thread ident running a call now
        self._closed = False
        self.pending = 0  # submitted, not finished
        self.unsynced: dict[int, _Op] = {}  # id -> op whose Handle lives, not synchronised
        self.dropped: list[_Op] = []  # ops whose Handle was collected before synchronize
        self._thread = threading.Thread(target=self._run, name="collective-async", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- running the calls ---------------------------------------------------------------------
    def _run(self):
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
            with self._running:
                self._step()

    def _step(self) -> bool:
        """Run the next call, if any (the caller holds ``_running``)."""
        with self._cond:
            if not self._jobs:
                return False
            op, fn, args = self._jobs.popleft()
        self._runner = threading.get_ident()
        try:
            op.result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised by synchronize
            op.error = exc
        finally:
            self._runner = None
        with self._cond:
            op.done = True
            self.pending -= 1
            waiter = op.waiter
        if waiter is not None:
            waiter.set()
        return True

    def _wait(self, op):
        """Until ``op`` is done: run the calls before it (and it) when the thread is not
        running one, else wait for the thread to finish one."""
        while not op.done:
            if self._running.acquire(blocking=False):
                try:  # run the calls up to ours ourselves
                    while not op.done and self._step():
                        pass
                finally:
                    self._running.release()
                continue
            with self._cond:  # the thread is running one: it runs ours too (it drains the queue)
                if op.done:
                    break
                if op.waiter is None:
                    op.waiter = threading.Event()
                waiter = op.waiter
            waiter.wait()  # NOTE: woken only when ours is done, not after every call
        if op.error is not None:
            raise op.error
        return op.result

    # -- submission ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.pending > 0 or bool(self.dropped)

    def must_route(self) -> bool:
        """Whether a blocking call on this communicator must wait its turn (calls in flight,
        or a handle dropped): not from inside a call that is running."""
        return (self.pending > 0 or bool(self.dropped)) and threading.get_ident() != self._runner

    def _queue(self, op, fn, args):
        with self._cond:
            self.pending += 1
            self._jobs.append((op, fn, args))
            self._cond.notify_all()

    def submit(self, what, fn, args, finish=None, name=None, depth=2) -> Handle:
        """Queue ``fn(*args)``; ``finish(result)`` runs in ``synchronize`` on the caller's
        thread (Tensors back to their device, in-place write-back)."""
        if name is not None:
            for other in self.unsynced.values():
                if other.name == name:
                    raise ValueError(f"{what}: an asynchronous collective named {name!r} is "
                                     f"already in flight ({other!r}); names must be unique "
                                     "among the calls not yet synchronised")
        frame = sys._getframe(depth)
        while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
            frame = frame.f_back  # the user's line, not collective's
        op = _Op(what, f"{frame.f_code.co_filename}:{frame.f_lineno}", name, finish)
        self.unsynced[id(op)] = op
        self._queue(op, fn, args)
        return Handle(op, self)

    def blocking(self, what, fn, *args, **kwargs):
        """Run the blocking call ``fn(*args, **kwargs)`` after the calls in flight, or at once
        when none is; first raise the handles dropped."""
        if self.dropped:
            dropped, self.dropped = self.dropped, []
            error = NeverSynchronized(
                f"{len(dropped)} asynchronous collective(s) were garbage collected without "
                "col.synchronize(handle): " + "; ".join(map(repr, dropped)))
            fn, args, kwargs = agree, (self.ctx, describe(what), error), {}
        if self.pending == 0:
            return fn(*args, **kwargs)
        op = _Op(what, "", None, None)
        self._queue(op, lambda: fn(*args, **kwargs), ())
        return self._wait(op)

    def synchronize(self, handle):
        op = handle._op
        if op.synced:
            if op.error is not None:
                raise op.error
            return op.result
        try:
            result = self._wait(op)
            if op.finish is not None:
                result = op.finish(result)
            op.result = result
        except BaseException as exc:
            op.error = exc
            raise
        finally:  # the caller has the result or the error: synchronised either way
            op.synced, op.finish = True, None
            self.unsynced.pop(id(op), None)
        return result

    def close(self):
        """End the thread after the calls already submitted (``col.shutdown``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- handles never synchronised ------------------------------------------------------------
    def dropped_handle(self, op):
        if self.unsynced.pop(id(op), None) is not None:
            self.dropped.append(op)

    def _at_exit(self):
        lost = list(self.unsynced.values()) + self.dropped
        if not lost:
            return
        ctx = self.ctx
        sys.stderr.write(
            f"[rank {ctx.rank}/{ctx.size}] collective: {len(lost)} asynchronous collective(s) "
            "were never synchronised (col.synchronize(handle)): "
            + "; ".join(map(repr, lost)) + ". Ending the job.\n")
        MPI = sys.modules.get("mpi4py.MPI")
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
            process.abort(MPI.COMM_WORLD, 1, ctx.config.abort_grace_s)


def executor_of(ctx) -> Executor:
    """The Context's Executor (started by its first asynchronous call)."""
    ex = ctx.executor
    if ex is None:
        ex = ctx.executor = Executor(ctx)
    return ex


def _executor(handle) -> Executor:
    if not isinstance(handle, Handle):
        raise TypeError(f"expected a handle returned by an asynchronous collective "
                        f"(col.allreduce_async, ...), got {type(handle).__name__}")
    return handle._executor


def poll(handle) -> bool:
    """Whether the call behind ``handle`` has finished (``synchronize`` will not wait)."""
    _executor(handle)
    return handle._op.done


def synchronize(handle):
    """Wait for the call behind ``handle`` and return its result (what the blocking call
    returns: a new array or Tensor, the input for in-place calls, a list for grouped calls);
    raises the call's error, on every rank, as the blocking call would have."""
    return _executor(handle).synchronize(handle)

"""The worker processes of a DataLoader, seen from the main process.

Workers start with the "forkserver" method by default ("spawn" where there is none): the main
process may be an MPI rank, and forking it copies its MPI library state (network registrations
that are not fork-safe), the threads of Numba, BLAS and collective's background work (a child
can inherit a lock held by one of them) and any CUDA context. A forkserver is a fresh
interpreter started once; workers fork from it, so they start clean, at the price of pickling
the dataset to each worker and of a first start-up (persistent_workers keeps them across
epochs). ``multiprocessing_context="fork"`` is there when none of that applies.

Each worker has one duplex connection (a Unix socket): tasks go to the workers in turn, and
each answers its own tasks in order, so the main process reads batch ``b`` from the worker it
sent ``b`` to, and notices that worker's death at once (its process sentinel).
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import time
import weakref

from . import transport
from .worker import ExceptionWrapper, Fetcher, worker_loop

__all__ = ["WorkerPool", "get_context"]

POLL_S = 0.2  # how often the main process checks its workers while it waits for a batch
JOIN_S = 5.0  # how long a stopping worker may take to finish its batch before it is killed


def get_context(context=None):
    """A multiprocessing context from ``None`` (the default method), a method name or a
    context object."""
    if context is None:
        context = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    if isinstance(context, str):
        ctx = mp.get_context(context)
        if context == "forkserver":
            # NOTE: the server imports dlsys once and every worker forks with it loaded (else
            # each imports it again: seconds on a busy machine), and forkserver_env clears the
            # MPI launcher's variables there first. The default list, ["__main__"], is dropped
            # on purpose: it preloads nothing in CPython 3.11-3.13 (a key mix-up, fixed later),
            # and where it works the server would run the user's script, MPI calls and all,
            # before forkserver_env. No effect once the server runs.
            ctx.set_forkserver_preload(["dlsys.data.forkserver_env", "dlsys.data.worker"])
        return ctx
    if hasattr(context, "Process") and hasattr(context, "Queue"):
        return context
    raise TypeError(f"multiprocessing_context must be a start method name or a multiprocessing "
                    f"context, got {type(context).__name__}")


def _exit_text(code) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _shutdown(workers, conns, grace):
    for c in conns:
        try:
            c.send(None)
        except (OSError, ValueError):
            pass  # the worker is gone already
    deadline = time.monotonic() + grace["s"]
    for w in workers:
        w.join(timeout=max(0.0, deadline - time.monotonic()))
    for w in workers:
        if w.is_alive():
            w.terminate()
            w.join(timeout=JOIN_S)
    for c in conns:
        c.close()


class WorkerPool:
    """``num_workers`` processes serving one Fetcher. ``submit`` hands a batch to the next worker
    in turn, ``get`` returns a submitted batch (raising a worker's exception, a worker's death or
    the loader's timeout as errors), ``new_epoch`` forgets the batches of the previous one."""

    def __init__(self, fetcher: Fetcher, num_workers: int, base_seed: int, worker_init_fn=None,
                 context=None, timeout: float = 0):
        ctx = get_context(context)
        self.method = ctx.get_start_method()
        self.timeout = float(timeout)
        self._workers, self._conns, self._receivers = [], [], []
        self._grace = {"s": JOIN_S}
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._conns,
                                           self._grace)
        self._owner: dict = {}
        self._epoch = 0
        self._next = 0
        for wid in range(num_workers):
            mine, theirs = ctx.Pipe(duplex=True)  # NOTE: a Unix socket: it carries descriptors
            w = ctx.Process(target=worker_loop, name=f"DataLoader-worker-{wid}", daemon=True,
                            args=(fetcher, theirs, wid, num_workers, base_seed, worker_init_fn))
            self._conns.append(mine)
            self._receivers.append(transport.Receiver(mine))
            try:
                w.start()
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                self.close()
                raise TypeError(
                    f"DataLoader workers started with {self.method!r} need a picklable dataset, "
                    f"collate_fn and worker_init_fn (no lambdas or local classes): {exc}. Define "
                    f"them at module level, or pass multiprocessing_context='fork'") from exc
            except BaseException:
                self.close()
                raise
            finally:
                theirs.close()
            self._workers.append(w)

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    @property
    def epoch(self) -> int:
        """How many epochs have started on these workers."""
        return self._epoch

    def new_epoch(self) -> None:
        self._epoch += 1
        self._owner.clear()

    def submit(self, batch: int, indices, base_seed: int) -> None:
        try:
            freed = self._receivers[self._next].take_freed()
            self._conns[self._next].send(((self._epoch, batch), indices, base_seed, batch,
                                          freed))
        except OSError:  # NOTE: BrokenPipeError: that worker is gone
            self._fail_dead()
        self._owner[batch] = self._next
        self._next = (self._next + 1) % len(self._workers)

    def get(self, batch: int):
        """Batch ``batch`` of this epoch. Each worker answers its tasks in order, so this reads
        the connection of the worker it went to, dropping answers from an epoch left early."""
        wid = self._owner.pop(batch)
        conn, worker = self._conns[wid], self._workers[wid]
        receiver = self._receivers[wid]
        key = (self._epoch, batch)
        start = time.monotonic()
        while True:
            ready = mp.connection.wait([conn, worker.sentinel], POLL_S)
            if conn in ready:
                try:
                    k, result = receiver.recv()
                except (EOFError, OSError):
                    self._fail_dead()
                if k == key:
                    break
            elif ready:  # the worker exited with nothing left to read
                self._fail_dead()
            waited = time.monotonic() - start
            if self.timeout > 0 and waited > self.timeout:
                self.close(kill=True)
                raise RuntimeError(f"DataLoader timed out after {waited:.1f} s waiting for "
                                   f"batch {batch} from worker {wid} (timeout="
                                   f"{self.timeout:g} s)")
        if isinstance(result, ExceptionWrapper):
            result.reraise()
        return result

    def _fail_dead(self) -> None:
        for w in self._workers:
            w.join(timeout=0.5)  # NOTE: a worker whose socket closed may still be exiting
        dead = [(i, w) for i, w in enumerate(self._workers) if not w.is_alive()]
        what = ", ".join(f"worker {i} (pid {w.pid}) {_exit_text(w.exitcode)}" for i, w in dead)
        self.close(kill=True)
        raise RuntimeError(f"DataLoader worker exited unexpectedly: {what or 'connection lost'}")

    def close(self, kill: bool = False) -> None:
        """Stop the workers: each finishes its current batch, or is killed after JOIN_S (at once
        with ``kill``: after a timeout or a death, nothing they hold is wanted)."""
        if kill:
            self._grace["s"] = 0.0
        self._finalizer()

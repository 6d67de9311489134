"""Communication engines: how DistributedOptimizer's bucket reductions run beside backward.

One interface: ``start(bucket) -> Work`` hands over a complete bucket (the Reducer does so in
bucket index order, the same on every rank), ``progress()`` is called from every gradient hook,
``wait_all()`` finishes every started bucket and writes the results back into the gradients.

- ``NonBlockingEngine`` (the default for CPU parameters): every bucket is a ``Ring`` of our
  own (``algorithms/ring.py``) in flight on the Context's ``reducer_comm`` (across nodes, where
  ``auto`` prefers it, a ``HierRing``: the hierarchical allreduce as rings within the node and
  across nodes, ``algorithms/hierarchical.py``), one at a time in bucket order;
  ``progress()`` advances it from the hooks (Test, reduce the chunks that arrived, post the
  next step, post the next bucket's ring) and ``wait_all()`` drives them to the end.
- ``ThreadEngine`` (the default for CUDA parameters): one communication thread runs a
  blocking ``collective.allreduce_`` per bucket, in submission order, by the algorithm ``auto``
  predicts fastest for the bucket's size among our own (ring, recursive doubling, shared
  memory, hierarchical; never the MPI library's).
- ``SharedEngine`` (the default for CPU parameters when every rank is on one node): the
  buckets live in the node's shared window (``collective/shared_buckets.py``); a complete
  bucket is published with a flag, and once every rank's flag is up each rank reduces its
  segment of all ranks' buckets into all of them, no message and no copy. ``progress()``
  tests the flags of the next bucket from the hooks and reduces it as soon as everyone is
  ready; ``wait_all()`` waits for the rest.
- ``InlineEngine``: no overlap, each bucket is reduced inside the hook that completed it (the
  baseline the others are measured against); its algorithm is chosen as the thread engine's.

Arithmetic: numpy's, on host memory, in an order fixed by the algorithm, so every bucket is
bitwise identical on every rank by construction; MPI never does arithmetic on gradients. The
sum of the ranks' values (non-blocking: the ring's order, see ``algorithms/ring.py``; the
others: that of the algorithm chosen for the bucket's size, fixed at start-up), divided by P
with ``np.true_divide`` for Average. With compression, each rank divides its gradient by P
(``np.true_divide``) BEFORE the cast to the wire dtype, then the wire values are summed: the sum
of P float16 values may overflow where their average would not. With
``gradient_predivide_factor`` f (Horovod's), each rank divides by f before the sum and the result
is multiplied by f/P after it (``Engine.rule``/``Engine.post``); under ``with col.join(opt)``
the wire op is Sum and the result is divided by the number of ranks that contributed to the
step (``Engine.active``). ``docs/overlap.md`` has the measurements behind the defaults.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
import traceback

import numpy as np

from .algorithms import HierRing, Ring, layout
from .allreduce import allreduce_
from .checks import StepMismatchError, agree_by_message, checked_allreduce
from .context import MISMATCH, TAG_BUCKETS
from .reduce_ops import Sum
from .safety import digest
from .shared_buckets import DONE, READY, reducer_for
from .shared_window import StepRounds
from .tuning import choose_in_flight, choose_own


class Work:
    """One bucket's reduction, started by an engine: ``rule`` (prescale, op on the wire), the
    ``ring`` once posted (non-blocking engine), ``done`` once reduced."""

    __slots__ = ("bucket", "rule", "ring", "done", "t0", "check", "agreed", "outcome", "owner")

    def __init__(self, bucket, rule, done=False):
        self.bucket, self.rule, self.ring, self.done = bucket, rule, None, done
        self.t0 = 0.0  # when its reduction started (for the timeline)
        # the step check this reduction carries (NOTE(observability)), and its verdict when it
        # was reached apart from the ring (None: the ring's merged tags say)
        self.check = self.agreed = None
        self.outcome = None  # the shared engine's step-check round: whether every rank agreed
        self.owner = None  # the non-blocking engine that started it


class Engine:
    """The interface (and the part every engine shares: the reduction rule)."""

    def __init__(self, ctx, op, predivide=1.0):
        self.ctx = ctx
        self.op = op
        self.size = ctx.size
        self.predivide = predivide  # gradient_predivide_factor
        # under ``with col.join(opt)``: the number of ranks that contribute to this step (the
        # gradients are summed and divided by it); None outside a join
        self.active = None
        self.busy_s = 0.0  # seconds spent reducing
        self.step_check = None  # NOTE(observability): collective.checks.StepCheck, or None

    def _record(self, work):
        """The timeline's span of a bucket's reduction (NOTE(observability))."""
        tl = self.ctx.timeline
        if tl is not None:
            b = work.bucket
            tl.span(1, f"bucket {b.index}", work.t0, time.perf_counter(),
                    {"bucket": b.index, "bytes": b.wire.nbytes})

    def rule(self, bucket):
        """(prescale, op on the wire) of ``bucket``: see the module docstring. With
        ``gradient_predivide_factor`` f (Average only), Horovod's: divide by f before and by
        P/f after the sum (``post``). Under a join the sum is divided by the contributors
        after the reduction, so the wire op is Sum."""
        compressed = bucket.wire is not bucket.host
        if not self.op.average:
            return 0, self.op
        f, P = self.predivide, self.size
        pre = f if f != 1.0 else (P if compressed and P > 1 else 0)
        return pre, (Sum if compressed or self.active is not None else self.op)

    def post(self, bucket) -> float:
        """The factor the reduced ``bucket`` is multiplied by (see ``rule``)."""
        if not self.op.average:
            return 1.0
        pre = self.rule(bucket)[0] or 1.0
        if self.active is not None:
            return pre / self.active
        if bucket.wire is not bucket.host:
            return pre / self.size if self.predivide != 1.0 else 1.0
        return self.predivide

    def reduce(self, bucket, prescale, op):
        """Pack ``bucket`` and reduce it with a blocking ``allreduce_``, by the algorithm
        ``auto`` predicts fastest for its size among our own (never the MPI library's)."""
        wire = bucket.pack(prescale)
        check = self.step_check if bucket.index == 0 else None
        if check is not None and check.fields is not None:  # NOTE(observability)
            checked_allreduce(self.ctx, wire, op, choose_own(self.ctx, wire.nbytes), check)
            return
        allreduce_(wire, op=op, algorithm=choose_own(self.ctx, wire.nbytes))

    def start(self, bucket) -> Work:
        raise NotImplementedError

    def progress(self):
        """Advance what is in flight without waiting (called from every gradient hook)."""

    def wait_all(self):
        """Finish every started bucket; its gradients hold the result afterwards."""

    def close(self):
        """Release the engine's resources (when its optimizer is garbage collected)."""


class InlineEngine(Engine):
    def start(self, bucket) -> Work:
        t0 = time.perf_counter()
        work = Work(bucket, self.rule(bucket), done=True)
        work.t0 = t0
        self.reduce(bucket, *work.rule)
        bucket.unpack(self.post(bucket))
        self._record(work)
        self.busy_s += time.perf_counter() - t0
        return work


class ReducerThread:
    """The one communication thread of a Context, shared by its thread engines: jobs run one
    after another in submission order, which is the order of the hooks, the same on every rank.
    NOTE: one thread per engine hung two optimizers stepping after one backward: their threads
    made blocking collective calls in different orders on different ranks."""

    def __init__(self):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="collective-reducer", daemon=True).start()

    def _run(self):
        while True:
            engine, work = self.jobs.get()
            engine.run(work)


class ThreadEngine(Engine):
    """Jobs run on the Context's ReducerThread, in submission order (the bucket order,
    identical on every rank). Only packing and communication run there; writing the result
    back (device copies, decompression) runs on the caller's thread in wait_all()."""

    def __init__(self, ctx, op, predivide=1.0):
        super().__init__(ctx, op, predivide)
        self._cond = threading.Condition()
        self._outstanding = 0
        self._error = None
        self._started: list[Work] = []

    def start(self, bucket) -> Work:
        if self.ctx.reducer_thread is None:
            self.ctx.reducer_thread = ReducerThread()
        work = Work(bucket, self.rule(bucket))
        self._started.append(work)
        with self._cond:
            self._outstanding += 1
        self.ctx.reducer_thread.jobs.put((self, work))
        return work

    def run(self, work):
        """On the reducer thread: one bucket's reduction."""
        try:
            if self._error is None:  # after a failure, drain without communicating
                t0 = work.t0 = time.perf_counter()
                self.reduce(work.bucket, *work.rule)
                self._record(work)
                self.busy_s += time.perf_counter() - t0
        except BaseException as exc:  # re-raised on the main thread by wait_all()
            exc.thread_traceback = traceback.format_exc()
            self._error = exc
        finally:
            with self._cond:
                work.done = True
                self._outstanding -= 1
                self._cond.notify_all()

    def wait_all(self):
        with self._cond:
            while self._outstanding:
                self._cond.wait()
        started, self._started = self._started, []
        if self._error is not None:
            exc = self._error
            if isinstance(exc, StepMismatchError):  # NOTE(observability): the same error as
                raise StepMismatchError(str(exc)) from exc  # the other engines raise
            raise RuntimeError("gradient reduction failed on the communication thread:\n"
                               + getattr(exc, "thread_traceback", repr(exc))) from exc
        for work in started:
            work.bucket.unpack(self.post(work.bucket))


class InFlight(Engine):
    """An engine whose reductions advance on the caller's thread: ``_queue`` holds the works
    started and not finished, ``_advance()`` moves them on without waiting."""

    _queue: collections.deque

    def _advance(self):
        raise NotImplementedError

    def progress(self):
        if self._queue:
            t0 = time.perf_counter()
            self._advance()
            self.busy_s += time.perf_counter() - t0


class NonBlockingEngine(InFlight):
    """Every bucket a ``Ring`` in flight, progressed from the hooks (see the module docstring),
    one ring at a time in bucket order: the next is posted when the one before has finished.

    NOTE: MPI moves a non-blocking message only inside MPI calls of this process (MPICH has no
    progress thread by default), so the rings advance in ``progress()``, i.e. between the
    gradients backward produces. One ring at a time, because rings in flight together slowed
    each other down: measured 2.8 ms to synchronize 5.1 MiB in 2 buckets with both posted at
    once, 1.8 ms one after the other (P = 2, 2-core box; docs/overlap.md).

    NOTE: across nodes every progress() tests the ring in flight up to ``BURST`` times: over
    TCP, MPICH's UCX moves one fragment (~64 KB) per MPI_Test, so a 4 MiB ring tested once per
    hook needed 66 hooks (157 ms with a hook every 2 ms, 2 x 1 hosts at 1 Gbit/s); tested up
    to 16 times per hook it finished in 13 hooks, 32 ms (the link's time), for 3-4 ms of CPU.
    """

    BURST = 16

    def __init__(self, ctx, op, predivide=1.0):
        super().__init__(ctx, op, predivide)
        self._block = ctx.config.wait == "block"
        self._burst = self.BURST if ctx.topo is not None and ctx.topo.num_nodes > 1 else 1
        # NOTE: one queue of rings per Context, shared by its non-blocking engines: one ring
        # at a time on reducer_comm, in the same order on every rank, so one tag is enough
        # (MPI keeps the messages of one (source, tag) in order) and the step check may take
        # bucket 0's first message with ANY_TAG. Two optimizers' buckets fill in one backward
        # when each has its own parameters (one loss, an optimizer per parameter group): with
        # a queue each, their rings in flight took each other's messages ("Message truncated").
        if ctx.ring_queue is None:
            ctx.ring_queue = collections.deque()
        self._queue: collections.deque[Work] = ctx.ring_queue  # every engine's, not finished
        self._pending = 0  # this engine's works in the queue
        self._finished: list[Work] = []  # reduced, not yet written back
        self._scratch: dict[int, np.ndarray] = {}  # bucket index -> room for one segment

    def _post(self, work):
        """Pack the bucket and post its ring (once)."""
        if work.ring is not None:
            return
        ctx, bucket, (prescale, op) = self.ctx, work.bucket, work.rule
        wire = bucket.pack(prescale)
        hierarchical = choose_in_flight(ctx, wire.nbytes) == "hierarchical"
        if hierarchical:
            nbytes = HierRing.scratch_bytes(ctx.topo, wire.size, wire.itemsize)
        else:
            lay = layout(ctx, wire.size)
            nbytes = max(lay[0]) * wire.itemsize
        scratch = self._scratch.get(bucket.index)
        if scratch is None or scratch.nbytes < nbytes:
            scratch = self._scratch[bucket.index] = np.empty(nbytes, np.uint8)
        scratch = scratch[:nbytes].view(wire.dtype)
        divide = ctx.size if op.average and ctx.size > 1 else 0
        check = self.step_check if bucket.index == 0 else None  # NOTE(observability)
        work.check = check if check is not None and check.fields is not None else None
        work.t0 = time.perf_counter()
        if hierarchical:  # across nodes: the node's ranks share each link (see tuning)
            topo = ctx.topo
            work.ring = HierRing(topo, topo.reducer_node, topo.reducer_cross, ctx.local_rank,
                                 ctx.local_size, wire, op.ufunc, divide, scratch, TAG_BUCKETS)
            if work.check is not None:  # NOTE: HierRing carries no tag: one small message
                work.agreed = agree_by_message(ctx.reducer_comm, work.check)
        else:
            work.ring = Ring(ctx.reducer_comm, ctx.rank, ctx.size, wire, op.ufunc, divide, lay,
                             scratch, TAG_BUCKETS, check=work.check)

    def _done(self, work):
        """Its ring finished (and left the queue): verify the step check it carried
        (NOTE(observability)), record."""
        work.done = True
        self._pending -= 1
        self._finished.append(work)
        check = work.check
        if check is not None:
            try:
                check.verify(self.ctx.reducer_comm, work.agreed)
            except BaseException:  # the optimizers are unusable now; leave nothing in flight
                for other in self._queue:
                    other.owner._pending -= 1
                self._queue.clear()
                raise
        self._record(work)

    def start(self, bucket) -> Work:
        t0 = time.perf_counter()
        work = Work(bucket, self.rule(bucket))
        work.owner = self
        self._queue.append(work)
        self._pending += 1
        self._advance()
        self.busy_s += time.perf_counter() - t0
        return work

    def _advance(self):
        """Post the first unfinished ring (any engine's), test it; on to the next while they
        finish."""
        queue = self._queue
        while queue:
            work = queue[0]
            owner = work.owner
            owner._post(work)
            ring = work.ring
            for _ in range(owner._burst):
                if ring.test():
                    break
            else:
                return
            owner._done(queue.popleft())

    def wait_all(self):
        """Until this engine's rings finished (and every ring queued before them)."""
        t0 = time.perf_counter()
        queue = self._queue
        while self._pending:
            work = queue[0]
            owner = work.owner
            owner._post(work)
            work.ring.wait(owner._block)
            owner._done(queue.popleft())
        finished, self._finished = self._finished, []
        for work in finished:
            work.bucket.unpack(self.post(work.bucket))
        self.busy_s += time.perf_counter() - t0


class SharedEngine(InFlight):
    """Buckets in the node's shared window (``window``: a ``shared_buckets.BucketWindow``
    holding every bucket's wire), reduced in place by every rank's segment (see the module
    docstring and ``collective/shared_buckets.py`` for the protocol and the arithmetic).

    NOTE: the step check (``collective/checks.py``) of bucket 0 is one round of a small node
    window (``StepRounds``: a store, then a few loads of the others' control words, no
    message; ``ctx.step_rounds``, shared by the optimizers; not the Context's window, whose
    rounds are the handshakes and small allreduces of collective calls a model may make during
    backward, e.g. SyncBatchNorm's), started when bucket 0 is handed over and finished before
    bucket 0 is reduced: the ranks meet there before any of them reduces a bucket, so ranks
    that step different optimizers (each has its own bucket window) or different steps find
    out there instead of waiting for flags that never come. Without the check
    (COLLECTIVE_STEP_CHECK=0) a rank that never reaches the step is named by the stall
    watchdog.
    """

    def __init__(self, ctx, op, predivide=1.0, window=None):
        super().__init__(ctx, op, predivide)
        if window is None:
            raise ValueError("SharedEngine needs the buckets' shared window")
        self.window = window
        # NOTE: the step check's rounds: one window per Context, so that ranks stepping
        # different optimizers meet in the same round; made (collectively, as the buckets'
        # window is) with the first shared engine
        if ctx.step_rounds is None:
            ctx.step_rounds = StepRounds(ctx.reducer_comm)
        self._rounds = ctx.step_rounds
        self.gen = 1  # the number of this step's reductions in the window's flags
        self._queue: collections.deque[Work] = collections.deque()  # published, not reduced
        self._reduced: list[Work] = []  # this rank's segment written, not yet complete

    def start(self, bucket) -> Work:
        t0 = time.perf_counter()
        work = Work(bucket, self.rule(bucket))
        work.t0 = t0
        bucket.pack(work.rule[0])  # in place, in the window (or compressed into it)
        check = self.step_check if bucket.index == 0 else None
        if check is not None and check.fields is not None:  # NOTE(observability)
            work.check, work.agreed = check, digest(("shared buckets", check.fp))
            self._rounds.post(work)
        self.window.publish(bucket.index, READY, self.gen)
        self._queue.append(work)
        self._advance()
        self.busy_s += time.perf_counter() - t0
        return work

    def _checked(self, work, wait) -> bool:
        """Bucket 0's step check finished (``wait``: wait for it); raises StepMismatchError on
        every rank when the ranks' steps differ."""
        if not self._rounds.finish(work, wait):
            return False
        check, fp = work.check, work.agreed
        work.check = None
        check.verify(self.ctx.reducer_comm, fp if work.outcome else MISMATCH)
        return True

    def _reduce(self, work):
        """Every rank published this bucket: reduce this rank's segment into every rank's."""
        ctx, bucket, win = self.ctx, work.bucket, self.window
        wire, op = bucket.wire, work.rule[1]
        counts, offsets = layout(ctx, wire.size)
        lo = offsets[ctx.rank]
        fn = reducer_for(wire.dtype, op.ufunc, ctx.size)
        fn(win.arrays[bucket.index], ctx.rank, lo, lo + counts[ctx.rank],
           ctx.size if op.average else 0)
        win.publish(bucket.index, DONE, self.gen)
        self._reduced.append(work)

    def _advance(self, wait=False):
        """Reduce the published buckets, in order, while every rank has published them."""
        queue, win, g = self._queue, self.window, self.gen
        while queue:
            work = queue[0]
            b = work.bucket.index
            if work.check is not None:
                # NOTE: every rank posted the check's round after packing bucket 0, so the
                # round's end says bucket 0 is ready everywhere: no wait on its flags
                if not self._checked(work, wait):
                    return
            elif wait:
                win.wait(b, READY, g)
            elif not win.reached(b, READY, g):
                return
            self._reduce(queue.popleft())

    def wait_all(self):
        t0 = time.perf_counter()
        self._advance(wait=True)
        reduced, self._reduced = self._reduced, []
        for work in reduced:
            self.window.wait(work.bucket.index, DONE, self.gen)
            work.done = True
            self._record(work)
            work.bucket.unpack(self.post(work.bucket))
        self.gen += 1
        self.busy_s += time.perf_counter() - t0


ENGINES = {"nonblocking": NonBlockingEngine, "thread": ThreadEngine, "inline": InlineEngine,
           "shared": SharedEngine}


def default_engine(on_cpu: bool, shared: bool = False) -> str:
    """``overlap="auto"``: for CPU buckets the shared window where it can be had (``shared``:
    every rank on one node, COLLECTIVE_SHM on), else non-blocking rings; a communication
    thread for CUDA ones (their reduction is staged through host memory, and a GPU leaves the
    cores free)."""
    if not on_cpu:
        return "thread"
    return "shared" if shared else "nonblocking"

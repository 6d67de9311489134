"""DistributedOptimizer: drop-in data-parallel gradient averaging (Horovod / PyTorch DDP style).

    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                   named_parameters=model.named_parameters())
    loss.backward()      # buckets are reduced while backward is still running
    opt.step()           # waits for the last bucket, then the wrapped optimizer steps

How it works (the reducer of PyTorch DDP, the API of Horovod):
- the parameters are grouped into buckets (collective/buckets.py); each ``.grad`` is a view into
  its bucket's flat buffer, so backward accumulates straight into the buffer that is reduced;
- a post-accumulate-grad hook per parameter counts it as ready; when every parameter of a
  bucket is ready the bucket is handed to the communication engine, buckets strictly in index
  order on every rank (a bucket that is ready early waits for its predecessors), so the ranks
  issue their collectives in the same order whatever the timing;
- ``step()`` (or ``synchronize()``) hands over the buckets whose hooks did not fire (unused
  parameters: reduced as they are, zeros after zero_grad, so no rank skips a collective),
  waits for all of them, then runs the wrapped optimizer's step.

Rules of use (as with Horovod): every rank calls backward() and step() equally often (k
backward passes per step with ``backward_passes_per_step=k``); zero_grad() goes before backward()
or after step(), never in between; and no other collective call goes between backward() and
step() either (reductions may still be in flight on collective's communicator, on another
thread with ``overlap="thread"``): average the loss for logging after step().

The returned object is an instance of a class created on the fly that derives from the wrapped
optimizer's class (``isinstance(opt, type(optimizer))`` holds, as in Horovod). It does not copy
the optimizer: every attribute it does not define itself (param_groups, state, defaults, ...)
is read from and written to the wrapped optimizer, so both always see the same state.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import traceback
import warnings
import weakref

import numpy as np

from .allreduce import allreduce_
from .buckets import build_buckets
from .collectives import allgather_object
from .comm import init, size
from .compression import Compression, Compressor
from .reduce_ops import Average, Sum, as_op

# How the reductions overlap backward. Three engines exist, selected by ``overlap=``; all of
# them start the buckets in the same order on every rank:
#   "nonblocking": MPI_Iallreduce per bucket, started from the hook that completes it and
#       progressed by MPI_Testall from every later hook; step() calls MPI_Waitall. The LAST
#       bucket (nothing left to overlap with) uses the blocking collective.allreduce_.
#   "thread": one communication thread runs collective.allreduce_ (algorithm="auto") per bucket.
#   "inline": no overlap, each bucket is reduced inside the hook that completes it (baseline).
# MEASURED on the project's 2-core machine (shared with other jobs: load 2-16), 2 ranks, one
# BLAS thread each, step time against the plain optimizer's (MLP 784-512x3-10, batch 128 per
# rank, 6 buckets of 0.5 MB; benchmarks/scaling.py prints the same study). Over 15 runs
# "nonblocking" had the fastest step 9 times, "inline" 5 times, "thread" once; "thread" was
# the slowest in most runs (its Python-level algorithms contend for the GIL with backward's
# Python dispatch, and for the same 2 cores). How much communication is hidden is at the edge
# of what this machine can resolve: "nonblocking" hid 78-89% of the reduction time in 3 runs
# where the no-overlap "inline" baseline read <= 0%, and 0-25% in the later benchmark runs,
# where the baseline itself read up to 34% (the noise floor). MPI progresses a non-blocking
# reduction in C, inside the Testall calls from the hooks, without holding the GIL. So
# "auto" means "nonblocking" for CPU buckets; CUDA buckets use "thread" (collective.allreduce_
# stages device memory through the host, and a GPU leaves the CPU cores free for that).
DEFAULT_OVERLAP = "auto"


# -- the collective calls this module makes ------------------------------------------------------

def _allreduce_(tensor, op):
    """Reduce one flat bucket in place: THE place where DistributedOptimizer communicates."""
    return allreduce_(tensor, op=op, algorithm="auto")


def _check_same_everywhere(signature, what):
    """Raise on every rank, naming the first difference and the ranks, if the ranks' ``signature``
    (a list of entries) differ. One allgather."""
    everyone = allgather_object(signature)
    ref = everyone[0]
    for r, sig in enumerate(everyone[1:], start=1):
        if sig == ref:
            continue
        for pos, (a, b) in enumerate(zip(ref, sig, strict=False)):
            if a != b:
                raise ValueError(f"{what} differ across ranks: entry {pos} is {a} on rank 0 "
                                 f"but {b} on rank {r}")
        raise ValueError(f"{what} differ across ranks: rank 0 has {len(ref)} entries, rank {r} "
                         f"has {len(sig)} (first extra entry: "
                         f"{(ref if len(ref) > len(sig) else sig)[min(len(ref), len(sig))]})")


# -- communication engines ------------------------------------------------------------------------

class _ThreadEngine:
    """Runs jobs (bucket reductions) one after another, in submission order, on one daemon
    thread. Submission order is the bucket order, identical on every rank. Only the
    communication runs on the thread; ``finish`` callbacks (decompression: device kernels)
    run on the caller's thread in wait_all()."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._outstanding = 0
        self._error = None
        self._thread = None
        self.busy_s = 0.0  # seconds spent in jobs (communication)
        self._finish = []

    def submit(self, job, finish=None):
        if finish is not None:
            self._finish.append(finish)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="collective-reducer",
                                            daemon=True)
            self._thread.start()
        with self._cond:
            self._outstanding += 1
        self._queue.put(job)

    def _run(self):
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if self._error is None:  # after a failure, drain without communicating
                    t0 = time.perf_counter()
                    job()
                    self.busy_s += time.perf_counter() - t0
            except BaseException as exc:  # re-raised on the main thread by wait_all()
                exc.thread_traceback = traceback.format_exc()
                self._error = exc
            finally:
                with self._cond:
                    self._outstanding -= 1
                    self._cond.notify_all()

    def progress(self):
        pass

    def close(self):
        """End the thread (when its optimizer is garbage collected)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread = None

    def wait_all(self):
        with self._cond:
            while self._outstanding:
                self._cond.wait()
        if self._error is not None:
            exc = self._error
            raise RuntimeError("gradient reduction failed on the communication thread:\n"
                               + getattr(exc, "thread_traceback", repr(exc))) from exc
        finish, self._finish = self._finish, []
        for fn in finish:
            fn()


class _InlineEngine:
    """No overlap (the baseline the others are measured against): each bucket is reduced on
    the calling thread as soon as it is handed over, i.e. inside the hook that completed it."""

    def __init__(self):
        self.busy_s = 0.0

    def submit(self, job, finish=None):
        t0 = time.perf_counter()
        job()
        self.busy_s += time.perf_counter() - t0
        if finish is not None:
            finish()

    def progress(self):
        pass

    def wait_all(self):
        pass


_COMM: dict = {}


def _reducer_comm():
    """A duplicate of the world communicator, shared by every DistributedOptimizer's
    non-blocking reductions: they never match the user's or collective's own messages (every
    rank posts its reductions in the same order, so one communicator suffices)."""
    if "comm" not in _COMM:
        _COMM["comm"] = init().Dup()
    return _COMM["comm"]


class _NonBlockingEngine(_InlineEngine):
    """MPI_Iallreduce per bucket (CPU buffers), progressed by MPI_Test from the hooks;
    ``submit`` (inherited) runs a blocking reduction here and now, for the last bucket."""

    def __init__(self):
        from .comm import mpi

        super().__init__()
        self._MPI = mpi()
        self._comm = _reducer_comm()
        self._pending = []

    def submit_allreduce(self, buf: np.ndarray, finish):
        req = self._comm.Iallreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self._pending.append((req, finish))

    def progress(self):
        if self._pending:
            self._MPI.Request.Testall([req for req, _ in self._pending])

    def wait_all(self):
        if self._pending:
            t0 = time.perf_counter()
            self._MPI.Request.Waitall([req for req, _ in self._pending])
            for _, finish in self._pending:
                if finish is not None:
                    finish()
            self.busy_s += time.perf_counter() - t0
            self._pending = []


# id(parameter) -> (weak DistributedOptimizer, weak parameter): who reduces its gradient
_OWNERS: dict = {}

ENGINES = {"thread": _ThreadEngine, "nonblocking": _NonBlockingEngine, "inline": _InlineEngine}


# -- the optimizer ----------------------------------------------------------------------------

class _State:
    """Everything DistributedOptimizer adds, in one attribute (``opt._dist``)."""


class _DistributedOptimizer:
    """Methods of the dynamic subclass; see DistributedOptimizer()."""

    # Attribute access: ours live in the instance (``_dist``, ``_wrapped``); all others belong to
    # the wrapped optimizer, so its param_groups/state/defaults ARE this object's.
    def __getattr__(self, name):
        if name in ("_dist", "_wrapped"):
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "_wrapped"), name)

    def __setattr__(self, name, value):
        if name in ("_dist", "_wrapped"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._wrapped, name, value)

    def __delattr__(self, name):
        delattr(self._wrapped, name)

    # -- set-up ----------------------------------------------------------------------------
    def _dist_setup(self, optimizer, named_parameters, op, compression, backward_passes_per_step,
                    bucket_cap_mb, overlap):
        d = _State()
        object.__setattr__(self, "_wrapped", optimizer)
        object.__setattr__(self, "_dist", d)
        op = as_op(op)
        if op not in (Average, Sum):
            raise ValueError(f"DistributedOptimizer supports op=Average or op=Sum, got {op!r}")
        if not (isinstance(compression, Compressor)
                or (isinstance(compression, type) and issubclass(compression, Compressor))):
            raise TypeError(f"compression must be Compression.none or Compression.fp16, "
                            f"got {compression!r}")
        if int(backward_passes_per_step) != backward_passes_per_step \
                or backward_passes_per_step < 1:
            raise ValueError(f"backward_passes_per_step must be a positive integer, "
                             f"got {backward_passes_per_step!r}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        if overlap not in ("auto", *ENGINES):
            raise ValueError(f"overlap must be 'auto' or one of {', '.join(ENGINES)}, "
                             f"got {overlap!r}")
        d.op, d.average = op, op is Average
        d.compression = compression
        d.k = int(backward_passes_per_step)
        d.size = size()
        names, params = self._dist_named_params(optimizer, named_parameters)

        signature = [(n, tuple(int(s) for s in p.shape), np.dtype(p.dtype).str, p.device.name)
                     for n, p in zip(names, params, strict=True)]
        settings = [("op", "average" if d.average else "sum"), ("compression", repr(compression)),
                    ("backward_passes_per_step", d.k), ("bucket_cap_mb", float(bucket_cap_mb)),
                    ("overlap", overlap)]  # "auto" resolves to the same on every rank
        _check_same_everywhere(settings + signature, "DistributedOptimizer parameters (name, "
                               "shape, dtype, device type) or settings")

        d.names, d.params = names, params
        d.buckets = build_buckets(names, params, max(1, int(bucket_cap_mb * 2**20)))
        on_cpu = all(b.device.name == "cpu" for b in d.buckets)
        if overlap == "auto":
            overlap = "nonblocking" if on_cpu else "thread"
        if overlap == "nonblocking" and not on_cpu:
            raise ValueError("overlap='nonblocking' needs CPU parameters (MPI reads host memory)")
        d.engine = ENGINES[overlap]()
        if overlap == "thread":
            weakref.finalize(self, d.engine.close)
        d.overlap = overlap
        # the wire buffers of compressed buckets, allocated once
        d.wire = [None if compression.wire_dtype(b.dtype) == b.dtype else
                  _wire_tensor(b, compression.wire_dtype(b.dtype)) for b in d.buckets]
        d.skip = False
        d.stats = {"steps": 0, "exposed_s": 0.0}
        self._dist_reset()
        self._dist_claim(params)
        d.hooks = [p.register_post_accumulate_grad_hook(self._dist_make_hook(b, j))
                   for b, bucket in enumerate(d.buckets) for j, p in enumerate(bucket.params)]
        weakref.finalize(self, _remove_hooks, d.hooks)

    def _dist_claim(self, params):
        """Become the parameters' only DistributedOptimizer: a previous one that is still alive
        stops reacting to backward (two would keep moving each other's .grad views)."""
        me, previous = weakref.ref(self), {}
        for p in params:
            old = _OWNERS.get(id(p))
            prev = old[0]() if old is not None and old[1]() is p else None
            if prev is not None and prev is not self:
                previous[id(prev)] = prev
            _OWNERS[id(p)] = (me, weakref.ref(p))
        for prev in previous.values():
            _remove_hooks(prev._dist.hooks)
            warnings.warn("a second DistributedOptimizer was created for parameters that "
                          "already had one; the first one no longer reduces gradients",
                          stacklevel=4)

    @staticmethod
    def _dist_named_params(optimizer, named_parameters):
        """(names, params) of the optimizer's parameters that require grad, registration order."""
        in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
        if named_parameters is None:
            named = [(f"param.{g}.{i}", p) for g, group in enumerate(optimizer.param_groups)
                     for i, p in enumerate(group["params"])]
        else:
            named = list(named_parameters)
            if named and not (isinstance(named[0], tuple) and len(named[0]) == 2):
                raise TypeError("named_parameters must be (name, parameter) pairs, e.g. "
                                "model.named_parameters()")
        seen_names, seen_params = {}, {}
        for name, p in named:
            if name in seen_names:
                raise ValueError(f"DistributedOptimizer: duplicate parameter name {name!r} in "
                                 f"named_parameters; names must be unique")
            if id(p) in seen_params:
                raise ValueError(f"DistributedOptimizer: the same parameter appears twice, as "
                                 f"{seen_params[id(p)]!r} and {name!r}")
            seen_names[name] = p
            seen_params[id(p)] = name
        missing = [i for i, p in enumerate(in_optimizer) if id(p) not in seen_params]
        if missing:
            raise ValueError(f"DistributedOptimizer: named_parameters does not name "
                             f"{len(missing)} of the optimizer's parameters (shapes "
                             f"{[tuple(in_optimizer[i].shape) for i in missing[:5]]}); pass "
                             f"model.named_parameters() of the model being optimized")
        wanted = {id(p) for p in in_optimizer}
        pairs = [(n, p) for n, p in named if id(p) in wanted and p.requires_grad]
        return [n for n, _ in pairs], [p for _, p in pairs]

    def _dist_reset(self):
        d = self._dist
        d.passes = [[0] * len(b.params) for b in d.buckets]
        d.waiting = [len(b.params) for b in d.buckets]  # params not yet ready, per bucket
        d.next = 0  # the next bucket to hand over; all before it are in flight or done
        d.dirty = False  # a hook fired since the last synchronize
        d.reduced = False  # synchronize() ran and step() has not yet

    # -- backward: hooks ---------------------------------------------------------------------
    def _dist_make_hook(self, b, j):
        # a weak reference: a DistributedOptimizer that was dropped stops reacting to backward
        ref = weakref.ref(self)

        def hook(param):
            opt = ref()
            if opt is not None:
                opt._dist_on_grad(b, j)
        return hook

    def _dist_on_grad(self, b, j):
        d = self._dist
        bucket = d.buckets[b]
        d.dirty = True
        d.reduced = False
        if not bucket.is_view(j):  # .grad was set to None or replaced since the last step
            bucket.reattach(j)
        d.passes[b][j] += 1
        if d.passes[b][j] > d.k:
            raise RuntimeError(
                f"DistributedOptimizer: the gradient of {bucket.names[j]!r} was computed "
                f"{d.passes[b][j]} times before step(); with backward_passes_per_step={d.k} "
                f"call step() (or synchronize()) after every {d.k} backward pass(es)")
        if d.passes[b][j] == d.k:
            d.waiting[b] -= 1
            if d.waiting[b] == 0:
                self._dist_start_ready()
        d.engine.progress()

    def _dist_start_ready(self, everything=False):
        """Hand over buckets in index order while the next one is complete (or all of them)."""
        d = self._dist
        while d.next < len(d.buckets) and (everything or d.waiting[d.next] == 0):
            self._dist_start(d.next)
            d.next += 1

    def _dist_start(self, b):
        d = self._dist
        bucket, wire = d.buckets[b], d.wire[b]
        finish = None
        if wire is None:
            buf, op = bucket.flat, d.op
        else:
            if d.average and d.size > 1:
                # divide BEFORE casting to the wire dtype: the sum of P float16 values may
                # overflow where their average would not
                bucket.flat.mul_(1.0 / d.size)
            d.compression.compress(bucket.flat, out=wire)
            buf, op = wire, Sum

            def finish():
                d.compression.decompress(wire, None, out=bucket.flat)
        if d.overlap == "nonblocking" and b != len(d.buckets) - 1:
            if op is Average and d.size > 1:
                def finish():
                    bucket.flat.mul_(1.0 / d.size)
            d.engine.submit_allreduce(buf.numpy(), finish)  # MPI sums in place
            return
        # The thread and inline engines, and the LAST bucket of the non-blocking engine: it is
        # handed over when no backward is left to overlap with, so the fastest blocking
        # algorithm wins there: collective.allreduce_ (algorithm="auto") measured 1.6x faster
        # than MPI_Iallreduce + Wait at 5 MB on 2 ranks. The choice depends only on the index,
        # so every rank makes the same one.
        d.engine.submit(lambda: _allreduce_(buf, op), finish)

    # -- public API ------------------------------------------------------------------------
    def synchronize(self):
        """Wait until every bucket is reduced; buckets whose hooks did not all fire (unused
        parameters, fewer backward passes) are reduced as they are."""
        d = self._dist
        t0 = time.perf_counter()
        for bucket in d.buckets[d.next:]:
            for j in range(len(bucket.params)):
                if not bucket.is_view(j):
                    bucket.reattach(j)
        self._dist_start_ready(everything=True)
        d.engine.wait_all()
        d.stats["exposed_s"] += time.perf_counter() - t0
        d.stats["steps"] += 1
        self._dist_reset()
        d.reduced = True

    @contextlib.contextmanager
    def skip_synchronize(self):
        """``with opt.skip_synchronize(): opt.step()`` steps without reducing again (after an
        explicit ``synchronize()``, e.g. to clip the averaged gradients)."""
        d = self._dist
        d.skip = True
        try:
            yield
        finally:
            d.skip = False

    def step(self, *args, **kwargs):
        d = self._dist
        if not d.skip:
            if d.reduced and not d.dirty:
                warnings.warn("optimizer.step() after optimizer.synchronize() without "
                              "`with optimizer.skip_synchronize():`; not reducing again",
                              stacklevel=2)
            else:
                self.synchronize()
        elif d.dirty:
            raise RuntimeError("DistributedOptimizer: step() under skip_synchronize() but the "
                               "gradients of the last backward were not synchronized; call "
                               "optimizer.synchronize() first")
        out = self._wrapped.step(*args, **kwargs)
        d.reduced = False
        return out

    def zero_grad(self, set_to_none=None):
        """Zero the gradients in place. The ``.grad`` stay views into the buckets (never None,
        whatever ``set_to_none`` says), so backward keeps writing into the reduced buffers."""
        d = self._dist
        if d.dirty:
            raise RuntimeError(
                "DistributedOptimizer: zero_grad() was called after backward() and before "
                "step() or synchronize(); the gradients are being reduced, and zeroing them "
                "now would lose them (and race with the communication). Call zero_grad() "
                "before backward() or after step().")
        for bucket in d.buckets:
            bucket.zero_()
            for j in range(len(bucket.params)):
                if not bucket.is_view(j):
                    bucket.reattach(j)

    def communication_stats(self, reset=False):
        """{'steps', 'exposed_s' (time step()/synchronize() waited), 'busy_s' (time the
        engine spent reducing)}."""
        d = self._dist
        out = dict(d.stats, busy_s=d.engine.busy_s)
        if reset:
            d.stats = {"steps": 0, "exposed_s": 0.0}
            d.engine.busy_s = 0.0
        return out

    @property
    def buckets(self):
        """The gradient buckets, in reduction order."""
        return self._dist.buckets

    def __repr__(self):
        d = self._dist
        return (f"DistributedOptimizer({self._wrapped!r}, {len(d.params)} parameters in "
                f"{len(d.buckets)} buckets, size={d.size}, op={'Average' if d.average else 'Sum'}"
                f", compression={d.compression!r}, backward_passes_per_step={d.k})")


def _remove_hooks(handles):
    for handle in handles:
        handle.remove()


def _wire_tensor(bucket, dtype):
    import dlsys as ds

    return ds.Tensor.from_array(bucket.device.full((bucket.numel,), 0, dtype), bucket.device)


def DistributedOptimizer(optimizer, named_parameters=None, op=Average,
                         compression=Compression.none, backward_passes_per_step=1,
                         bucket_cap_mb=25, overlap=DEFAULT_OVERLAP):
    """Wrap ``optimizer`` so that ``step()`` uses gradients averaged (op=Average, the default)
    or summed (op=Sum) over all ranks. See the module docstring.

    ``named_parameters``: (name, parameter) pairs, e.g. ``model.named_parameters()``; names are
    checked to agree on every rank. ``compression``: ``Compression.none`` or
    ``Compression.fp16``. ``backward_passes_per_step=k``: gradients of k backward passes are
    summed locally, then reduced once (scale the loss by 1/k to average them, as with Horovod).
    ``bucket_cap_mb``: the size of the fused buffers. ``overlap``: "auto" (default: MPI
    non-blocking reductions for CPU parameters, a communication thread for CUDA ones),
    "nonblocking", "thread" or "inline" (no overlap); see DEFAULT_OVERLAP's comment.
    """
    base = type(optimizer)
    if hasattr(base, "_dist_setup"):
        raise TypeError("the optimizer is already a DistributedOptimizer")
    members = {k: v for k, v in _DistributedOptimizer.__dict__.items()
               if k not in ("__dict__", "__weakref__")}
    cls = type(base.__name__, (base,), members)
    self = object.__new__(cls)
    cls._dist_setup(self, optimizer, named_parameters, op, compression,
                    backward_passes_per_step, bucket_cap_mb, overlap)
    return self

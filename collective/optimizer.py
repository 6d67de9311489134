"""DistributedOptimizer: drop-in data-parallel gradient averaging (Horovod's torch/optimizer.py).

    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                   named_parameters=model.named_parameters())
    loss.backward()      # buckets are reduced while backward is still running
    opt.step()           # waits for the last bucket, then the wrapped optimizer steps

The work is the Reducer's (``collective/reducer.py``: buckets, hooks, order) and an engine's
(``collective/engines.py``: how reductions overlap backward); this is the optimizer face.

Rules of use (as with Horovod): every rank calls backward() and step() equally often (k
backward passes per step with ``backward_passes_per_step=k``); zero_grad() goes before backward()
or after step(), never in between; and no other collective call goes between backward() and
step() either (reductions may still be in flight, on another thread with ``overlap="thread"``):
average the loss for logging after step(). ``add_param_group`` is a collective call too.

The returned object is an instance of a class created on the fly that derives from the wrapped
optimizer's class (``isinstance(opt, type(optimizer))`` holds, as in Horovod). It does not copy
the optimizer: every attribute it does not define itself (param_groups, state, defaults, ...)
is read from and written to the wrapped optimizer, so both always see the same state.

``process_set``: gradients are reduced among the set's ranks only; on a rank outside the set
the optimizer reduces nothing and steps on its own gradients (as Horovod's).
``with opt.join():`` (``col.join(opt)``): uneven numbers of batches (``collective.join``).
"""

from __future__ import annotations

import contextlib
import numbers
import time
import warnings
import weakref
from dataclasses import dataclass

from .buckets import build_buckets, plan_buckets, wire_specs
from .checks import NonFiniteGradientError, StepCheck, check_replicas, nonfinite, nonfinite_message
from .comm import context
from .compression import Compression, Compressor
from .engines import ENGINES, SharedEngine, default_engine
from .join import Joined
from .parameters import broadcast_optimizer_state, broadcast_parameters
from .process_sets import ProcessSet, context_of
from .reduce_ops import Average, ReduceOp, Sum, as_op
from .reducer import Reducer
from .safety import STEP, agree, check_same_everywhere, describe, fingerprint
from .shared_buckets import open_window
from .tensors import describe_param, on_cpu


@dataclass(frozen=True)
class Settings:
    op: ReduceOp
    compression: object
    passes_per_step: int
    bucket_cap_mb: float
    overlap: str  # as asked: "auto" or an engine name
    named: list | None  # the (name, parameter) pairs given, if any
    predivide: float  # gradient_predivide_factor
    process_set: ProcessSet | None
    # NOTE(observability): collective/checks.py
    check_finite: bool = False
    skip_nonfinite: bool = False
    check_replicas_every: int = 0


def _settings(op, compression, k, bucket_cap_mb, overlap, named_parameters, predivide,
              process_set, check_finite=False, skip_nonfinite=False,
              check_replicas_every=0) -> Settings:
    op = as_op(op)
    if op not in (Average, Sum):
        raise ValueError(f"DistributedOptimizer supports op=Average or op=Sum, got {op!r}")
    if (isinstance(predivide, bool) or not isinstance(predivide, numbers.Real)
            or not predivide > 0):
        raise ValueError(f"gradient_predivide_factor must be a positive number, got "
                         f"{predivide!r}")
    if predivide != 1.0 and op is not Average:
        raise ValueError("gradient_predivide_factor is supported with op=Average only (as in "
                         f"Horovod), got op={op!r}")
    if process_set is not None and not isinstance(process_set, ProcessSet):
        raise TypeError(f"process_set must be a col.ProcessSet or None, got "
                        f"{type(process_set).__name__}")
    if not (isinstance(compression, Compressor)
            or (isinstance(compression, type) and issubclass(compression, Compressor))):
        raise TypeError(f"compression must be Compression.none or Compression.fp16, "
                        f"got {compression!r}")
    if int(k) != k or k < 1:
        raise ValueError(f"backward_passes_per_step must be a positive integer, got {k!r}")
    if not bucket_cap_mb > 0:
        raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
    if overlap not in ("auto", *ENGINES):
        raise ValueError(f"overlap must be 'auto' or one of {', '.join(ENGINES)}, got {overlap!r}")
    named = None if named_parameters is None else list(named_parameters)
    if named and not (isinstance(named[0], tuple) and len(named[0]) == 2):
        raise TypeError("named_parameters must be (name, parameter) pairs, e.g. "
                        "model.named_parameters()")
    every = check_replicas_every
    if isinstance(every, bool) or int(every) != every or every < 0:
        raise ValueError(f"check_replicas_every must be a non-negative integer, got {every!r}")
    return Settings(op, compression, int(k), float(bucket_cap_mb), overlap, named,
                    float(predivide), process_set, bool(check_finite), bool(skip_nonfinite),
                    int(every))


def _select(optimizer, named):
    """(names, params): the optimizer's parameters that require grad, in registration order."""
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    if named is None:
        named = [(f"param.{g}.{i}", p) for g, group in enumerate(optimizer.param_groups)
                 for i, p in enumerate(group["params"])]
    by_name, by_param = {}, {}
    for name, p in named:
        if name in by_name:
            raise ValueError(f"DistributedOptimizer: duplicate parameter name {name!r} in "
                             f"named_parameters; names must be unique")
        if id(p) in by_param:
            raise ValueError(f"DistributedOptimizer: the same parameter appears twice, as "
                             f"{by_param[id(p)]!r} and {name!r}")
        by_name[name], by_param[id(p)] = p, name
    missing = [p for p in in_optimizer if id(p) not in by_param]
    if missing:
        raise ValueError(f"DistributedOptimizer: named_parameters does not name {len(missing)} "
                         f"of the optimizer's parameters (shapes "
                         f"{[tuple(p.shape) for p in missing[:5]]}); pass "
                         f"model.named_parameters() of the model being optimized")
    wanted = {id(p) for p in in_optimizer}
    pairs = [(n, p) for n, p in named if id(p) in wanted and p.requires_grad]
    return [n for n, _ in pairs], [p for _, p in pairs]


class _DistributedOptimizer:
    """Methods of the dynamic subclass; see DistributedOptimizer()."""

    # ours live in the instance; every other attribute is the wrapped optimizer's
    _OWN = frozenset(("_wrapped", "_settings", "_reducer", "_overlap", "_group_sizes", "_skip",
                      "_reduced", "_stats", "_join_step", "_ordinal", "_nonfinite", "_t_end",
                      "step_count"))

    def __getattr__(self, name):
        if name in _DistributedOptimizer._OWN:
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "_wrapped"), name)

    def __setattr__(self, name, value):
        if name in _DistributedOptimizer._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._wrapped, name, value)

    def __delattr__(self, name):
        delattr(self._wrapped, name)

    def _build(self):
        """Buckets, hooks and engine for the wrapped optimizer's parameters (collective: the
        parameters and settings are checked to agree on every rank)."""
        s = self._settings
        names, params = _select(self._wrapped, s.named)
        old = self.__dict__.get("_reducer")
        if s.process_set is not None and not s.process_set.included():
            if old is not None:
                old.detach()
                old.engine.close()
            self._reducer, self._overlap = _Outside(self._wrapped), "none"
            self._group_sizes = [len(g["params"]) for g in self._wrapped.param_groups]
            return
        ctx = context_of(s.process_set, "DistributedOptimizer")
        signature = [("op", s.op.name), ("compression", repr(s.compression)),
                     ("backward_passes_per_step", s.passes_per_step),
                     ("bucket_cap_mb", s.bucket_cap_mb), ("overlap", s.overlap),
                     ("gradient_predivide_factor", s.predivide),
                     ("check_finite", s.check_finite), ("skip_nonfinite", s.skip_nonfinite),
                     ("check_replicas_every", s.check_replicas_every)]
        signature += [describe_param(n, p) for n, p in zip(names, params, strict=True)]
        check_same_everywhere(ctx, signature, "DistributedOptimizer parameters (name, shape, "
                              "dtype, device type) or settings")
        cap = max(1, int(s.bucket_cap_mb * 2**20))
        groups = plan_buckets(params, cap)
        overlap = s.overlap
        if overlap == "auto":  # the same on every rank: the device types agree
            overlap = default_engine(all(on_cpu(p) for p in params), ctx.shm is not None)
        window = None
        if overlap == "shared":  # the buckets in the node's shared window, where it can be had
            window = open_window(ctx, wire_specs(params, groups, s.compression))
            if window is None:
                overlap = default_engine(all(on_cpu(p) for p in params))
        buckets = build_buckets(names, params, cap, s.compression, groups=groups,
                                memory=None if window is None else window.array)
        engine = (SharedEngine(ctx, s.op, s.predivide, window) if window is not None
                  else ENGINES[overlap](ctx, s.op, s.predivide))
        weakref.finalize(self, engine.close)
        if old is not None:
            old.detach()
            old.engine.close()
        reducer = Reducer(ctx, buckets, engine, s.passes_per_step)
        if old is not None:
            reducer.steps = old.steps
        if ctx.size > 1 and ctx.config.step_check:  # NOTE(observability): collective/checks.py
            reducer.step_check = engine.step_check = StepCheck(self._ordinal, buckets)
        self._reducer, self._overlap = reducer, overlap
        self._group_sizes = [len(g["params"]) for g in self._wrapped.param_groups]
        # the handshake of a step under join (the parameters are checked to agree above)
        self._join_step = describe(STEP, options=(("optimizer", fingerprint(tuple(
            map(repr, signature)))),))

    def add_param_group(self, param_group):
        """Add a group to the wrapped optimizer and rebuild the buckets (every rank must call
        it, with the same parameters), between steps."""
        if self._reducer.dirty:
            raise RuntimeError("DistributedOptimizer: add_param_group() between backward() and "
                               "step(); call it before backward() or after step()")
        self._wrapped.add_param_group(param_group)
        self._build()

    def synchronize(self):
        """Wait until every bucket is reduced; buckets whose hooks did not all fire (unused
        parameters, fewer backward passes) are reduced as they are."""
        if [len(g["params"]) for g in self._wrapped.param_groups] != self._group_sizes:
            raise RuntimeError("DistributedOptimizer: the wrapped optimizer's parameter groups "
                               "changed; call add_param_group() on the DistributedOptimizer, "
                               "so that the new parameters are reduced too")
        reducer = self._reducer
        ctx = reducer.ctx
        if ctx is None:  # outside the optimizer's process set: nothing to reduce
            self._reduced = True
            return
        first, last = reducer.first_grad, reducer.last_grad
        token = ctx.monitor.enter("DistributedOptimizer.synchronize")  # NOTE(observability)
        try:
            t0 = time.perf_counter()
            reducer.finalize()
            t1 = time.perf_counter()
        finally:
            ctx.monitor.exit(token)
        self._stats["exposed_s"] += t1 - t0
        self._stats["steps"] += 1
        self._reduced = True
        s = self._settings
        self._nonfinite = (nonfinite(reducer.buckets) if s.check_finite or s.skip_nonfinite
                           else None)
        tl = ctx.timeline
        if tl is not None:  # NOTE(observability): the step's phases (collective/trace.py)
            step = {"step": reducer.steps - 1}
            if first:
                if self._t_end:
                    tl.span(0, "forward", self._t_end, first, step)
                tl.span(0, "backward", first, last, step)
            tl.span(0, "synchronize", t0, t1, step)

    @contextlib.contextmanager
    def skip_synchronize(self):
        """``with opt.skip_synchronize(): opt.step()`` steps without reducing again (after an
        explicit ``synchronize()``, e.g. to clip the averaged gradients)."""
        self._skip = True
        try:
            yield
        finally:
            self._skip = False

    def step(self, *args, **kwargs):
        t_step = time.perf_counter()
        dirty = self._reducer.dirty
        if not self._skip:
            if self._reduced and not dirty:
                warnings.warn("optimizer.step() after optimizer.synchronize() without "
                              "`with optimizer.skip_synchronize():`; not reducing again",
                              stacklevel=2)
            else:
                self.synchronize()
        elif dirty:
            raise RuntimeError("DistributedOptimizer: step() under skip_synchronize() but the "
                               "gradients of the last backward were not synchronized; call "
                               "optimizer.synchronize() first")
        ctx = self._reducer.ctx
        tl, t0 = (ctx.timeline if ctx is not None else None), time.perf_counter()
        bad, self._nonfinite = self._nonfinite, None
        out = None
        if bad and not self._settings.skip_nonfinite:
            raise NonFiniteGradientError(nonfinite_message(bad, self._reducer.steps - 1))
        if bad:
            self._stats["skipped_steps"] = self._stats.get("skipped_steps", 0) + 1
        else:
            out = self._wrapped.step(*args, **kwargs)
        self._reduced = False
        every = self._settings.check_replicas_every
        if every and ctx is not None and self._reducer.steps % every == 0:
            check_replicas([(n, p) for b in self._reducer.buckets
                            for n, p in zip(b.names, b.params, strict=True)],
                           process_set=self._settings.process_set)
        self._t_end = time.perf_counter()
        if tl is not None:
            step = {"step": self._reducer.steps - 1}
            tl.span(0, "skipped update" if bad else "update", t0, self._t_end, step)
            tl.span(0, "step", t_step, self._t_end, step)
        return out

    def zero_grad(self, set_to_none=None):
        """Zero the gradients in place. The ``.grad`` stay views into the buckets (never None,
        whatever ``set_to_none`` says), so backward keeps writing into the reduced buffers."""
        self._reducer.zero_grad()

    @property
    def step_count(self) -> int:
        """The steps synchronized so far (part of each step's layout check; saved and restored
        by col.save_checkpoint / col.load_checkpoint)."""
        return self._reducer.steps

    @step_count.setter
    def step_count(self, n: int):
        self._reducer.steps = int(n)

    def communication_stats(self, reset=False):
        """{'steps', 'exposed_s' (time step()/synchronize() waited), 'busy_s' (time the
        engine spent reducing), and 'skipped_steps' once skip_nonfinite skipped one}."""
        engine = self._reducer.engine
        out = dict(self._stats, busy_s=engine.busy_s)
        if reset:
            self._stats = {"steps": 0, "exposed_s": 0.0}
            engine.busy_s = 0.0
        return out

    @property
    def buckets(self):
        """The gradient buckets, in reduction order."""
        return self._reducer.buckets

    # -- uneven inputs: the join protocol (collective.join) -------------------------------------
    def join(self):
        """``with opt.join():`` around the training loop (also spelled ``col.join(opt)``): a
        rank out of batches takes part in the others' steps until all are; see
        collective.join. ``as j``: ``j.last_rank`` is the last rank to join, afterwards."""
        return Joined(self)

    @property
    def join_context(self):
        """The Context the steps' reductions run on (the process set's, or the world's)."""
        return self._reducer.ctx

    @property
    def join_step(self):
        """The description of this optimizer's step handshake under a join."""
        return self._join_step

    def join_begin(self):
        """Enter the join (collective): every step's first bucket now starts with the step's
        handshake, which also tells how many ranks contribute."""
        r = self._reducer
        if isinstance(r, _Outside):
            raise ValueError("join: this rank is not in the DistributedOptimizer's process set")
        if r.dirty:
            raise RuntimeError("join: entered between backward() and step(); enter it before "
                               "the training loop")
        ctx, desc = r.ctx, self._join_step
        check_same_everywhere(ctx, [desc], "join: the DistributedOptimizers")

        def negotiate():
            joined = agree(ctx, desc, shadowable=True)
            r.engine.active = ctx.size - len(joined)

        r.step_hook = negotiate
        r.engine.active = ctx.size

    def join_shadow(self):
        """One step of the others, taken part in by this rank, which has joined."""
        r = self._reducer
        agree(r.ctx, self._join_step)  # the handshake the others repeat
        r.shadow_step()

    def join_end(self, last_rank):
        """Leave the join; with ``last_rank`` (every rank has joined), give every rank that
        rank's parameters and optimizer state (the ranks that joined earlier did not step)."""
        r = self._reducer
        r.step_hook = None
        r.engine.active = None
        if last_rank is not None and r.ctx.size > 1:
            ps = self._settings.process_set
            params = [p for g in self._wrapped.param_groups for p in g["params"]]
            broadcast_parameters(params, root=last_rank, process_set=ps)
            broadcast_optimizer_state(self._wrapped, root=last_rank, process_set=ps)

    def __repr__(self):
        s, r = self._settings, self._reducer
        size = "not in its process set" if r.ctx is None else f"size={r.ctx.size}"
        return (f"DistributedOptimizer({self._wrapped!r}, {len(r.params)} parameters in "
                f"{len(r.buckets)} buckets, {size}, op={s.op.name}, "
                f"compression={s.compression!r}, backward_passes_per_step={s.passes_per_step}, "
                f"overlap={self._overlap!r})")


class _NoEngine:
    busy_s = 0.0
    active = None

    def close(self):
        pass


class _Outside:
    """The reducer of a rank outside the optimizer's process set: nothing to reduce (as
    Horovod's optimizer on such a rank: step() uses the rank's own gradients)."""

    dirty = False
    steps = 0
    buckets: list = []
    params: list = []
    ctx = None

    def __init__(self, wrapped):
        self.wrapped = wrapped
        self.engine = _NoEngine()

    def finalize(self):
        pass

    def detach(self):
        pass

    def zero_grad(self):
        self.wrapped.zero_grad()


def is_distributed_optimizer(optimizer) -> bool:
    """Whether ``optimizer`` was made by DistributedOptimizer()."""
    return getattr(type(optimizer), "_OWN", None) is _DistributedOptimizer._OWN


def DistributedOptimizer(optimizer, named_parameters=None, op=Average,
                         compression=Compression.none, backward_passes_per_step=1,
                         bucket_cap_mb=25, overlap="auto", gradient_predivide_factor=1.0,
                         process_set=None, check_finite=False, skip_nonfinite=False,
                         check_replicas_every=0):
    """Wrap ``optimizer`` so that ``step()`` uses gradients averaged (op=Average, the default)
    or summed (op=Sum) over all ranks. See the module docstring.

    ``named_parameters``: (name, parameter) pairs, e.g. ``model.named_parameters()``; names are
    checked to agree on every rank. ``compression``: ``Compression.none`` or
    ``Compression.fp16``. ``backward_passes_per_step=k``: gradients of k backward passes are
    summed locally, then reduced once (scale the loss by 1/k to average them, as with Horovod).
    ``bucket_cap_mb``: the size of the fused buffers (the first holds at most 1 MiB, as in
    DDP). ``overlap``: "auto" (CPU parameters: buckets in the node's shared memory when every
    rank is on one node, else non-blocking rings; a communication thread for CUDA ones),
    "shared" (non-blocking rings, or the thread for CUDA, where the ranks share no window),
    "nonblocking", "thread" or "inline" (no overlap); see collective.engines.
    ``gradient_predivide_factor=f`` (op=Average): Horovod's split of the averaging, divide by
    f before the sum and by P/f after it (for float16 range). ``process_set``: reduce among
    the set's ranks only (a col.ProcessSet; every rank of the world creates the optimizer).

    Checks (collective/checks.py): every step's first bucket reduction carries a hash of (this
    optimizer, step number, bucket layout, backward passes), so ranks out of step raise
    ``StepMismatchError`` in that step. ``check_finite=True``: a NaN/Inf in the reduced
    gradients (the same bits on every rank) raises ``NonFiniteGradientError`` on every rank in
    step(), naming the parameters; ``skip_nonfinite=True``: such a step is skipped on every rank
    instead (one pass over the gradients per step). ``check_replicas_every=N``: every N steps
    ``col.check_replicas`` compares the parameters across ranks after the update (one pass over
    the parameters and one small allreduce; raises ``ReplicaDriftError``).
    """
    base = type(optimizer)
    if is_distributed_optimizer(optimizer):
        raise TypeError("the optimizer is already a DistributedOptimizer")
    settings = _settings(op, compression, backward_passes_per_step, bucket_cap_mb, overlap,
                         named_parameters, gradient_predivide_factor, process_set,
                         check_finite, skip_nonfinite, check_replicas_every)
    members = {k: v for k, v in _DistributedOptimizer.__dict__.items()
               if k not in ("__dict__", "__weakref__")}
    cls = type(base.__name__, (base,), members)
    self = object.__new__(cls)
    self._wrapped, self._settings = optimizer, settings
    self._skip = self._reduced = False
    self._stats = {"steps": 0, "exposed_s": 0.0}
    ctx = context()
    self._ordinal, ctx.optimizers = ctx.optimizers, ctx.optimizers + 1
    self._nonfinite, self._t_end = None, 0.0
    self._build()
    return self

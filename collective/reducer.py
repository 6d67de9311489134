"""The Reducer (PyTorch DDP's role): gradient readiness, buckets handed over in order, finalize.

- Every parameter's ``.grad`` is a view into its bucket (``collective/buckets.py``), so backward
  accumulates straight into the buffers that are reduced.
- A post-accumulate-grad hook per parameter counts it as ready (after
  ``backward_passes_per_step`` passes). When every parameter of a bucket is ready the bucket is
  handed to the engine (``collective/engines.py``), buckets strictly in index order on every
  rank (a bucket that is ready early waits for its predecessors), so the ranks start their
  reductions in the same order whatever the timing. Every hook also lets the engine progress.
- ``finalize()`` (DistributedOptimizer's ``synchronize``) hands over the buckets whose hooks did
  not fire (unused parameters: reduced as they are, zeros after zero_grad, so no rank skips a
  reduction), waits for all of them and resets the counts for the next step.

A parameter has one Reducer at a time (``Context.owners``): a new one for the same parameters
takes them over, and the previous one stops reacting to backward (two would keep moving each
other's ``.grad`` views).

Under ``with col.join(opt)`` (``collective.join``), ``step_hook`` runs before the first bucket
of every step is handed over (the step's agreement with ranks that have joined), and a joined
rank takes part in the others' steps with ``shadow_step``.
"""

from __future__ import annotations

import time
import warnings
import weakref


def _remove(handles):
    for handle in handles:
        handle.remove()


class Reducer:
    def __init__(self, ctx, buckets, engine, passes_per_step: int):
        self.ctx = ctx
        self.buckets = buckets
        self.engine = engine
        self.passes_per_step = passes_per_step
        self.dirty = False  # a hook fired since the last finalize
        self.detached = False
        self.step_hook = None  # called before a step's first bucket is handed over (join)
        self._passes: list[list[int]] = []  # per bucket, per parameter: passes this step
        self._waiting: list[int] = []  # per bucket: parameters not yet ready
        self._next = 0  # the next bucket to hand over; all before it are started
        # NOTE(observability): the per-step layout check (collective/checks.py), the steps
        # finalized so far (its step number), and the timeline's backward phase
        self.step_check = None
        self.steps = 0
        self._reset()
        self._claim()
        self.hooks = [p.register_post_accumulate_grad_hook(self._hook(b, j))
                      for b, bucket in enumerate(buckets) for j, p in enumerate(bucket.params)]
        weakref.finalize(self, _remove, self.hooks)

    @property
    def params(self):
        return [p for bucket in self.buckets for p in bucket.params]

    def _reset(self):
        self._passes = [[0] * len(b.params) for b in self.buckets]
        self._waiting = [len(b.params) for b in self.buckets]
        self._next = 0
        self.dirty = False
        self._max_passes = 0  # the most backward passes any parameter had this step
        self.first_grad = self.last_grad = 0.0  # timeline: backward's first and last hook

    def _claim(self):
        owners, me, previous = self.ctx.owners, weakref.ref(self), {}
        for p in self.params:
            old = owners.get(id(p))
            prev = old[0]() if old is not None and old[1]() is p else None
            if prev is not None and prev is not self and not prev.detached:
                previous[id(prev)] = prev
            owners[id(p)] = (me, weakref.ref(p))
        for prev in previous.values():
            prev.detach()
            warnings.warn("a second DistributedOptimizer was created for parameters that "
                          "already had one; the first one no longer reduces gradients",
                          stacklevel=5)

    def detach(self):
        """Stop reacting to backward (for good)."""
        self.detached = True
        _remove(self.hooks)

    # -- backward -------------------------------------------------------------------------------
    def _hook(self, b, j):
        ref = weakref.ref(self)  # a Reducer that was dropped stops reacting to backward

        def hook(param):
            reducer = ref()
            if reducer is not None:
                reducer.on_grad(b, j)
        return hook

    def on_grad(self, b, j):
        """Parameter j of bucket b has its gradient of one more backward pass."""
        bucket = self.buckets[b]
        self.dirty = True
        if not bucket.is_view(j):  # .grad was set to None or replaced since the last step
            bucket.reattach(j)
        passes = self._passes[b][j] = self._passes[b][j] + 1
        k = self.passes_per_step
        if passes > k:
            raise RuntimeError(
                f"DistributedOptimizer: the gradient of {bucket.names[j]!r} was computed "
                f"{passes} times before step(); with backward_passes_per_step={k} call step() "
                f"(or synchronize()) after every {k} backward pass(es)")
        if passes > self._max_passes:
            self._max_passes = passes
        if self.ctx.timeline is not None:
            self.last_grad = time.perf_counter()
            self.first_grad = self.first_grad or self.last_grad
        if passes == k:
            self._waiting[b] -= 1
            if self._waiting[b] == 0:
                self._start_ready()
        self.engine.progress()

    def _start_ready(self, everything=False):
        """Hand over buckets in index order while the next one is complete (or all of them)."""
        while self._next < len(self.buckets) and (everything or self._waiting[self._next] == 0):
            if self._next == 0 and self.step_hook is not None:
                self.step_hook()
            if self._next == 0 and self.step_check is not None:  # NOTE(observability)
                self.step_check.arm(self.steps, self._max_passes if everything
                                    else self.passes_per_step)
            tl = self.ctx.timeline
            if tl is not None:
                tl.instant(1, f"bucket {self._next} ready", time.perf_counter())
            self.engine.start(self.buckets[self._next])
            self._next += 1

    # -- the end of a step ----------------------------------------------------------------------
    def finalize(self):
        """Reduce every bucket not yet handed over, wait for all; counts reset for the next
        step. Every gradient then holds its reduced value."""
        for bucket in self.buckets[self._next:]:
            bucket.reattach_all()
        self._start_ready(everything=True)
        self.engine.wait_all()
        self.steps += 1
        self._reset()

    def shadow_step(self):
        """A rank that has joined takes part in a step of the others: every bucket is reduced
        with zero gradients, in the same order (its own results are not used)."""
        hook, self.step_hook = self.step_hook, None
        try:
            for bucket in self.buckets:
                bucket.reattach_all()
                bucket.zero_()
            # NOTE: the step check of the others' full step (collective/checks.py)
            self._max_passes = self.passes_per_step
            self.finalize()
        finally:
            self.step_hook = hook

    def zero_grad(self):
        """Zero every bucket in place; the ``.grad`` stay (or become again) views into them."""
        if self.dirty:
            raise RuntimeError(
                "DistributedOptimizer: zero_grad() was called after backward() and before "
                "step() or synchronize(); the gradients are being reduced, and zeroing them "
                "now would lose them (and race with the communication). Call zero_grad() "
                "before backward() or after step().")
        for bucket in self.buckets:
            bucket.zero_()
            bucket.reattach_all()

"""Grad mode (no_grad / enable_grad), graph recording (``apply``) and the backward engine.

``apply(op, *inputs)`` runs an op's ``compute`` on its inputs' arrays and records the graph
node (needle's ``make_from_op``); ``wrap(array, device)`` makes a leaf Tensor on a device
array without a copy. Every op of ``dlsys.ops`` goes through these two.

The engine walks the graph once to count, for every tensor that requires grad, how many of its
consumers are in this graph; then it runs the ops' ``gradient`` in reverse topological order,
releasing a tensor only when all its consumers have propagated. A leaf is therefore final as soon
as its last consumer ran: its ``.grad`` is accumulated and its post-accumulate-grad hooks fire
right then, while the rest of backward continues (the distributed optimizer starts reducing
gradient buckets from those hooks).
"""

from __future__ import annotations

import functools
import sys

__all__ = ["no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "grad", "backward",
           "RemovableHandle", "run_backward", "apply", "wrap", "zero_grads", "record_nodes",
           "tape_append", "Function", "FunctionCtx", "once_differentiable"]

# NOTE: a plain module global, read on every op (a thread-local costs more than the op's own
# bookkeeping); dlsys is single-threaded per process, data parallelism uses processes.
_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode to ``self._mode``."""

    _mode = True

    def __new__(cls, func=None):
        self = super().__new__(cls)
        self._prev = []
        if func is not None and callable(func):  # bare decorator: @ds.no_grad
            return self(func)
        return self

    def __enter__(self):
        global _grad_enabled
        self._prev.append(_grad_enabled)
        _grad_enabled = self._mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev.pop()
        return False

    def __call__(self, func):
        mode = self._mode

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            global _grad_enabled
            prev = _grad_enabled
            _grad_enabled = mode
            try:
                return func(*args, **kwargs)
            finally:
                _grad_enabled = prev

        return wrapper


class _GradModeCtx:
    __slots__ = ("_mode", "_prev")

    def __init__(self, mode, prev=None):
        self._mode = bool(mode)
        self._prev = prev  # set by set_grad_enabled, which switched the mode already

    def __enter__(self):
        global _grad_enabled
        if self._prev is None:
            self._prev = _grad_enabled
        _grad_enabled = self._mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False


class no_grad(_GradMode):  # noqa: N801 - PyTorch's name
    """Disable graph recording: ``with ds.no_grad(): ...`` or ``@ds.no_grad()``."""

    _mode = False


class enable_grad(_GradMode):  # noqa: N801
    """Enable graph recording (inside a no_grad block, say)."""

    _mode = True


def set_grad_enabled(mode: bool) -> _GradModeCtx:
    """Set grad mode now; the returned object also restores the old mode as a context manager."""
    global _grad_enabled
    ctx = _GradModeCtx(mode, prev=_grad_enabled)
    _grad_enabled = bool(mode)
    return ctx


class RemovableHandle:
    """Returned by register_*hook; ``remove()`` unregisters the hook (idempotent)."""

    __slots__ = ("_hooks", "_key")
    _next_key = 0

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self._key = RemovableHandle._next_key
        RemovableHandle._next_key += 1

    def remove(self):
        self._hooks.pop(self._key, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


# -- graph recording ---------------------------------------------------------------------------
_new = object.__new__
# NOTE: None, or the list that every graph node made from now on is appended to, in creation
# order (a topological order): checkpointing tells the tensors made inside a function from those
# it reached from outside by it (record_nodes).
_tape = None


class record_nodes:  # noqa: N801 - used like no_grad
    """``with record_nodes() as nodes:`` appends every Tensor given a graph node inside the
    block to the list ``nodes``, in creation order. Nested blocks each see their own nodes
    (the outer one sees what the inner one's caller attaches after it)."""

    __slots__ = ("nodes", "_prev")

    def __enter__(self):
        global _tape
        self._prev = _tape
        _tape = self.nodes = []
        return self.nodes

    def __exit__(self, *exc):
        global _tape
        _tape = self._prev
        return False


def tape_append(t) -> None:
    """Record a node made outside ``apply`` (custom Functions, checkpoints) on the tape."""
    if _tape is not None:
        _tape.append(t)


def wrap(data, device):
    """A leaf Tensor on the device array ``data`` (no copy, no checks): the hot path of every
    op."""
    t = _new(Tensor)
    t._data = data
    t.device = device
    t._requires_grad = False
    t._grad = None
    t._op = None
    t._inputs = ()
    t._hooks = None
    t._post_hooks = None
    return t


def apply(op, *inputs):
    """Run ``op`` on Tensors that share one device and dtype (checked by the caller) and record
    the graph node when grad mode is on and an input requires grad."""
    dev = inputs[0].device
    op.device = dev
    if len(inputs) == 1:
        a = inputs[0]
        out = wrap(op.compute(a._data), dev)
        rg = a._requires_grad
    elif len(inputs) == 2:
        a, b = inputs
        out = wrap(op.compute(a._data, b._data), dev)
        rg = a._requires_grad or b._requires_grad
    else:
        out = wrap(op.compute(*[t._data for t in inputs]), dev)
        rg = any(t._requires_grad for t in inputs)
    if rg and _grad_enabled:
        out._requires_grad = True
        out._op = op
        out._inputs = inputs
        if _tape is not None:
            _tape.append(out)
    return out


def _ones_like(t):
    """Ones of t's shape, dtype and device: the implicit gradient of a one-element output."""
    return wrap(t.device.full(t.shape, 1, t.dtype), t.device)


def zero_grads(params, set_to_none: bool = True) -> None:
    """Module.zero_grad and Optimizer.zero_grad: each ``.grad`` to None, or zeroed in place."""
    for p in params:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad.zero_()


# -- the engine --------------------------------------------------------------------------------
def _probe_refcount():
    g = object()
    return sys.getrefcount(g)


# NOTE: PyTorch steals a fresh gradient buffer for a leaf's first .grad instead of copying it when
# nobody else holds it (AccumulateGrad's use_count check). We do the same with CPython refcounts:
# calibrated here with the exact pattern used in _accumulate (one local + the call's argument),
# so the check adapts to the interpreter. Saves one full copy of every weight gradient per step.
_LOCAL_REFS = _probe_refcount()


def _freed_error():
    return RuntimeError(
        "Trying to backward through the graph a second time (or directly access saved tensors "
        "after they have already been freed). Saved intermediate values of the graph are freed "
        "when you call .backward(). Specify retain_graph=True if you need to backward through "
        "the graph a second time.")


def _accumulate(leaf, g, create_graph):
    cur = leaf._grad
    if cur is None:
        if create_graph:
            leaf._grad = g
            return
        arr = g._data
        dev = g.device
        if (dev.owns_storage(arr) and sys.getrefcount(g) <= _LOCAL_REFS + 1
                and sys.getrefcount(arr) <= _LOCAL_REFS + 1):
            # g and its array are held by the caller's local and ours only: take the array over.
            leaf._grad = wrap(arr, dev)
        else:
            c = dev.compact(arr)
            leaf._grad = wrap(dev.astype(arr, arr.dtype) if c is arr else c, dev)
        return
    if create_graph:
        leaf._grad = cur + g
        return
    # NOTE: in place, so a .grad that is a view into a bucket (collective) stays that view
    cur.device.add_(cur._data, g._data)


def _private(prev, ig):
    """True when the pending gradient ``prev`` may take ``ig`` in place: its array is compact
    and its own, of ig's shape and dtype, and nothing but the engine's table and the caller's
    local hold prev or its array (the refcount check of _accumulate). NOTE: saves a fresh
    array per extra consumer of a tensor (the pieces of a split, residual branches)."""
    if type(prev) is not Tensor or type(ig) is not Tensor:  # NOTE: e.g. checkpoint's Grads
        return False
    arr = prev._data
    return (arr.shape == ig._data.shape and arr.dtype == ig._data.dtype
            and prev.device.owns_storage(arr) and sys.getrefcount(prev) <= _LOCAL_REFS + 2
            and sys.getrefcount(arr) <= _LOCAL_REFS + 1)


def _check_replacement(t, g, r):
    if not isinstance(r, Tensor):
        raise TypeError(f"hook returned {type(r).__name__}, expected a Tensor or None")
    if r.shape != g.shape or r.dtype != g.dtype:
        raise ValueError(f"hook returned a gradient of shape {r.shape} and dtype {r.dtype}, "
                         f"expected shape {g.shape} and dtype {g.dtype}")
    return r


def backward(tensor, gradient=None, retain_graph=False, create_graph=False):
    """Accumulate d(tensor)/d(leaf) into every leaf's ``.grad``. ``gradient`` (a Tensor or
    array of tensor's shape, dtype and device) is required unless tensor has one element. The
    graph is freed unless ``retain_graph`` (or ``create_graph``)."""
    if not tensor._requires_grad:
        raise RuntimeError("element 0 of tensors does not require grad and does not have a "
                           "grad_fn")
    if gradient is None:
        if tensor.numel() != 1:
            raise RuntimeError(f"grad can be implicitly created only for scalar outputs "
                               f"(got shape {tensor.shape}); pass gradient=")
        gradient = _ones_like(tensor)
    else:
        if not isinstance(gradient, Tensor):
            gradient = creation.tensor(gradient, dtype=tensor.dtype, device=tensor.device)
        if gradient.shape != tensor.shape:
            raise ValueError(f"gradient has shape {gradient.shape}, expected {tensor.shape}")
        if gradient.dtype != tensor.dtype:
            raise TypeError(f"gradient has dtype {gradient.dtype}, expected {tensor.dtype}")
        if gradient.device != tensor.device:
            raise ValueError(f"gradient is on {gradient.device}, expected {tensor.device}")
        gradient = gradient.detach() if not create_graph else gradient
    run_backward([tensor], [gradient], retain_graph or create_graph, create_graph)


def run_backward(roots, grads, retain_graph=False, create_graph=False, capture=None):
    """Backpropagate ``grads`` (Tensors) from ``roots``; see the module docstring.

    ``capture``: a dict whose keys are ids of tensors where backpropagation stops: their
    summed gradient is stored in it (their hooks do not run, nothing reaches beyond them).
    Checkpointing differentiates a recomputed subgraph up to its inputs with it."""
    global _grad_enabled
    stop = capture or _NO_STOP
    # 1) consumer counts of every tensor that requires grad, reachable from the roots
    deps = {}
    stack = []
    for r in roots:
        if id(r) not in deps:
            deps[id(r)] = 0
            stack.append(r)
    while stack:
        n = stack.pop()
        if stop and id(n) in stop:
            continue
        inputs = n._inputs
        if inputs is None:
            raise _freed_error()
        for i in inputs:
            if i._requires_grad:
                k = id(i)
                c = deps.get(k)
                if c is None:
                    deps[k] = 1
                    stack.append(i)
                else:
                    deps[k] = c + 1
    # 2) reverse topological order by dependency counting
    pending = {}
    ready = []
    for r, g in zip(roots, grads, strict=False):
        k = id(r)
        pending[k] = pending[k] + g if k in pending else g
    queued = set()
    for r in roots:
        if deps[id(r)] == 0 and id(r) not in queued:  # NOTE: ids: Tensor == is elementwise
            queued.add(id(r))
            ready.append(r)
    prev_mode = _grad_enabled
    _grad_enabled = bool(create_graph)
    try:
        while ready:
            n = ready.pop()
            g = pending.pop(id(n), None)
            if stop and id(n) in stop:
                stop[id(n)] = g
                continue
            if g is not None and n._hooks:
                for h in tuple(n._hooks.values()):
                    r = h(g)
                    if r is not None:
                        g = _check_replacement(n, g, r)
            op = n._op
            if op is None:  # a leaf
                if g is not None:
                    _accumulate(n, g, create_graph)
                    g = None
                    if n._post_hooks:
                        for h in tuple(n._post_hooks.values()):
                            h(n)
                continue
            inputs = n._inputs
            if inputs is None:
                raise _freed_error()
            in_grads = op.gradient(g, n) if g is not None else None
            g = None
            if not retain_graph:
                n._inputs = None
                n._op = _freed(op)
            for j, i in enumerate(inputs):
                if not i._requires_grad:
                    continue
                k = id(i)
                if in_grads is not None:
                    ig = in_grads[j]
                    if ig is not None:
                        prev = pending.get(k)
                        if prev is None:
                            pending[k] = ig
                        elif not create_graph and _private(prev, ig):
                            prev.device.add_(prev._data, ig._data)
                        else:
                            pending[k] = prev + ig
                        prev = ig = None
                c = deps[k] - 1
                deps[k] = c
                if c == 0:
                    ready.append(i)
            in_grads = None
    finally:
        _grad_enabled = prev_mode


_NO_STOP: dict = {}


class _Freed:
    """Stands in for the op of a node whose graph was freed by backward (the op itself, with
    the arrays it saved, is released)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name} (freed)>"

    def gradient(self, out_grad, node):
        raise _freed_error()


_FREED_BY_CLASS: dict = {}


def _freed(op):
    f = _FREED_BY_CLASS.get(type(op))
    if f is None:
        f = _FREED_BY_CLASS[type(op)] = _Freed(type(op).__name__)
    return f


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False):
    """d(outputs)/d(inputs) as a tuple, leaving every ``.grad`` untouched (torch.autograd.grad,
    trimmed: inputs that get no gradient give None)."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs] * len(outputs)
    gos = []
    for o, go in zip(outputs, grad_outputs, strict=False):
        if go is None:
            if o.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            go = _ones_like(o)
        gos.append(go)
    for t in inputs:
        if not t._requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    # NOTE: every reachable leaf's .grad and post hooks are parked while the engine runs, so the
    # engine's accumulation cannot touch them; the inputs' gradients are caught by tensor hooks.
    leaves, seen, stack = [], set(), list(outputs)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n._op is None and n._requires_grad:
            leaves.append((n, n._grad, n._post_hooks))
            n._grad = None
            n._post_hooks = None
        stack.extend(n._inputs or ())
    results = [None] * len(inputs)
    handles = []
    for j, t in enumerate(inputs):
        def capture(g, j=j):
            results[j] = g if results[j] is None else results[j] + g

        handles.append(t.register_hook(capture))
    try:
        run_backward(outputs, gos, create_graph if retain_graph is None else retain_graph,
                     create_graph)
    finally:
        for h in handles:
            h.remove()
        for n, g0, ph in leaves:
            n._grad = g0
            n._post_hooks = ph
    return tuple(results)


# NOTE: imported last: tensor.py imports this module (and the ops, which import apply and wrap
# from here) at its own end; these names are only looked up when the functions above run.
from . import creation  # noqa: E402
from .function import Function, FunctionCtx, once_differentiable  # noqa: E402, F401
from .tensor import Tensor  # noqa: E402

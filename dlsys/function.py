"""Custom differentiable functions: ``ds.autograd.Function`` (PyTorch's torch.autograd.Function),
and the graph nodes with several outputs that they and checkpointing make.

A node with several outputs: the engine gives every Tensor one op, so the op is held by a hidden
Tensor with no data, and each output's op picks its slot of that node's gradient (``Pick``).
The engine sums gradients with ``+``, so a node's gradient is a ``Grads`` (one slot per output)
whose ``+`` merges slots; the node's op then sees every output's gradient at once.
"""

from __future__ import annotations

import functools
import inspect

from .autograd import is_grad_enabled, no_grad, tape_append, wrap
from .ops import Op
from .tensor import Tensor

__all__ = ["Function", "FunctionCtx", "once_differentiable", "MultiOutputNode", "attach",
           "sum_to_shape"]


class Grads:
    """The gradient of a node with ``n`` outputs: one Tensor (or None) per output. ``+``
    merges into self (the engine owns the left operand, a fresh Grads from ``Pick``)."""

    __slots__ = ("slots",)

    def __init__(self, n, i, g):
        self.slots = [None] * n
        self.slots[i] = g

    def __add__(self, other):
        for i, g in enumerate(other.slots):
            if g is not None:
                mine = self.slots[i]
                self.slots[i] = g if mine is None else mine + g
        return self


class Pick(Op):
    """Output ``i`` of a node with ``n`` outputs (its only input is the node's hidden Tensor)."""

    __slots__ = ("i", "n")

    def __init__(self, i, n):
        self.i, self.n = i, n

    def gradient(self, g, node):
        return (Grads(self.n, self.i, g),)


class MultiOutputNode(Op):
    """Base of graph nodes made by ``attach``: ``gradient`` hands ``backward_slots`` the list of
    every output's gradient (None where none arrived) and the node itself."""

    __slots__ = ("n_out",)

    def gradient(self, g, node):
        grads = [g] if self.n_out == 1 else g.slots
        return self.backward_slots(grads, node)

    def backward_slots(self, grads, node):
        raise NotImplementedError

    def output(self, node, i, data):
        """Output ``i`` as a graph-connected Tensor (``data``: its array), rebuilt at backward
        time: ``node`` itself for a one-output node, else a fresh Pick of the hidden Tensor.
        NOTE: a node keeps only the arrays of saved outputs, never the output Tensors (they
        hold the node: a cycle that would keep the graph alive until the garbage collector)."""
        if self.n_out == 1:
            return node
        t = wrap(data, node.device)
        t._requires_grad = True
        t._op = Pick(i, self.n_out)
        t._inputs = (node,)
        return t


def attach(op: MultiOutputNode, inputs: tuple, outputs: list, device) -> None:
    """Make the graph-free Tensors ``outputs`` the outputs of ``op`` over ``inputs``."""
    op.n_out = len(outputs)
    op.device = device
    if len(outputs) == 1:
        (o,) = outputs
        o._requires_grad, o._op, o._inputs = True, op, inputs
        tape_append(o)
        return
    hidden = wrap(None, device)
    hidden._requires_grad, hidden._op, hidden._inputs = True, op, inputs
    tape_append(hidden)
    for i, o in enumerate(outputs):
        o._requires_grad, o._op, o._inputs = True, Pick(i, len(outputs)), (hidden,)
        tape_append(o)


def sum_to_shape(g: Tensor, shape: tuple) -> Tensor:
    """g summed down to ``shape`` (which broadcasts to g's shape), as torch's sum_to."""
    from .ops import reduce as _rd
    from .ops import shape as _sh

    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and g.shape[lead + i] != 1)
    return _sh.reshape(_rd.sum(g, axes), shape) if axes else g


# -- ds.autograd.Function ------------------------------------------------------------------------
class FunctionCtx:
    """The ``ctx`` of a custom Function: ``save_for_backward``, ``saved_tensors``,
    ``needs_input_grad``, ``mark_non_differentiable``, ``set_materialize_grads``; any other
    attribute may be set in forward and read in backward."""

    def __init__(self):
        self._to_save = ()
        self._saved = None  # after apply: ("t", tensor) or ("out", slot, array) per entry
        self._non_diff = set()
        self._node = None  # the graph node during backward (rebuilds saved outputs)
        self._op = None
        self.materialize_grads = True
        self.needs_input_grad = ()

    def save_for_backward(self, *tensors):
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"save_for_backward can only save Tensors or None, got "
                                f"{type(t).__name__}")
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple:
        if self._saved is None:  # no graph was built (or still in forward)
            return tuple(self._to_save)
        out = []
        for e in self._saved:
            if e[0] == "t":
                out.append(e[1])
            elif self._node is None:
                raise RuntimeError("saved_tensors: a saved output can only be read in backward")
            else:
                out.append(self._op.output(self._node, e[1], e[2]))
        return tuple(out)

    def mark_non_differentiable(self, *tensors):
        """These outputs get no gradient (backward still receives a zero tensor for each)."""
        self._non_diff.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool):
        """With False, backward receives None (not zeros) for outputs that got no gradient."""
        self.materialize_grads = bool(value)

    def mark_dirty(self, *tensors):
        raise NotImplementedError("mark_dirty: in-place custom Functions are not supported "
                                  "(dlsys tensors have no version counter); return a new tensor")


def _setup_context_defined(cls) -> bool:
    return getattr(cls.setup_context, "__func__", cls.setup_context) is not \
        Function.setup_context


class FunctionBackward(MultiOutputNode):
    """The graph node of one call of a custom Function (one subclass per Function class,
    named ``<Name>Backward`` as in PyTorch)."""

    __slots__ = ("ctx", "n_args", "tensor_pos", "out_kinds")

    def backward_slots(self, grads, node):
        ctx = self.ctx
        fn_cls = self._forward_cls
        grad_outputs = []
        for kind in self.out_kinds:  # ("slot", k, meta) | ("zeros", meta) | ("none",)
            if kind[0] == "none":
                grad_outputs.append(None)
                continue
            g = grads[kind[1]] if kind[0] == "slot" else None
            if g is None and ctx.materialize_grads:
                shape, dtype, dev = kind[-1]
                g = wrap(dev.full(shape, 0, dtype), dev)
            grad_outputs.append(g)
        ctx._node = node
        try:
            result = fn_cls.backward(ctx, *grad_outputs)
        finally:
            ctx._node = None
        result = result if isinstance(result, tuple) else (result,)
        name = type(self).__name__
        if len(result) < self.n_args or any(r is not None for r in result[self.n_args:]):
            raise ValueError(f"function {name} returned an incorrect number of gradients "
                             f"(expected {self.n_args}, got {len(result)})")
        for pos in range(self.n_args):
            if result[pos] is not None and pos not in self.tensor_pos:
                raise TypeError(f"function {name} returned a gradient different than None at "
                                f"position {pos + 1}, but the corresponding forward input was "
                                f"not a Tensor")
        out = []
        inputs = node._inputs
        for j, pos in enumerate(self.tensor_pos):
            r = result[pos]
            x = inputs[j]
            if r is None or not x._requires_grad:
                out.append(None)
                continue
            if not isinstance(r, Tensor):
                raise TypeError(f"function {name} returned {type(r).__name__} as the gradient "
                                f"at index {pos}, expected a Tensor or None")
            if r.device != x.device:
                raise ValueError(f"function {name} returned a gradient on {r.device} at index "
                                 f"{pos}, its input is on {x.device}")
            if r.shape != x.shape:
                try:
                    ok = _broadcasts(x.shape, r.shape)
                except ValueError:
                    ok = False
                if not ok:
                    raise ValueError(f"function {name} returned an invalid gradient at index "
                                     f"{pos} - got {list(r.shape)} but expected shape "
                                     f"compatible with {list(x.shape)}")
                r = sum_to_shape(r, x.shape)
            if r.dtype != x.dtype:  # NOTE: PyTorch casts a gradient to its input's dtype
                r = r.to(x.dtype)
            out.append(r)
        return tuple(out)


def _broadcasts(shape, to) -> bool:
    if len(shape) > len(to):
        return False
    return all(s == t or s == 1 for s, t in zip(shape, to[len(to) - len(shape):], strict=True))


class Function:
    """A differentiable operation given by ``forward`` and ``backward`` (static methods), used as
    ``MyFn.apply(*args)``, exactly as ``torch.autograd.Function``:

    - ``forward(ctx, *args, **kwargs)`` runs with grad mode off; arguments may be anything,
      Tensors among them are the inputs. It returns a Tensor or a tuple (non-Tensors allowed).
      (Or ``forward(*args)`` plus ``setup_context(ctx, inputs, output)``, PyTorch 2's style.)
    - ``backward(ctx, *grad_outputs)`` gets one gradient per output and returns one per forward
      argument (None for non-Tensors and inputs that need none). It runs under grad mode when
      backward was called with ``create_graph=True``, so a backward written in Tensor ops can
      be differentiated again. Gradients of a broadcastable shape are summed to the input's
      shape and cast to its dtype, as PyTorch does.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._backward_cls = type(cls.__name__ + "Backward", (FunctionBackward,),
                                 {"__slots__": (), "_forward_cls": cls})

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def setup_context(ctx, inputs, output):
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode "
                                  "AD.")

    vjp = backward

    @classmethod
    def apply(cls, *args, **kwargs):
        if cls is Function:
            raise RuntimeError("Function.apply is called on a subclass of Function")
        ctx = FunctionCtx()
        setup = _setup_context_defined(cls)
        if setup:
            bound = inspect.signature(cls.forward).bind(*args, **kwargs)
            bound.apply_defaults()
            args, kwargs = bound.args, bound.kwargs
        grad_on = is_grad_enabled()
        ctx.needs_input_grad = tuple(grad_on and isinstance(a, Tensor) and a._requires_grad
                                     for a in args)
        with no_grad():
            if setup:
                result = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, result)
            else:
                result = cls.forward(ctx, *args, **kwargs)
        if not any(ctx.needs_input_grad):
            return result
        is_tuple = isinstance(result, tuple)
        outs = list(result) if is_tuple else [result]
        tensor_pos = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor))
        inputs = tuple(args[i] for i in tensor_pos)
        input_ids = {id(t) for t in inputs}
        kinds, attached, saved_out = [], [], {}
        for j, o in enumerate(outs):
            if not isinstance(o, Tensor):
                kinds.append(("none",))
                continue
            meta = (o.shape, o.dtype, o.device)
            if id(o) in ctx._non_diff or o.dtype.kind != "f":
                kinds.append(("zeros", meta))
                continue
            if id(o) in input_ids or o._op is not None or o._requires_grad:
                o = outs[j] = wrap(o._data, o.device)  # NOTE: never re-point an existing node
            else:
                saved_out[id(o)] = len(attached)
            kinds.append(("slot", len(attached), meta))
            attached.append(o)
        if not attached:
            return result
        op = cls._backward_cls()
        op.ctx, op.n_args, op.tensor_pos, op.out_kinds = ctx, len(args), tensor_pos, kinds
        ctx._op = op
        ctx._saved = [("out", saved_out[id(t)], t._data) if id(t) in saved_out else ("t", t)
                      for t in ctx._to_save]
        ctx._to_save = ()
        attach(op, inputs, attached, attached[0].device)
        return tuple(outs) if is_tuple else outs[0]


class _OnceDifferentiated(MultiOutputNode):
    __slots__ = ()

    def backward_slots(self, grads, node):
        raise RuntimeError("trying to differentiate twice a function that was marked with "
                           "@once_differentiable")


def once_differentiable(backward):
    """Decorator for a Function's backward that is not itself differentiable: it runs with
    grad mode off; differentiating its result (create_graph=True) raises."""

    @functools.wraps(backward)
    def wrapper(ctx, *grad_outputs):
        with no_grad():
            result = backward(ctx, *grad_outputs)
        if not is_grad_enabled():
            return result
        single = not isinstance(result, tuple)
        res = [result] if single else list(result)
        sources = tuple(g for g in grad_outputs if isinstance(g, Tensor) and g._requires_grad)
        if not sources:
            return result
        outs = [i for i, r in enumerate(res) if isinstance(r, Tensor) and r.dtype.kind == "f"]
        for i in outs:
            res[i] = wrap(res[i]._data, res[i].device)
        if outs:
            attach(_OnceDifferentiated(), sources, [res[i] for i in outs], res[outs[0]].device)
        return res[0] if single else tuple(res)

    return wrapper

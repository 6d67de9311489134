"""Activation checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost";
PyTorch's torch.utils.checkpoint): trade compute for memory.

``checkpoint(fn, *args)`` runs ``fn`` and keeps none of the tensors it makes inside: its outputs
become the outputs of one graph node whose inputs are every tensor ``fn`` reached from outside
(its Tensor arguments, the parameters of the modules it ran, tensors it closed over). Backward
runs ``fn`` again on the same arguments, with the random generator restored to its state at the
forward (dropout draws the same masks), and backpropagates through that recomputed graph up to
those inputs. Their gradients go back to the main backward, so each parameter's ``.grad`` is
accumulated once, by the main engine, in the same order as without checkpointing: the
gradients are bitwise those of the plain model (tests/test_checkpoint.py).

NOTE: the forward records the function's graph while it runs (``autograd.record_nodes``: that is
how the inside tensors are told from the outside ones) and drops it when it returns; the peak
while one segment runs is the same as during its recomputation. A checkpointed BatchNorm updates
its running statistics twice per step, as in PyTorch.
"""

from __future__ import annotations

import warnings

from .. import autograd as _ag
from .. import random as _random
from ..function import MultiOutputNode, attach
from ..tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential", "CheckpointError"]


class CheckpointError(RuntimeError):
    """The recomputation in backward did not match the forward."""


def _tensors(obj, out):
    """Every Tensor in obj (nested tuples, lists and dict values), in order."""
    if isinstance(obj, Tensor):
        out.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _tensors(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out)
    return out


def _boundary(nodes):
    """The tensors that require grad and that the ``nodes`` (made inside) read from outside."""
    inside = {id(t) for t in nodes}
    seen, out = set(), []
    for t in nodes:
        for i in t._inputs:
            if i._requires_grad and id(i) not in inside and id(i) not in seen:
                seen.add(id(i))
                out.append(i)
    return out


class CheckpointBackward(MultiOutputNode):
    __slots__ = ("fn", "args", "kwargs", "rng_state", "positions", "metas")

    def backward_slots(self, grads, node):
        create_graph = _ag.is_grad_enabled()
        outputs, nodes = _run(self.fn, self.args, self.kwargs, self.rng_state)
        flat = _tensors(outputs, [])
        roots, root_grads = [], []
        for k, (pos, meta) in enumerate(zip(self.positions, self.metas, strict=True)):
            t = flat[pos] if pos < len(flat) else None
            if t is None or (t.shape, t.dtype) != meta:
                got = None if t is None else (t.shape, t.dtype)
                raise CheckpointError(f"checkpoint: the recomputed output {pos} is {got}, the "
                                      f"forward's was {meta} (the function must compute the "
                                      f"same thing when run again)")
            if grads[k] is not None and t._requires_grad:
                roots.append(t)
                root_grads.append(grads[k])
        inputs = node._inputs
        if {id(t) for t in _boundary(nodes)} - {id(t) for t in inputs}:
            raise CheckpointError("checkpoint: the recomputed forward used tensors that "
                                  "require grad which the forward did not use")
        del nodes, flat, outputs
        capture = {id(t): None for t in inputs}
        if roots:
            _ag.run_backward(roots, root_grads, create_graph, create_graph, capture)
        return tuple(capture[id(t)] for t in inputs)


def _run(fn, args, kwargs, rng_state):
    """fn(*args, **kwargs) with grad on, recording its nodes; from ``rng_state`` if given (the
    global generator is put back afterwards, as PyTorch's fork_rng)."""
    outer = _random.get_rng_state() if rng_state is not None else None
    if rng_state is not None:
        _random.set_rng_state(rng_state)
    try:
        with _ag.enable_grad(), _ag.record_nodes() as nodes:
            outputs = fn(*args, **kwargs)
    finally:
        if outer is not None:
            _random.set_rng_state(outer)
    return outputs, nodes


def checkpoint(function, *args, use_reentrant: bool = False, preserve_rng_state: bool = True,
               **kwargs):
    """``function(*args, **kwargs)`` without keeping its intermediate tensors; backward
    recomputes them (see the module docstring). ``use_reentrant=True`` keeps PyTorch's
    reentrant variant's rules (no keyword arguments; no gradients at all when no Tensor
    argument requires grad); the gradients are the same either way."""
    if use_reentrant:
        if kwargs:
            raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
        if _ag.is_grad_enabled() and not any(isinstance(a, Tensor) and a.requires_grad
                                             for a in args):
            warnings.warn("None of the inputs have requires_grad=True. Gradients will be None",
                          UserWarning, stacklevel=2)
            with _ag.no_grad():
                return function(*args)
    if not _ag.is_grad_enabled():
        return function(*args, **kwargs)
    rng_state = _random.get_rng_state() if preserve_rng_state else None
    outputs, nodes = _run(function, args, kwargs, None)
    inside = {id(t) for t in nodes}
    flat = _tensors(outputs, [])
    positions, outs, seen = [], [], set()
    for pos, t in enumerate(flat):
        # NOTE: outputs made outside (an argument returned as it is) keep their own graph
        if t._requires_grad and id(t) in inside and id(t) not in seen:
            seen.add(id(t))
            positions.append(pos)
            outs.append(t)
    if not outs:
        return outputs
    boundary = tuple(_boundary(nodes))
    del nodes, inside
    op = CheckpointBackward()
    op.fn, op.args, op.kwargs, op.rng_state = function, args, kwargs, rng_state
    op.positions, op.metas = positions, [(t.shape, t.dtype) for t in outs]
    # NOTE: re-pointing the outputs drops the inside graph (nothing else refers to it)
    attach(op, boundary, outs, outs[0].device)
    return outputs


def checkpoint_sequential(functions, segments: int, input, use_reentrant: bool = False,  # noqa: A002
                          **kwargs):
    """Run the modules (a Sequential or a list of callables) in ``segments`` chunks, each
    checkpointed but the last, as ``torch.utils.checkpoint.checkpoint_sequential``."""
    preserve = kwargs.pop("preserve_rng_state", True)
    if kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    if hasattr(functions, "children") and not isinstance(functions, (list, tuple)):
        functions = list(functions.children())
    functions = list(functions)
    segments = int(segments)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be >= 1, got {segments}")

    def run_function(start, end):
        def forward(x):
            for j in range(start, end + 1):
                x = functions[j](x)
            return x

        return forward

    segment_size = len(functions) // segments
    end = -1
    for start in range(0, segment_size * (segments - 1), segment_size):
        end = start + segment_size - 1
        input = checkpoint(run_function(start, end), input, use_reentrant=use_reentrant,  # noqa: A001
                           preserve_rng_state=preserve)
    return run_function(end + 1, len(functions) - 1)(input)

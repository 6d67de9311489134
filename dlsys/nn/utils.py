"""Gradient utilities."""

from __future__ import annotations

import math

import numpy as np

from dlsys.autograd import no_grad
from dlsys.creation import tensor
from dlsys.tensor import Tensor

__all__ = ["clip_grad_norm_", "parameters_to_vector"]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False):
    """Scale the gradients of ``parameters`` in place so that their joint norm is at most
    ``max_norm`` (PyTorch's formula: coefficient ``max_norm / (norm + 1e-6)``, capped at 1).
    Returns the total norm before clipping as a 0-d float32 Tensor."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return tensor(0.0)
    with no_grad():  # reductions run on the grads' device; only scalars come to the host
        if math.isinf(norm_type):
            total = max((float(g.abs().max().item()) for g in grads if g.numel()), default=0.0)
        elif norm_type == 2.0:
            total = math.sqrt(sum(float((g * g).sum().item()) for g in grads))
        else:
            acc = sum(float((g.abs() ** norm_type).sum().item()) for g in grads)
            total = acc ** (1.0 / norm_type)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(f"the total norm of order {norm_type} of the gradients is "
                               f"non-finite ({total}), so it cannot be clipped")
        coef = float(max_norm) / (total + 1e-6)
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
    return tensor(total)


def parameters_to_vector(parameters) -> np.ndarray:
    """The parameters' values concatenated into one flat host array (a copy)."""
    return np.concatenate([np.asarray(p.numpy()).ravel() for p in parameters])

"""Gradient utilities (``torch.nn.utils``): norm clipping, value clipping."""

from __future__ import annotations

import math

import numpy as np

from dlsys.autograd import no_grad
from dlsys.creation import from_numpy, tensor
from dlsys.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm", "clip_grads_with_norm_",
           "parameters_to_vector"]


def _as_list(tensors) -> list:
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _norm(g: Tensor, p: float) -> np.generic:
    """The p-norm of one tensor as a host scalar of its dtype (reduced on its device; float16
    accumulates in float32, as torch's vector_norm does)."""
    acc = g.to(np.float32) if g.dtype == np.float16 else g
    if g.numel() == 0:
        value = 0.0
    elif p == math.inf:
        value = acc.abs().max().numpy()
    elif p == -math.inf:
        value = acc.abs().min().numpy()
    elif p == 0:
        value = np.count_nonzero(np.asarray(g))
    elif p == 2:
        value = np.sqrt((acc * acc).sum().numpy())
    else:
        value = (acc.abs() ** p).sum().numpy() ** (1.0 / p)
    return g.dtype.type(value)


def get_total_norm(tensors, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach=None) -> Tensor:
    """The ``norm_type`` norm of the norms of ``tensors`` (that of all of them as one vector), a
    0-d Tensor of their (promoted) dtype on the first one's device. ``foreach`` is accepted for
    PyTorch's signature; dlsys always loops."""
    tensors = _as_list(tensors)
    p = float(norm_type)
    if not tensors:
        return tensor(0.0)
    dtype = np.result_type(*[t.dtype for t in tensors])
    norms = np.array([_norm(t, p) for t in tensors], dtype=dtype)
    acc = norms.astype(np.result_type(dtype, np.float32))  # float16 sums in float32
    if p == math.inf:
        total = np.abs(norms).max()
    elif p == -math.inf:
        total = np.abs(norms).min()
    elif p == 0:
        total = np.count_nonzero(norms)
    elif p == 2:
        total = np.sqrt(np.sum(acc * acc))
    else:
        total = np.sum(np.abs(acc) ** p) ** (1.0 / p)
    total = dtype.type(total)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {p} for gradients from `parameters` is "
                           f"non-finite, so it cannot be clipped. To disable this error and "
                           f"scale the gradients by the non-finite norm anyway, set "
                           f"`error_if_nonfinite=False`")
    return from_numpy(np.array(total, dtype=dtype)).to(tensors[0].device)


def clip_grads_with_norm_(parameters, max_norm: float, total_norm, foreach=None) -> None:
    """Scale the gradients by ``min(max_norm / (total_norm + 1e-6), 1)``, computed in the norm's
    dtype as PyTorch does (a NaN norm makes every gradient NaN, as there)."""
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    if not grads:
        return
    total = np.asarray(total_norm)[()]
    coef = np.minimum(float(max_norm) / (total + 1e-6), total.dtype.type(1.0))
    if coef == 1.0:
        return  # NOTE: multiplying by 1 changes no bit
    with no_grad(), np.errstate(invalid="ignore"):  # NOTE: inf * 0 is nan, as in torch
        for g in grads:
            g.mul_(float(coef))


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their joint ``norm_type`` norm
    (2, inf, any p) is at most ``max_norm``; returns the norm before clipping as a 0-d Tensor
    of the gradients' dtype, as PyTorch. ``error_if_nonfinite`` raises for a NaN/inf norm."""
    parameters = _as_list(parameters)
    grads = [p.grad for p in parameters if p.grad is not None]
    with no_grad():
        total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total, foreach)
    return total


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient of ``parameters`` into ``[-clip_value, clip_value]`` in place."""
    v = float(clip_value)
    with no_grad():
        for p in _as_list(parameters):
            if p.grad is not None:
                p.grad.copy_(p.grad.clamp(-v, v))


def parameters_to_vector(parameters) -> np.ndarray:
    """The parameters' values concatenated into one flat host array (a copy)."""
    return np.concatenate([np.asarray(p.numpy()).ravel() for p in parameters])

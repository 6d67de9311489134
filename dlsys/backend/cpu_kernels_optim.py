"""CPU optimizer updates (PyTorch semantics), in place on param and state; grad is read only.

Each ``*_ref`` is the numpy reference; the Numba kernel beside it computes the same.
"""

from __future__ import annotations

import math

import numpy as np


def sgd_ref(param, grad, buf, lr, momentum, weight_decay, nesterov, dampening, first_step):
    """torch.optim.SGD for one tensor. ``buf`` is None when momentum == 0."""
    d = grad
    if weight_decay != 0:
        d = grad + weight_decay * param
    if momentum != 0:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    param -= lr * d


def adam_ref(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """torch.optim.Adam (decoupled=False) / AdamW (decoupled=True) for one tensor;
    ``step`` is the 1-based count of this update (bias corrections use it)."""
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    # NOTE: PyTorch's lerp_(grad, 1 - beta1), i.e. m + (1 - beta1) * (grad - m).
    m += (1 - beta1) * (grad - m)
    v *= beta2
    v += (1 - beta2) * grad * grad
    bc1 = 1 - beta1 ** step
    bc2_sqrt = math.sqrt(1 - beta2 ** step)
    denom = np.sqrt(v) / bc2_sqrt + eps
    param -= (lr / bc1) * (m / denom)

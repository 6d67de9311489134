"""Normalisation functions composed of Tensor ops (their gradients, of any order, come from
those): group_norm and rms_norm, as torch.nn.functional's. (layer_norm lives in ops.nn.)"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from . import reduce as _rd
from . import shape as _sh

__all__ = ["group_norm", "rms_norm"]


def _float(x, what):
    if x._data.dtype.kind != "f":
        raise TypeError(f"{what}: needs a floating tensor, got dtype {x._data.dtype}")


def group_norm(x: Tensor, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalise (N, C, *) input over each group of C / num_groups channels and the spatial
    dims (biased variance), then scale and shift per channel."""
    _float(x, "group_norm")
    num_groups = int(num_groups)
    if x.ndim < 2 or num_groups <= 0 or x.shape[1] % num_groups:
        raise ValueError(f"group_norm: expected (N, C, *) input with C divisible by num_groups "
                         f"{num_groups}, got shape {x.shape}")
    n, c = x.shape[:2]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (c,):
            raise ValueError(f"group_norm: {name} of shape {p.shape} does not match the "
                             f"{c} channels of input of shape {x.shape}")
    xg = _sh.reshape(x, n, num_groups, -1)
    xc = xg - _rd.mean(xg, 2, keepdims=True)
    var = _rd.mean(xc * xc, 2, keepdims=True)
    y = _sh.reshape(xc / (var + eps).sqrt(), *x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * _sh.reshape(weight, *shape)
    if bias is not None:
        y = y + _sh.reshape(bias, *shape)
    return y


def rms_norm(x: Tensor, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x**2) + eps) over the trailing ``normalized_shape`` dims, times weight;
    ``eps=None`` is the dtype's machine epsilon, as in PyTorch."""
    _float(x, "rms_norm")
    ns = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(int(s) for s in normalized_shape)
    k = len(ns)
    if k == 0 or x.shape[-k:] != ns:
        raise ValueError(f"rms_norm: input of shape {x.shape} does not end with "
                         f"normalized_shape {ns}")
    if weight is not None and weight.shape != ns:
        raise ValueError(f"rms_norm: weight of shape {weight.shape} does not match "
                         f"normalized_shape {ns}")
    eps = float(np.finfo(x.dtype).eps) if eps is None else float(eps)
    axes = tuple(range(x.ndim - k, x.ndim))
    y = x * (_rd.mean(x * x, axes, keepdims=True) + eps) ** -0.5
    return y if weight is None else y * weight

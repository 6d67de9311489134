"""Activations composed of elementwise ops (their gradients come from those): silu, softplus,
gelu with torch's ``approximate`` ("none": the exact erf form; "tanh"), each one fused op."""

from __future__ import annotations

from ..tensor import Tensor
from . import elementwise as _ew

__all__ = ["silu", "softplus", "gelu"]


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (swish)."""
    return x * _ew.sigmoid(x)


def softplus(x: Tensor, beta=1.0, threshold=20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as torch).

    NOTE: computed as max(z, 0) + log1p(exp(-|z|)) for z = beta x: exp never overflows, so
    neither branch of the final where has an inf whose gradient would turn into nan; the
    gradient is sigmoid(z) exactly (maximum's tie at 0 gives 1/2 there, abs's gives 0)."""
    z = x * float(beta) if beta != 1 else x
    soft = _ew.maximum(z, 0.0) + _ew.log1p(_ew.exp(-_ew.abs(z)))
    if beta != 1:
        soft = soft * (1.0 / float(beta))
    return _ew.where(z > float(threshold), x, soft)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x); ``approximate="tanh"``: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate == "none":
        return _ew.gelu(x)
    if approximate != "tanh":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _ew.gelu_tanh(x)

"""Dropout and reshaping modules."""

from __future__ import annotations

from . import functional as F
from .module import Module


class Dropout(Module):
    """Zeroes elements with probability p in training mode and scales the rest by 1/(1-p);
    the identity in eval mode."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Flattens dimensions start_dim..end_dim (default: all but the batch dimension)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        nd = x.ndim
        start = self.start_dim % nd if nd else 0
        end = self.end_dim % nd if nd else 0
        if end == nd - 1:
            return x.flatten(start)
        shape = tuple(x.shape)
        size = 1
        for s in shape[start:end + 1]:
            size *= s
        return x.reshape(*shape[:start], size, *shape[end + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

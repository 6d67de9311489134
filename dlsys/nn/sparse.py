"""Embedding lookup."""

from __future__ import annotations

import numpy as np

from dlsys.autograd import Function
from dlsys.creation import tensor
from dlsys.ops.elementwise import where
from dlsys.tensor import Tensor

from . import functional as F
from . import init
from ._factory import empty_parameter
from .module import Module


class _NoGradWhere(Function):
    """The identity; its gradient is zero where ``drop`` (bool, broadcast) is True."""

    @staticmethod
    def forward(ctx, x, drop):
        ctx.save_for_backward(drop)
        return x

    @staticmethod
    def backward(ctx, g):
        (drop,) = ctx.saved_tensors
        return where(drop, 0.0, g), None


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table, initialised N(0, 1) as in PyTorch;
    ``forward(idx)`` gathers rows for integer indices of any shape.

    ``padding_idx`` (may be negative): that row starts as zeros and gets no gradient (it is
    still returned for its indices, whatever it holds), as in PyTorch."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 device=None, dtype=None):
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        if padding_idx is not None:
            padding_idx = int(padding_idx)
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} must be within num_embeddings "
                                 f"{self.num_embeddings}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = empty_parameter((num_embeddings, embedding_dim), device, dtype)
        self.reset_parameters()

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx: int | None = None):
        """An Embedding holding a copy of the 2-D ``embeddings`` (a Tensor or array); frozen
        (no gradient) unless ``freeze=False``, as in PyTorch."""
        if embeddings.ndim != 2:
            raise ValueError(f"Embeddings parameter is expected to be 2-dimensional, got shape "
                             f"{tuple(embeddings.shape)}")
        w = embeddings if isinstance(embeddings, Tensor) else tensor(np.asarray(embeddings))
        m = cls(w.shape[0], w.shape[1], padding_idx=padding_idx, device=w.device, dtype=w.dtype)
        m.load_state_dict({"weight": w})
        m.weight.requires_grad = not freeze
        return m

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.detach()[self.padding_idx] = 0

    def forward(self, idx):
        out = F.embedding(idx, self.weight)
        if self.padding_idx is None or not out.requires_grad:
            return out
        if not isinstance(idx, Tensor):
            idx = tensor(np.asarray(idx), dtype=np.int64, device=self.weight.device)
        return _NoGradWhere.apply(out, (idx == self.padding_idx).unsqueeze(-1))

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s if self.padding_idx is None else s + f", padding_idx={self.padding_idx}"

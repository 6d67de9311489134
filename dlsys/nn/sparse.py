"""Embedding lookup."""

from __future__ import annotations

from . import functional as F
from . import init
from ._factory import empty_parameter
from .module import Module


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table, initialised N(0, 1) as in PyTorch;
    ``forward(idx)`` gathers rows for integer indices of any shape."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.weight = empty_parameter((num_embeddings, embedding_dim), device, dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)

    def forward(self, idx):
        return F.embedding(idx, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"

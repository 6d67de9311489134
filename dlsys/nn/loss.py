"""Loss modules (mean reduction)."""

from __future__ import annotations

from . import functional as F
from .module import Module


class CrossEntropyLoss(Module):
    """Mean cross-entropy of (N, C) logits and int64 class indices (N,)."""

    def forward(self, logits, target):
        return F.cross_entropy(logits, target)


class MSELoss(Module):
    """Mean squared error."""

    def forward(self, input, target):
        return F.mse_loss(input, target)

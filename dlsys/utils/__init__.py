"""Utilities above autograd (``torch.utils``): activation checkpointing."""

from .checkpoint import checkpoint, checkpoint_sequential

__all__ = ["checkpoint", "checkpoint_sequential"]

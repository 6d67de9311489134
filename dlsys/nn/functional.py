"""Functional interface (``import dlsys.nn.functional as F``): thin wrappers over dlsys.ops.

Every function checks its inputs and raises ValueError naming the shapes (or devices) and
TypeError naming the dtypes involved; nothing is broadcast or cast silently.
"""

from __future__ import annotations

from dlsys.ops.activation import gelu, silu, softplus
from dlsys.ops.elementwise import relu, sigmoid, tanh
from dlsys.ops.index import one_hot
from dlsys.ops.matmul import linear
from dlsys.ops.nn import (
    avg_pool2d,
    conv2d,
    cross_entropy,
    dropout,
    embedding,
    layer_norm,
    log_softmax,
    logsumexp,
    max_pool2d,
    mse_loss,
    softmax,
)
from dlsys.ops.norm import group_norm, rms_norm
from dlsys.ops.rearrange import pad

__all__ = ["relu", "gelu", "tanh", "sigmoid", "softmax", "log_softmax", "logsumexp",
           "cross_entropy", "mse_loss", "linear", "conv2d", "max_pool2d", "avg_pool2d",
           "dropout", "layer_norm", "embedding"]
__all__ += ["silu", "softplus", "one_hot", "pad"]
__all__ += ["group_norm", "rms_norm"]

"""Functional interface (``import dlsys.nn.functional as F``): thin wrappers over dlsys.ops.

Every function checks its inputs and raises ValueError naming the shapes (or devices) and
TypeError naming the dtypes involved; nothing is broadcast or cast silently.
"""

from __future__ import annotations

from dlsys.ops.activation import gelu, silu, softplus
from dlsys.ops.attention import scaled_dot_product_attention
from dlsys.ops.conv import conv2d
from dlsys.ops.elementwise import relu, sigmoid, tanh
from dlsys.ops.index import one_hot
from dlsys.ops.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from dlsys.ops.matmul import linear
from dlsys.ops.nn import dropout, embedding, layer_norm, log_softmax, logsumexp, softmax
from dlsys.ops.norm import group_norm, rms_norm
from dlsys.ops.pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from dlsys.ops.rearrange import pad

__all__ = ["relu", "gelu", "tanh", "sigmoid", "softmax", "log_softmax", "logsumexp",
           "cross_entropy", "nll_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss",
           "linear", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "scaled_dot_product_attention", "dropout", "layer_norm", "embedding",
           "silu", "softplus", "one_hot", "pad"]
__all__ += ["group_norm", "rms_norm"]

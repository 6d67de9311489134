"""Normalization layers: BatchNorm1d/2d (with running statistics), LayerNorm, GroupNorm,
RMSNorm."""

from __future__ import annotations

import numpy as np

from dlsys.autograd import no_grad
from dlsys.ops.norm import batch_norm_train

from . import functional as F
from . import init
from ._factory import empty_parameter, empty_tensor
from .module import Module


class _BatchNorm(Module):
    """Shared BatchNorm logic (PyTorch semantics).

    Training: normalise with the batch mean and biased variance over every axis but the
    channel axis (1), and update ``running_mean``/``running_var`` as
    ``running = (1 - momentum) * running + momentum * batch_stat`` with the *unbiased*
    batch variance (``momentum=None``: cumulative average over ``num_batches_tracked``).
    Eval: normalise with the running statistics.
    """

    _valid_ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = empty_parameter((num_features,), device, dtype)
            self.bias = empty_parameter((num_features,), device, dtype)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", empty_tensor((num_features,), device, dtype))
            self.register_buffer("running_var", empty_tensor((num_features,), device, dtype))
            self.register_buffer("num_batches_tracked", empty_tensor((), device, np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input_dim(self, x):
        if x.ndim not in self._valid_ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects input of "
                             f"{' or '.join(f'{d}-D' for d in self._valid_ndims)} with "
                             f"{self.num_features} channels at axis 1, got shape "
                             f"{tuple(x.shape)}")

    def forward(self, x):
        self._check_input_dim(x)
        bshape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training or not self.track_running_stats:
            # NOTE: one fused op (batch statistics, normalisation, affine; its backward too)
            y, mean, var = batch_norm_train(x, self.weight, self.bias, self.eps)
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, x.numel() // self.num_features)
            return y
        # eval: one fused scale and shift per channel
        scale = (self.running_var + self.eps).sqrt()
        if self.affine:
            scale = self.weight / scale
            shift = self.bias - self.running_mean * scale
        else:
            scale = scale ** -1.0
            shift = -(self.running_mean * scale)
        return x * scale.reshape(*bshape) + shift.reshape(*bshape)

    def _update_running_stats(self, mean, var, n):
        with no_grad():
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
            else:
                factor = float(self.momentum)
            unbiased = var.detach().reshape(self.num_features) * (n / max(n - 1, 1))
            self.running_mean.mul_(1.0 - factor)
            self.running_mean.add_(mean.detach().reshape(self.num_features), alpha=factor)
            self.running_var.mul_(1.0 - factor)
            self.running_var.add_(unbiased, alpha=factor)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


#: the shared base of the BatchNorm layers under a public name (PyTorch's
#: ``torch.nn.modules.batchnorm._BatchNorm``), for subclasses elsewhere (collective.SyncBatchNorm)
#: and for ``isinstance`` checks that mean "any BatchNorm"
BatchNormBase = _BatchNorm


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L) input."""

    _valid_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W) input."""

    _valid_ndims = (4,)


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` dimensions (biased variance),
    then applies an elementwise affine (weight ones, bias zeros; ``bias=False`` drops the
    bias, as in PyTorch)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = float(eps)
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = empty_parameter(self.normalized_shape, device, dtype)
            init.ones_(self.weight)
            if bias:
                self.bias = empty_parameter(self.normalized_shape, device, dtype)
                init.zeros_(self.bias)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Normalises (N, C, *) input over groups of ``num_channels / num_groups`` channels
    (biased variance), then a per-channel affine (weight ones, bias zeros)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps, self.affine = float(eps), affine
        if affine:
            self.weight = empty_parameter((num_channels,), device, dtype)
            self.bias = empty_parameter((num_channels,), device, dtype)
            init.ones_(self.weight)
            init.zeros_(self.bias)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"GroupNorm({self.num_groups}, {self.num_channels}) expects "
                             f"(N, {self.num_channels}, *) input, got shape {tuple(x.shape)}")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class RMSNorm(Module):
    """x / sqrt(mean(x**2) + eps) over the trailing ``normalized_shape`` dims, times a weight
    (ones); ``eps=None`` uses the input dtype's machine epsilon, as in PyTorch."""

    def __init__(self, normalized_shape, eps: float | None = None,
                 elementwise_affine: bool = True, device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = empty_parameter(self.normalized_shape, device, dtype)
            init.ones_(self.weight)
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

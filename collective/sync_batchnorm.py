"""SyncBatchNorm: BatchNorm whose batch statistics are those of the global batch of all ranks.

    model = col.convert_sync_batchnorm(model)        # every BatchNorm1d/2d replaced
    bn = col.SyncBatchNorm(64)                        # or built directly

As ``torch.nn.SyncBatchNorm``. In training, with more than one rank, forward reduces one fused
float64 array ``[sum (C), sum of squares (C), count]`` across the ranks (``col.allreduce`` with
``col.Sum``): every rank normalises with the mean and biased variance of the global batch, and
updates its running statistics from the same reduced numbers (unbiased variance over the
global count), so the running statistics stay bitwise identical on every rank. Backward reduces
``[sum(dy), sum(dy * xhat)]`` per channel the same way and gives each rank the gradient of the
sum of all ranks' losses with respect to its own input; the weight and bias gradients are the
rank's own share, which DistributedOptimizer then averages like any other gradient. Ranks may
hold different batch sizes (the count is reduced too). With one rank, in eval mode, or without
running statistics outside training, it is plain BatchNorm (as in PyTorch).

Every rank of the world (or of ``process_set``) must run the same SyncBatchNorm layers in the
same order, forward and backward: each is a collective call (checked by the handshake).

This module imports dlsys (a SyncBatchNorm is a dlsys Module); ``collective`` imports it only
when ``col.SyncBatchNorm`` or ``col.convert_sync_batchnorm`` is first used.
"""

from __future__ import annotations

import numpy as np

import dlsys as ds

from .allreduce import allreduce
from .comm import size
from .reduce_ops import Sum

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm", "sync_batch_norm"]


def _sum_over_ranks(values: np.ndarray, process_set) -> np.ndarray:
    if process_set is None:
        return allreduce(values, op=Sum)
    return allreduce(values, op=Sum, process_set=process_set)


def _per_channel(a: np.ndarray, like, ndim: int):
    """The (C,) float64 array ``a`` as a Tensor shaped (1, C, 1, ...) in ``like``'s dtype and
    on its device."""
    shape = (1, a.shape[0]) + (1,) * (ndim - 2)
    return ds.tensor(a.reshape(shape), dtype=like.dtype, device=like.device)


class _SyncBatchNormFunction(ds.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with the global batch's statistics.
    Returns (y, stats): stats is the float64 array [mean (C), biased var (C), count]."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, process_set):
        C = x.shape[1]
        axes = (0,) + tuple(range(2, x.ndim))
        n_local = x.numel() // C
        packed = np.zeros(2 * C + 1, np.float64)
        packed[-1] = n_local
        if n_local:
            # NOTE: the local mean and the sum of squared deviations from it are taken in x's
            # dtype, as plain BatchNorm does (two passes, no cancellation); only their
            # conversion to [sum, sum of squares] is in float64, where the global
            # E[x^2] - E[x]^2 loses nothing that matters at the input's precision.
            m = x.mean(dim=axes, keepdim=True)
            xc = x - m
            m2 = np.asarray((xc * xc).sum(dim=axes).numpy(), np.float64)
            m = np.asarray(m.numpy(), np.float64).reshape(C)
            packed[:C] = n_local * m
            packed[C:2 * C] = m2 + n_local * m * m
        total = _sum_over_ranks(packed, process_set)
        n = total[-1]
        if n <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel when "
                             f"training, got {int(n)} over all ranks (input shape "
                             f"{tuple(x.shape)} on this rank)")
        mean = total[:C] / n
        var = np.maximum(total[C:2 * C] / n - mean * mean, 0.0)
        invstd = 1.0 / np.sqrt(var + eps)
        xhat = (x - _per_channel(mean, x, x.ndim)) * _per_channel(invstd, x, x.ndim)
        y = xhat
        cshape = (1, C) + (1,) * (x.ndim - 2)
        if weight is not None:
            y = y * weight.reshape(cshape)
        if bias is not None:
            y = y + bias.reshape(cshape)
        ctx.save_for_backward(xhat, weight)
        ctx.invstd, ctx.count, ctx.process_set = invstd, n, process_set
        stats = np.concatenate([mean, var, [n]])
        return y, stats

    @staticmethod
    @ds.autograd.once_differentiable
    def backward(ctx, g, _stats_grad):
        xhat, weight = ctx.saved_tensors
        C, ndim = xhat.shape[1], xhat.ndim
        axes = (0,) + tuple(range(2, ndim))
        sum_dy = g.sum(dim=axes)
        sum_dy_xhat = (g * xhat).sum(dim=axes)
        gx = None
        if ctx.needs_input_grad[0]:
            local = np.concatenate([np.asarray(sum_dy.numpy(), np.float64),
                                    np.asarray(sum_dy_xhat.numpy(), np.float64)])
            total = _sum_over_ranks(local, ctx.process_set)
            n = ctx.count
            scale = ctx.invstd if weight is None else \
                ctx.invstd * np.asarray(weight.numpy(), np.float64)
            gx = (g - _per_channel(total[:C] / n, g, ndim)
                  - xhat * _per_channel(total[C:] / n, g, ndim)) * _per_channel(scale, g, ndim)
        gw = sum_dy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        gb = sum_dy if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None


def sync_batch_norm(x, weight=None, bias=None, eps: float = 1e-5, process_set=None):
    """Batch normalisation of ``x`` (N, C, *) with the statistics of the batch of every rank
    (a collective call). Returns (y, mean, var, count): the output, and the global batch's
    per-channel mean and biased variance (float64 numpy arrays) and its size per channel."""
    y, stats = _SyncBatchNormFunction.apply(x, weight, bias, float(eps), process_set)
    C = x.shape[1]
    return y, stats[:C], stats[C:2 * C], int(stats[-1])


class SyncBatchNorm(ds.nn.BatchNormBase):
    """BatchNorm over (N, C, *) input whose batch statistics are reduced across the ranks
    (see the module docstring). ``process_set`` (``process_group``, PyTorch's spelling):
    reduce over that set of ranks only; default the world."""

    _valid_ndims = (2, 3, 4, 5)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, process_set=None,
                 device=None, dtype=None, *, process_group=None):
        if process_set is not None and process_group is not None:
            raise ValueError("SyncBatchNorm: give process_set or process_group, not both")
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.process_set = process_set if process_set is not None else process_group

    def _world_size(self) -> int:
        return size() if self.process_set is None else self.process_set.size()

    def forward(self, x):
        self._check_input_dim(x)
        if not self.training or self._world_size() == 1:
            return super().forward(x)
        y, mean, var, n = sync_batch_norm(x, self.weight, self.bias, self.eps, self.process_set)
        if self.track_running_stats:
            self._update_from_global(mean, var, n)
        return y

    def _update_from_global(self, mean, var, n):
        """running = (1 - f) running + f stat, from the reduced (hence identical) statistics."""
        with ds.no_grad():
            self.num_batches_tracked.add_(1)
            f = (1.0 / float(self.num_batches_tracked.item()) if self.momentum is None
                 else float(self.momentum))
            for buf, stat in ((self.running_mean, mean), (self.running_var, var * (n / (n - 1)))):
                old = np.asarray(buf.numpy(), np.float64)
                buf.copy_(ds.tensor((1.0 - f) * old + f * stat, dtype=buf.dtype))

    def extra_repr(self):
        return super().extra_repr() + (f", process_set={self.process_set!r}"
                                       if self.process_set is not None else "")

    @classmethod
    def convert_sync_batchnorm(cls, module, process_set=None, *, process_group=None):
        """``module`` with every BatchNorm1d/2d replaced by a SyncBatchNorm (see
        ``convert_sync_batchnorm``)."""
        return convert_sync_batchnorm(module, process_set, process_group=process_group)


def convert_sync_batchnorm(module, process_set=None, *, process_group=None):
    """Replace every BatchNorm1d/BatchNorm2d in ``module`` (recursively; ``module`` itself too)
    by a SyncBatchNorm with the same options, sharing its weight and bias Parameters and its
    running statistics (as PyTorch's convert_sync_batchnorm: an optimizer built before keeps
    working) and keeping its training flag. Returns the converted module (``module`` itself
    unless it is a BatchNorm)."""
    if process_set is not None and process_group is not None:
        raise ValueError("convert_sync_batchnorm: give process_set or process_group, not both")
    process_set = process_set if process_set is not None else process_group
    out = module
    if isinstance(module, (ds.nn.BatchNorm1d, ds.nn.BatchNorm2d)):
        ref = module.weight if module.affine else module.running_mean
        dev, dtype = (ref.device, ref.dtype) if ref is not None else (None, None)
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_set, device=dev, dtype=dtype)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, process_set))
    return out

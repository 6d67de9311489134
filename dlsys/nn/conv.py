"""Convolution layers (NCHW)."""

from __future__ import annotations

from . import functional as F
from ._factory import empty_parameter, pair, reset_weight_and_bias
from .module import Module


class Conv2d(Module):
    """2-D cross-correlation; weight (out_channels, in_channels, kh, kw). PyTorch's default
    init: kaiming_uniform_(a=sqrt(5)) for the weight, U(-1/sqrt(fan_in), ...) for the bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = pair(kernel_size)
        self.stride = stride
        self.padding = padding
        self.weight = empty_parameter((out_channels, in_channels, *self.kernel_size),
                                      device, dtype)
        if bias:
            self.bias = empty_parameter((out_channels,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        reset_weight_and_bias(self.weight, self.bias)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != 0:
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s

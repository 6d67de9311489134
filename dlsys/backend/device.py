"""The kernel interface: what every device (cpu, cuda) implements.

A device owns arrays of its native type (``numpy.ndarray`` on the CPU, a Numba device array
on CUDA) and runs plain kernels on them. The autograd front end (``dlsys.ops``) calls only
these methods, so a new device is a new subclass and nothing else.

Conventions (needle style):
- Arrays given to a kernel may be non-contiguous views unless a method says "compact";
  kernels return new arrays. A trailing ``out=`` argument, where present, is written in place.
- Binary elementwise kernels receive operands of the SAME shape and dtype: broadcasting and
  dtype checks are resolved once in the front end (``broadcast_to`` views), never here.
- ``axes`` are tuples of non-negative ints, already normalised by the front end.
- dtypes are numpy dtypes (float16/32/64, int32/64, bool).
"""

from __future__ import annotations

import numpy as np

UNARY_OPS = ("neg", "exp", "log", "sqrt", "abs", "sign", "relu", "tanh", "sigmoid", "gelu",
             "erf", "gelu_grad")  # gelu is exact (erf); gelu_grad(x) = Phi(x) + x * phi(x)
BINARY_OPS = ("add", "sub", "mul", "div", "pow", "maximum", "minimum",
              "eq", "ne", "lt", "le", "gt", "ge")  # comparisons return bool arrays
# scalar ops: any binary op with a Python scalar on the right; reverse=True puts it on the left


def pair(v, name="value"):
    """(a, b) from an int or a pair of ints: kernel sizes, strides, paddings."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


class Device:
    """Base class of devices. Subclasses implement every method that raises here."""

    name = "device"

    def __repr__(self):
        return f"device(type='{self.name}')"

    def __eq__(self, other):
        return isinstance(other, Device) and repr(self) == repr(other)

    def __hash__(self):
        return hash(repr(self))

    def is_available(self) -> bool:
        return True

    def synchronize(self):
        """Wait until every queued kernel has finished (CUDA launches are asynchronous; for
        timing). Added by cuda; a no-op on synchronous devices."""

    # -- memory ------------------------------------------------------------------------------
    def empty(self, shape, dtype):
        raise NotImplementedError

    def full(self, shape, value, dtype):
        raise NotImplementedError

    def from_numpy(self, a: np.ndarray):
        """A device array holding a copy of ``a`` (no copy on the CPU when already compact)."""
        raise NotImplementedError

    def to_numpy(self, x, out: np.ndarray | None = None) -> np.ndarray:
        """A host array with x's values (on the CPU: x itself, no copy, unless ``out`` is given)."""
        raise NotImplementedError

    def copy_(self, dst, src):
        """dst[...] = src in place (same shape; casts to dst's dtype). ``src`` may be a device
        array of this device or a host numpy array (that is how collective stages CUDA data)."""
        raise NotImplementedError

    def add_(self, dst, src):
        """dst += src in place (same shape; src cast to dst's dtype), keeping dst the same
        object (gradient accumulation into bucket views). Added by cuda; this default composes
        other kernels, a device may fuse it."""
        self.copy_(dst, self.binary("add", dst, self.astype(src, dst.dtype)))
        return dst

    def astype(self, x, dtype):
        raise NotImplementedError

    def data_ptr(self, x) -> int:
        """The address of x's first element (device memory on CUDA)."""
        iface = getattr(x, "__cuda_array_interface__", None) or x.__array_interface__
        return int(iface["data"][0])

    def strides(self, x) -> tuple:
        """x's strides in elements (PyTorch's ``stride()``), not bytes."""
        size = np.dtype(x.dtype).itemsize
        return tuple(int(s) // size for s in x.strides)

    def compact(self, x):
        """A C-contiguous array with x's values (x itself when it already is)."""
        raise NotImplementedError

    # -- random: drawn on the host from a numpy Generator, so every device gives the same
    # numbers for the same seed; devices may override with faster equivalents.
    def rand(self, shape, dtype, rng: np.random.Generator):
        return self.from_numpy(rng.random(shape, dtype=np.float64).astype(dtype))

    def randn(self, shape, dtype, rng: np.random.Generator):
        return self.from_numpy(rng.standard_normal(shape, dtype=np.float64).astype(dtype))

    # -- views (may return views or compact copies) --------------------------------------------
    def reshape(self, x, shape):
        raise NotImplementedError

    def permute(self, x, axes):
        raise NotImplementedError

    def broadcast_to(self, x, shape):
        raise NotImplementedError

    def getitem(self, x, index):
        """Basic slicing (ints, slices, None, Ellipsis) or integer-array gather (numpy rules)."""
        raise NotImplementedError

    def index_add(self, out, index, values):
        """out[index] += values, adding repeated indices (scatter-add); in place on ``out``."""
        raise NotImplementedError

    def stack(self, arrays, axis):
        raise NotImplementedError

    def concatenate(self, arrays, axis):
        raise NotImplementedError

    # -- elementwise ---------------------------------------------------------------------------
    def unary(self, op: str, x):
        raise NotImplementedError

    def unary_backward(self, op: str, x, y, grad):
        """grad * op'(x), fused, for op in ("relu", "tanh", "sigmoid", "exp", "gelu");
        y = op(x) is the forward output (tanh, sigmoid and exp use it). Added by backend-cpu;
        this default composes other kernels, so a device need not override it."""
        if op == "relu":
            return self.where(self.scalar("gt", x, 0), grad, self.full(x.shape, 0, x.dtype))
        if op == "tanh":
            d = self.scalar("sub", self.binary("mul", y, y), 1, reverse=True)
        elif op == "sigmoid":
            d = self.binary("mul", y, self.scalar("sub", y, 1, reverse=True))
        elif op == "exp":
            d = y
        elif op == "gelu":
            d = self.unary("gelu_grad", x)
        else:
            raise ValueError(f"unary_backward: unsupported op {op!r}")
        return self.binary("mul", grad, d)

    def binary(self, op: str, a, b):
        raise NotImplementedError

    def scalar(self, op: str, a, s, reverse: bool = False):
        """op(a, s), or op(s, a) when reverse; s is a Python number, the result has a's dtype."""
        raise NotImplementedError

    def where(self, cond, a, b):
        raise NotImplementedError

    # -- reductions ----------------------------------------------------------------------------
    def sum(self, x, axes, keepdims=False):
        raise NotImplementedError

    def max(self, x, axis, keepdims=False):
        """(values, argmax) along one axis; argmax is int64 with the values' shape."""
        raise NotImplementedError

    # -- linear algebra ------------------------------------------------------------------------
    def matmul(self, a, b):
        """(..., m, k) @ (..., k, n) with equal batch shapes (the front end broadcasts them)."""
        raise NotImplementedError

    # -- convolution and pooling (NCHW) ---------------------------------------------------------
    def im2col(self, x, kh, kw, stride, padding):
        """(N, C, H, W) -> compact (N*OH*OW, C*kh*kw), rows in (n, oh, ow) order."""
        raise NotImplementedError

    def col2im(self, cols, x_shape, kh, kw, stride, padding):
        """The adjoint of im2col: scatter-add columns back to a (N, C, H, W) array."""
        raise NotImplementedError

    def max_pool2d(self, x, kernel, stride):
        """(out, argmax) where argmax holds each output's flat index into its (H*W) plane."""
        raise NotImplementedError

    def max_pool2d_backward(self, grad_out, argmax, x_shape):
        raise NotImplementedError

    def avg_pool2d(self, x, kernel, stride):
        raise NotImplementedError

    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride):
        raise NotImplementedError

    # -- fused softmax family (over the last axis of a compact 2-D array) -----------------------
    def softmax(self, x):
        raise NotImplementedError

    def log_softmax(self, x):
        raise NotImplementedError

    def logsumexp(self, x):
        """Stable log(sum(exp(x))) over the last axis; the result drops that axis. Added by
        backend-cpu; this default composes other kernels (x - log_softmax(x) at column 0)."""
        ls = self.log_softmax(x)
        return self.binary("sub", self.getitem(x, (Ellipsis, 0)), self.getitem(ls, (Ellipsis, 0)))

    def cross_entropy(self, logits, target):
        """Mean cross-entropy of (N, C) logits and int64 (N,) targets, and the softmax of the
        logits (saved for the backward): returns (loss as a 0-d array, probs)."""
        raise NotImplementedError

    def cross_entropy_backward(self, probs, target, grad_loss):
        """d(mean loss)/d(logits) = (probs - onehot(target)) * grad_loss / N."""
        raise NotImplementedError

    # -- optimizer updates (in place on param and state; never modify grad) ----------------------
    def sgd_step(self, param, grad, momentum_buf, lr, momentum, weight_decay, nesterov,
                 dampening, first_step):
        """PyTorch's SGD update; momentum_buf is None when momentum == 0."""
        raise NotImplementedError

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  step, decoupled):
        """PyTorch's Adam (decoupled=False) / AdamW (decoupled=True) update with bias correction."""
        raise NotImplementedError

"""The kernel interface: what every device (cpu, cuda) implements.

A device owns arrays of its native type (``numpy.ndarray`` on the CPU, a Numba device array
on CUDA) and runs plain kernels on them. The autograd front end (``dlsys.ops``) calls only
these methods, so a new device is a new subclass and nothing else.

Conventions (needle style):
- Arrays given to a kernel may be non-contiguous views unless a method says "compact";
  kernels return new arrays. Methods ending in ``_`` and a trailing ``out=`` argument write in
  place.
- Inputs are validated once, in the front end (``dlsys.ops``, ``dlsys.tensor``): shapes,
  dtypes, window sizes, class indices. Binary elementwise kernels receive operands of the SAME
  shape and dtype (broadcasting is resolved there, with ``broadcast_to`` views).
- ``axes`` are tuples of non-negative ints, already normalised by the front end.
- dtypes are numpy dtypes (float16/32/64, int32/64, bool); float16 follows one policy,
  ``float16_via_float32``.
- Optimizer updates are not methods: they are registered per device in
  ``dlsys.backend.updates``, so a new optimizer does not touch this class.
"""

from __future__ import annotations

import functools

import numpy as np

from . import updates

UNARY_OPS = ("neg", "exp", "log", "sqrt", "abs", "sign", "relu", "tanh", "sigmoid", "gelu",
             "erf", "gelu_grad",  # gelu is exact (erf); gelu_grad(x) = Phi(x) + x * phi(x)
             "sin", "cos", "log1p", "logical_not", "bitwise_not")  # the last two: bool, ints
# The binary ops of every device, as numpy's ufuncs: the CPU computes with them, and every
# device takes its result dtypes from them (comparisons return bool arrays).
# Scalar ops: any binary op with a Python scalar on the right; reverse=True puts it on the left.
NUMPY_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum,
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
    "bitwise_and": np.bitwise_and, "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor,
    "remainder": np.remainder, "floor_divide": np.floor_divide,  # Python's: toward -inf
}
BINARY_OPS = tuple(NUMPY_BINARY)
COMPARE_OPS = ("eq", "ne", "lt", "le", "gt", "ge")
FLOAT16 = np.dtype(np.float16)
FLOAT32 = np.dtype(np.float32)


@functools.lru_cache(maxsize=1024)
def binary_result_dtype(op, da, db):
    """numpy's result dtype of op on arrays of dtypes da, db (int / int -> float64,
    comparisons -> bool); cached, because kernel launches are what should cost."""
    with np.errstate(all="ignore"):
        return NUMPY_BINARY[op](np.ones(1, da), np.ones(1, db)).dtype


@functools.lru_cache(maxsize=1024)
def scalar_result_dtype(op, da, stype, reverse):
    """numpy's result dtype of op(array, Python scalar); float arrays keep their dtype."""
    if op not in COMPARE_OPS and da.kind == "f":
        return da
    with np.errstate(all="ignore"):
        z, s = np.ones(1, da), stype(1)
        return (NUMPY_BINARY[op](s, z) if reverse else NUMPY_BINARY[op](z, s)).dtype


def float16_via_float32(*arrays, inplace=()):
    """The float16 policy of every device, as a method decorator.

    When the argument at ``arrays[0]`` is float16, the method runs on float32 copies of the
    float16 arguments at positions ``arrays`` (after self) and its float32 results are rounded
    back to float16 once; bool and integer results (comparisons, argmax indices) are returned
    as they are. For an in-place method, the arguments at ``inplace`` are written back from
    their float32 copies and the first of them is returned (None if the method returns None).
    Other dtypes call the method directly.

    NOTE: float16 arithmetic is partial in Numba (CPU: none; CUDA: recent GPUs, no portable
    atomics), and exp sums, matmuls and optimizer updates lose too much in float16: computed
    in float32 and rounded once, as PyTorch does.
    """
    first = arrays[0]

    def decorate(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            if args[first].dtype != FLOAT16:
                return method(self, *args, **kwargs)
            up = list(args)
            for i in arrays:
                a = up[i] if i < len(up) else None
                if a is not None and a.dtype == FLOAT16:
                    up[i] = self.astype(a, FLOAT32)
            result = method(self, *up, **kwargs)
            if inplace:
                for i in inplace:
                    if args[i] is not None:
                        self.copy_(args[i], up[i])
                return None if result is None else args[inplace[0]]
            return _round_back(self, result)
        return run
    return decorate


def _round_back(dev, result):
    if isinstance(result, tuple):
        return tuple(_round_back(dev, r) for r in result)
    if result is None or result.dtype != FLOAT32:
        return result
    return dev.astype(result, FLOAT16)


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

    def update(self, name: str, *args):
        """Run the optimizer update ``name`` registered for this device (``updates``) on raw
        arrays: ``device.update("sgd", param, grad, momentum_buf, lr, ...)``."""
        return updates.get(self, name)(self, *args)

    def synchronize(self):
        """Wait until every queued kernel has finished (CUDA launches are asynchronous; for
        timing). Added by cuda; a no-op on synchronous devices."""

    # -- memory ------------------------------------------------------------------------------
    def empty(self, shape, dtype):
        raise NotImplementedError

    def full(self, shape, value, dtype):
        raise NotImplementedError

    def from_numpy(self, a: np.ndarray):
        """A device array holding a copy of ``a``, same shape (0-d stays 0-d; no copy on the
        CPU when ``a`` is already compact and writeable)."""
        raise NotImplementedError

    def to_numpy(self, x, out: np.ndarray | None = None) -> np.ndarray:
        """A host array with x's values (on the CPU: x itself, no copy, unless ``out`` is
        given); with ``out``, x's values are written into it (cast to its dtype) and it is
        returned: one device-to-host copy straight into ``out`` where the layouts allow."""
        raise NotImplementedError

    def copy_(self, dst, src):
        """dst[...] = src in place (same shape; casts to dst's dtype). ``src`` may be a device
        array of this device or a host numpy array (that is how collective stages CUDA data)."""
        raise NotImplementedError

    def copy_from(self, dst, src, src_device: Device):
        """dst[...] = src for ``src`` an array of another device (casts to dst's dtype). This
        default stages it through host memory; the CPU copies straight into ``dst``."""
        return self.copy_(dst, src_device.to_numpy(src))

    def add_(self, dst, src):
        """dst += src in place (same shape; src cast to dst's dtype), keeping dst the same
        object (gradient accumulation into bucket views). This default composes other kernels;
        a device may fuse it."""
        return self.copy_(dst, self.binary("add", dst, self.astype(src, dst.dtype)))

    def binary_(self, op: str, dst, src):
        """dst = op(dst, src) in place, for operands of the same shape and dtype (``src`` may be
        a broadcast view); returns dst."""
        return self.copy_(dst, self.binary(op, dst, src))

    def scalar_(self, op: str, dst, s):
        """dst = op(dst, s) in place for a Python scalar s, the result cast to dst's dtype."""
        return self.copy_(dst, self.scalar(op, dst, s))

    def fill_(self, dst, value):
        """Every element of dst (a view writes through) set to ``value``; returns dst."""
        return self.copy_(dst, self.full(tuple(dst.shape), value, dst.dtype))

    def setitem(self, dst, index, value):
        """dst[index] = value in place (numpy rules: basic or advanced indexing, value
        broadcast); ``value`` is a scalar, a host numpy array or an array of this device."""
        raise NotImplementedError

    def owns_storage(self, x) -> bool:
        """True when x is compact and no other array object shares its memory except through
        a reference to x itself: then whoever holds the only reference to x may keep it as
        its own (autograd takes a fresh gradient over instead of copying it)."""
        return False

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
        """(values, argmax) along one axis; argmax is int64 with the values' shape (the first
        maximum; a NaN counts as the maximum)."""
        raise NotImplementedError

    def min(self, x, axis, keepdims=False):
        """(values, argmin) along one axis, as ``max``."""
        raise NotImplementedError

    def cumsum(self, x, axis):
        """The cumulative sum along ``axis`` (numpy's result dtype: integers give int64)."""
        raise NotImplementedError

    def argsort(self, x, axis, descending=False):
        """int64 indices that sort x along ``axis``, stably (equal elements keep their order);
        NaN sorts as the largest value (last ascending, first descending), as torch."""
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

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
             "gelu_tanh", "gelu_tanh_grad",  # torch's approximate="tanh" and its derivative
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


def pads4(padding):
    """(top, bottom, left, right) from an int, a (ph, pw) pair or a 4-tuple (asymmetric
    padding, as conv2d's padding="same" with an even kernel needs)."""
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        return tuple(int(p) for p in padding)
    ph, pw = pair(padding, "padding")
    return ph, ph, pw, pw


def conv_out_size(n, k, s, p0, p1, d):
    """Output length of a convolution along one axis (PyTorch's formula, floor division)."""
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def pool_out_size(n, k, s, p, d, ceil_mode):
    """Output length of a pooling window along one axis, PyTorch's rule: with ceil_mode the
    last window may run past the input, but must start inside the input or its left pad."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


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
        """grad * op'(x), fused, for op in relu, tanh, sigmoid, exp, gelu, gelu_tanh;
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
        elif op in ("gelu", "gelu_tanh"):
            d = self.unary(op + "_grad", x)
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

    # -- convolution (NCHW) --------------------------------------------------------------------
    # stride and dilation are (h, w) pairs, padding (top, bottom, left, right) (``pads4``);
    # the front end has checked the shapes (C == w.shape[1] * groups, output size >= 1).
    def im2col(self, x, kh, kw, stride, padding, dilation=1):
        """(N, C, H, W) -> compact (N*OH*OW, C*kh*kw), rows in (n, oh, ow) order, columns in
        (c, i, j) order; padding as ``pads4`` takes it."""
        raise NotImplementedError

    def col2im(self, cols, x_shape, kh, kw, stride, padding, dilation=1):
        """The adjoint of im2col: scatter-add columns back to a (N, C, H, W) array."""
        raise NotImplementedError

    def _conv_cols(self, x, w_shape, stride, padding, dilation, groups):
        """im2col of x split by group: (G, N*L, C/G*kh*kw), and (OH, OW)."""
        n, c, h, wd = x.shape
        o, cg, kh, kw = w_shape
        pt, pb, pl, pr = pads4(padding)
        oh = conv_out_size(h, kh, stride[0], pt, pb, dilation[0])
        ow = conv_out_size(wd, kw, stride[1], pl, pr, dilation[1])
        cols = self.im2col(x, kh, kw, stride, (pt, pb, pl, pr), dilation)
        cols = self.permute(self.reshape(cols, (n * oh * ow, groups, -1)), (1, 0, 2))
        return self.compact(cols), (oh, ow)

    def _conv_g(self, g, groups):
        """(N, O, OH, OW) -> compact (G, N*L, O/G)."""
        n, o, oh, ow = g.shape
        g4 = self.reshape(self.compact(g), (n, groups, o // groups, oh * ow))
        return self.compact(self.reshape(self.permute(g4, (1, 0, 3, 2)),
                                         (groups, n * oh * ow, o // groups)))

    def conv2d(self, x, w, stride, padding, dilation, groups):
        """(N, C, H, W) * (O, C/groups, kh, kw) -> (N, O, OH, OW), cross-correlation. This
        default is im2col and one batched GEMM over the groups; a device may fuse it."""
        n = x.shape[0]
        o, cg, kh, kw = w.shape
        cols, (oh, ow) = self._conv_cols(x, w.shape, stride, padding, dilation, groups)
        wg = self.reshape(self.compact(w), (groups, o // groups, cg * kh * kw))
        out = self.matmul(cols, self.compact(self.permute(wg, (0, 2, 1))))  # G, NL, Og
        out = self.permute(self.reshape(out, (groups, n, oh * ow, o // groups)), (1, 0, 3, 2))
        return self.reshape(self.compact(out), (n, o, oh, ow))

    def conv2d_backward_input(self, g, w, x_shape, stride, padding, dilation, groups):
        """d(conv2d)/dx applied to the output gradient g (the transposed convolution)."""
        o, cg, kh, kw = w.shape
        wg = self.reshape(self.compact(w), (groups, o // groups, cg * kh * kw))
        dcols = self.matmul(self._conv_g(g, groups), wg)  # G, NL, Ckg
        dcols = self.reshape(self.compact(self.permute(dcols, (1, 0, 2))), (dcols.shape[1], -1))
        return self.col2im(dcols, tuple(x_shape), kh, kw, stride, pads4(padding), dilation)

    def conv2d_backward_weight(self, x, g, w_shape, stride, padding, dilation, groups):
        """d(conv2d)/dw applied to the output gradient g: (O, C/groups, kh, kw)."""
        cols, _ = self._conv_cols(x, w_shape, stride, padding, dilation, groups)
        gt = self.compact(self.permute(self._conv_g(g, groups), (0, 2, 1)))  # G, Og, NL
        return self.reshape(self.matmul(gt, cols), tuple(w_shape))

    # -- pooling (NCHW) ------------------------------------------------------------------------
    # kernel, stride, padding, dilation: ints or (h, w) pairs (stride None: the kernel); the
    # output size follows ``pool_out_size``; the front end has checked padding <= kernel / 2.
    def max_pool2d(self, x, kernel, stride, padding=0, dilation=1, ceil_mode=False):
        """(out, argmax): argmax holds each output's flat index into its (H*W) input plane;
        the first maximum of a window wins, a NaN beats every number (the last NaN wins), as
        PyTorch's CPU kernel."""
        raise NotImplementedError

    def max_pool2d_backward(self, grad_out, argmax, x_shape):
        raise NotImplementedError

    def avg_pool2d(self, x, kernel, stride, padding=0, ceil_mode=False, count_include_pad=True,
                   divisor_override=None):
        """Window means; the divisor is PyTorch's: the window clipped to the padded input
        (count_include_pad) or to the input, or divisor_override."""
        raise NotImplementedError

    def avg_pool2d_backward(self, grad_out, x_shape, kernel, stride, padding=0, ceil_mode=False,
                            count_include_pad=True, divisor_override=None):
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

    def cross_entropy(self, logits, target, ignore_index=-100):
        """Mean cross-entropy of (N, C) logits and int64 (N,) targets over the rows whose
        target is not ``ignore_index`` (nan if none), and the softmax of the logits (saved for
        the backward): returns (loss as a 0-d array, probs)."""
        raise NotImplementedError

    def cross_entropy_backward(self, probs, target, grad_loss, ignore_index=-100):
        """d(mean loss)/d(logits) = (probs - onehot(target)) * grad_loss / (rows kept), zero
        on the ignored rows."""
        raise NotImplementedError

    def log_sigmoid(self, x):
        """log(sigmoid(x)) = -log1p(exp(-x)), accurate for large |x| (binary cross-entropy
        with logits)."""
        raise NotImplementedError

    def softmax_backward(self, y, g, log=False):
        """The gradient of softmax (``log``: log_softmax) along the rows of compact 2-D arrays
        from its output y and the output gradient g: y (g - sum(g y)), or g - exp(y) sum(g).
        Added by backend-cpu; this default composes other kernels."""
        if log:
            return self.binary("sub", g, self.binary("mul", self.unary("exp", y),
                                                     self._per_row(self.sum(g, (1,)), g.shape)))
        dot = self._per_row(self.sum(self.binary("mul", g, y), (1,)), y.shape)
        return self.binary("mul", y, self.binary("sub", g, dot))

    # -- normalisation over the rows of a compact (R, C) array --------------------------------
    # w and b are (C,) or None; mean and rstd = 1 / sqrt(var + eps) are (R,) in x's dtype.
    # Added by backend-cpu (fused Numba kernels); these defaults compose other kernels.
    def _per_row(self, v, shape):
        return self.compact(self.broadcast_to(self.reshape(v, (shape[0], 1)), shape))

    def _per_col(self, v, shape):
        return self.compact(self.broadcast_to(v, shape))

    def _row_mean(self, x):
        return self.scalar("mul", self.sum(x, (1,)), 1.0 / x.shape[1])

    def _rsqrt_eps(self, ms, eps):
        return self.scalar("div", self.unary("sqrt", self.scalar("add", ms, eps)), 1.0,
                           reverse=True)

    def layer_norm(self, x, w, b, eps):
        """(y, mean, rstd): y = (x - mean) rstd w + b per row (biased variance)."""
        mean = self._row_mean(x)
        xc = self.binary("sub", x, self._per_row(mean, x.shape))
        rstd = self._rsqrt_eps(self._row_mean(self.binary("mul", xc, xc)), eps)
        y = self.binary("mul", xc, self._per_row(rstd, x.shape))
        if w is not None:
            y = self.binary("mul", y, self._per_col(w, x.shape))
        if b is not None:
            y = self.binary("add", y, self._per_col(b, x.shape))
        return y, mean, rstd

    def layer_norm_backward(self, g, x, w, mean, rstd):
        """(dx, dw, db) for the output gradient g; dw and db are None when w is None."""
        r = self._per_row(rstd, x.shape)
        xhat = self.binary("mul", self.binary("sub", x, self._per_row(mean, x.shape)), r)
        gw = g if w is None else self.binary("mul", g, self._per_col(w, x.shape))
        m1 = self._per_row(self._row_mean(gw), x.shape)
        m2 = self._per_row(self._row_mean(self.binary("mul", gw, xhat)), x.shape)
        dx = self.binary("mul", r, self.binary("sub", self.binary("sub", gw, m1),
                                               self.binary("mul", xhat, m2)))
        if w is None:
            return dx, None, None
        return dx, self.sum(self.binary("mul", g, xhat), (0,)), self.sum(g, (0,))

    def rms_norm(self, x, w, eps):
        """(y, rstd): y = x rstd w, rstd = 1 / sqrt(mean(x^2) + eps) per row."""
        rstd = self._rsqrt_eps(self._row_mean(self.binary("mul", x, x)), eps)
        y = self.binary("mul", x, self._per_row(rstd, x.shape))
        return (y if w is None else self.binary("mul", y, self._per_col(w, x.shape))), rstd

    def rms_norm_backward(self, g, x, w, rstd):
        """(dx, dw) for the output gradient g; dw is None when w is None."""
        r = self._per_row(rstd, x.shape)
        gw = g if w is None else self.binary("mul", g, self._per_col(w, x.shape))
        k = self._per_row(self._row_mean(self.binary("mul", gw, x)), x.shape)
        dx = self.binary("mul", r, self.binary("sub", gw, self.binary(
            "mul", x, self.binary("mul", self.binary("mul", r, r), k))))
        if w is None:
            return dx, None
        return dx, self.sum(self.binary("mul", g, self.binary("mul", x, r)), (0,))

    # BatchNorm's training step over axes 0 and 2 of a compact (N, C, L) array (per channel)
    def _per_chan(self, v, shape):
        return self.compact(self.broadcast_to(self.reshape(v, (1, shape[1], 1)), shape))

    def _chan_mean(self, x):
        return self.scalar("mul", self.sum(x, (0, 2)), 1.0 / (x.shape[0] * x.shape[2]))

    def batch_norm(self, x, w, b, eps):
        """(y, mean, var, rstd) per channel: biased var, y = (x - mean) rstd w + b."""
        mean = self._chan_mean(x)
        xc = self.binary("sub", x, self._per_chan(mean, x.shape))
        var = self._chan_mean(self.binary("mul", xc, xc))
        rstd = self._rsqrt_eps(var, eps)
        y = self.binary("mul", xc, self._per_chan(rstd, x.shape))
        if w is not None:
            y = self.binary("mul", y, self._per_chan(w, x.shape))
        if b is not None:
            y = self.binary("add", y, self._per_chan(b, x.shape))
        return y, mean, var, rstd

    def batch_norm_backward(self, g, x, w, mean, rstd):
        """(dx, dw, db) for the output gradient g; dw and db are None when w is None."""
        r = self._per_chan(rstd, x.shape)
        xhat = self.binary("mul", self.binary("sub", x, self._per_chan(mean, x.shape)), r)
        db = self.sum(g, (0, 2))
        dw = self.sum(self.binary("mul", g, xhat), (0, 2))
        m1 = self._per_chan(self._chan_mean(g), x.shape)
        m2 = self._per_chan(self._chan_mean(self.binary("mul", g, xhat)), x.shape)
        k = r if w is None else self.binary("mul", r, self._per_chan(w, x.shape))
        dx = self.binary("mul", k, self.binary("sub", self.binary("sub", g, m1),
                                               self.binary("mul", xhat, m2)))
        return (dx, None, None) if w is None else (dx, dw, db)

    # -- attention ---------------------------------------------------------------------------
    # q (B, L, E), k (B, S, E), v (B, S, Ev): compact 3-D batches (the front end flattens the
    # batch dims); mask None or an additive float (1 or B, L, S) array; causal masks j > i;
    # drop None or a (B, L, S) multiplier of the probabilities (dropout: keep / (1 - p)).
    def attention(self, q, k, v, mask, scale, causal, drop):
        """(out (B, L, Ev), probs (B, L, S)): probs = softmax(scale * q @ k^T + mask) with the
        causal and mask exclusions (a row excluded everywhere gives zeros, as PyTorch), out =
        (probs * drop) @ v. This default composes matmul and softmax kernels."""
        s = self.scalar("mul", self.matmul(q, self.compact(self.permute(k, (0, 2, 1)))), scale)
        if mask is not None:
            s = self.binary("add", s, self.compact(self.broadcast_to(mask, s.shape)))
        if causal:
            L, S = s.shape[1:]
            keep = self.from_numpy(np.tril(np.ones((L, S), bool)))
            s = self.where(self.compact(self.broadcast_to(keep, s.shape)), s,
                           self.full(s.shape, -np.inf, s.dtype))
        rowmax, _ = self.max(s, 2, keepdims=True)
        live = self.compact(self.broadcast_to(self.scalar("gt", rowmax, -np.inf), s.shape))
        zero = self.full(s.shape, 0, s.dtype)
        s = self.where(live, s, zero)  # NOTE: a row that sees nothing: zeros, not 0/0 = nan
        p = self.reshape(self.softmax(self.reshape(s, (-1, s.shape[2]))), s.shape)
        p = self.where(live, p, zero)
        a = p if drop is None else self.binary("mul", p, drop)
        return self.matmul(a, v), p

    def attention_backward(self, q, k, v, probs, drop, g, scale):
        """(dq, dk, dv, dscores) for the output gradient g; dscores is the gradient of the
        masked scores (that of a float mask, before broadcasting)."""
        a = probs if drop is None else self.binary("mul", probs, drop)
        dv = self.matmul(self.compact(self.permute(a, (0, 2, 1))), g)
        da = self.matmul(g, self.compact(self.permute(v, (0, 2, 1))))
        dp = da if drop is None else self.binary("mul", da, drop)
        dot = self.sum(self.binary("mul", dp, probs), (2,), keepdims=True)
        ds = self.binary("mul", probs, self.binary("sub", dp, self.compact(
            self.broadcast_to(dot, dp.shape))))
        dq = self.scalar("mul", self.matmul(ds, k), scale)
        dk = self.scalar("mul", self.matmul(self.compact(self.permute(ds, (0, 2, 1))), q), scale)
        return dq, dk, dv, ds

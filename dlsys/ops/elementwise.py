"""Elementwise ops: binary (+ - * / ** % // maximum minimum), with a scalar, unary, where
(comparisons and bitwise ops, which have no gradient: ``ops.compare``; clamp, sign and
rounding: ``ops.piecewise``).

Broadcasting and the strict dtype/device rules are resolved here, once, in ``prepare``.
"""

from __future__ import annotations

import builtins
import math
import numbers

import numpy as np

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, check_same
from . import shape as _sh

__all__ = ["add", "sub", "rsub", "mul", "div", "rdiv", "power", "rpower", "neg", "exp", "log",
           "log1p", "sqrt", "relu", "tanh", "sigmoid", "gelu", "sin", "cos", "erf", "abs",
           "remainder", "rremainder", "floor_divide", "rfloor_divide", "maximum", "minimum",
           "where", "nonzero",
           "prepare", "unary"]


# -- checks ------------------------------------------------------------------------------------
def prepare(a: Tensor, b: Tensor, what: str):
    """Same device and dtype (else ValueError / TypeError naming both), then broadcast views."""
    check_same(a, b, what)
    sa, sb = a._data.shape, b._data.shape
    if sa != sb:
        try:
            shape = np.broadcast_shapes(sa, sb)
        except ValueError:
            raise ValueError(f"{what}: shapes {sa} and {sb} cannot be broadcast together") \
                from None
        if sa != shape:
            a = _sh.broadcast_to(a, shape)
        if sb != shape:
            b = _sh.broadcast_to(b, shape)
    return a, b


def _operand(a: Tensor, o, what):
    """A Python scalar (returned as int/float) or a Tensor (numpy arrays are wrapped; their
    dtype must match)."""
    if isinstance(o, Tensor):
        return o
    if isinstance(o, (bool, np.bool_)):
        return int(o)
    if isinstance(o, numbers.Integral):
        return int(o)
    if isinstance(o, numbers.Real):
        if a._data.dtype.kind != "f":
            raise TypeError(f"{what}: float scalar {o!r} with an integer tensor of dtype "
                            f"{a._data.dtype} (would truncate; cast the tensor first)")
        return float(o)
    if isinstance(o, np.ndarray):
        if o.dtype != a._data.dtype:
            raise TypeError(f"{what}: numpy array of dtype {o.dtype} with a tensor of dtype "
                            f"{a._data.dtype}")
        return wrap(a.device.from_numpy(np.ascontiguousarray(o)), a.device)
    raise TypeError(f"{what}: unsupported operand type {type(o).__name__}")


# -- binary ------------------------------------------------------------------------------------
class Add(Op):
    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("add", a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        return (g if a._requires_grad else None, g if b._requires_grad else None)


class Sub(Op):
    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("sub", a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        return (g if a._requires_grad else None, -g if b._requires_grad else None)


class Mul(Op):
    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("mul", a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        return (g * b if a._requires_grad else None, g * a if b._requires_grad else None)


class Div(Op):
    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("div", a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        return (g / b if a._requires_grad else None,
                -(g * node) / b if b._requires_grad else None)


class Pow(Op):
    """a ** b. Gradients as torch: 0 for a where b == 0 (also at a == 0), 0 for b where a == 0
    and b >= 0 (0 ** b is constant there); nan for b where a < 0 (log a)."""

    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("pow", a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        ga = gb = None
        if a._requires_grad:
            ga = where(b == 0, 0.0, g * b * a ** (b - 1))
        if b._requires_grad:
            gb = where((a == 0) & (b >= 0), 0.0, g * node * a.log())
        return (ga, gb)


class MaxMin(Op):
    """maximum / minimum; ties split the gradient evenly (as PyTorch does)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def compute(self, a, b):
        return self.device.binary(self.name, a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        d = self.device
        win = d.binary("gt" if self.name == "maximum" else "lt", a._data, b._data)
        tie = d.binary("eq", a._data, b._data)
        wa = d.binary("add", d.astype(win, g.dtype), d.scalar("mul", d.astype(tie, g.dtype), 0.5))
        wa = wrap(wa, g.device)
        return (g * wa if a._requires_grad else None,
                g * (1 - wa) if b._requires_grad else None)


class Scalar(Op):
    """op(a, s) or, reversed, op(s, a) with a Python scalar s (it takes a's dtype)."""

    __slots__ = ("name", "s", "reverse")

    def __init__(self, name, s, reverse=False):
        self.name, self.s, self.reverse = name, s, reverse

    def compute(self, a):
        return self.device.scalar(self.name, a, self.s, self.reverse)

    def gradient(self, g, node):
        name, s = self.name, self.s
        if name == "add":
            return (g,)
        if name == "sub":
            return (-g if self.reverse else g,)
        if name == "mul":
            return (g * s,)
        a = node._inputs[0]
        if name == "div":
            return (-(g * node) / a if self.reverse else g * (1.0 / s),)
        if name == "pow":
            if not self.reverse:  # a ** s: a constant when s == 0 (torch's 0, also at a == 0)
                if s == 0:
                    return (wrap(self.device.full(g.shape, 0, g.dtype), g.device),)
                return (g * s * a ** (s - 1),)
            if s > 0:  # s ** a
                return (g * node * math.log(s),)
            # NOTE: as torch: 0 ** a is constant where a >= 0; log(s) is -inf at 0, nan below
            log_s = -math.inf if s == 0 else math.nan
            return (where(a >= 0, 0.0, g * node * log_s) if s == 0 else g * node * log_s,)
        if name == "remainder" and not self.reverse:
            return (g,)
        raise RuntimeError(f"the derivative of {name} with a scalar "
                           f"{'dividend' if self.reverse else 'divisor'} is not implemented "
                           "(as in torch)")


class Remainder(Op):
    """a % b with the sign of b (Python's and torch's remainder); gradient (1, -floor(a/b))."""

    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("remainder", a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        return (g if a._requires_grad else None,
                -(g * floor_divide(a.detach(), b.detach())) if b._requires_grad else None)


class FloorDivide(Op):
    """a // b, rounded toward -inf; like torch, it has no derivative (backward raises)."""

    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("floor_divide", a, b)

    def gradient(self, g, node):
        raise RuntimeError("the derivative of floor_divide is not implemented (as in torch)")


def _binary(op_cls, name, a, o, what):
    o = _operand(a, o, what)
    if isinstance(o, Tensor):
        a, o = prepare(a, o, what)
        return apply(op_cls(), a, o)
    return apply(Scalar(name, o), a)


def add(a, b):
    return _binary(Add, "add", a, b, "add")


def sub(a, b):
    return _binary(Sub, "sub", a, b, "sub")


def rsub(a, o):
    o = _operand(a, o, "sub")
    if isinstance(o, Tensor):
        return sub(o, a)
    return apply(Scalar("sub", o, True), a)


def mul(a, b):
    return _binary(Mul, "mul", a, b, "mul")


def _no_int_div(a, what):
    if a._data.dtype.kind != "f":
        raise TypeError(f"{what}: true division needs floating tensors, got dtype "
                        f"{a._data.dtype} (cast with .to(ds.float32) first)")


def div(a, b):
    _no_int_div(a, "div")
    return _binary(Div, "div", a, b, "div")


def rdiv(a, o):
    _no_int_div(a, "div")
    o = _operand(a, o, "div")
    if isinstance(o, Tensor):
        return div(o, a)
    return apply(Scalar("div", o, True), a)


def _no_int_zero(a, o, what):
    """Integer division by zero raises ZeroDivisionError, as torch's (numpy would give 0).
    NOTE: a divisor tensor is checked on the CPU only (a CUDA check would cost a sync)."""
    if a._data.dtype.kind not in "iu":
        return
    if (o == 0 if not isinstance(o, Tensor) else
            o.device.name == "cpu" and bool((o.numpy() == 0).any())):
        raise ZeroDivisionError(f"{what}: integer division by zero")


def remainder(a, b):
    b = _operand(a, b, "remainder")
    _no_int_zero(a, b, "remainder")
    return _binary(Remainder, "remainder", a, b, "remainder")


def rremainder(a, o):
    o = _operand(a, o, "remainder")
    if isinstance(o, Tensor):
        return remainder(o, a)
    _no_int_zero(a, a, "remainder")
    return apply(Scalar("remainder", o, True), a)


def floor_divide(a, b):
    b = _operand(a, b, "floor_divide")
    _no_int_zero(a, b, "floor_divide")
    return _binary(FloorDivide, "floor_divide", a, b, "floor_divide")


def rfloor_divide(a, o):
    o = _operand(a, o, "floor_divide")
    if isinstance(o, Tensor):
        return floor_divide(o, a)
    _no_int_zero(a, a, "floor_divide")
    return apply(Scalar("floor_divide", o, True), a)


def power(a, b):
    return _binary(Pow, "pow", a, b, "pow")


def rpower(a, o):
    o = _operand(a, o, "pow")
    if isinstance(o, Tensor):
        return power(o, a)
    return apply(Scalar("pow", o, True), a)


def maximum(a, b):
    b = _operand(a, b, "maximum")
    if not isinstance(b, Tensor):
        b = wrap(a.device.full((), b, a.dtype), a.device)
    a, b = prepare(a, b, "maximum")
    return apply(MaxMin("maximum"), a, b)


def minimum(a, b):
    b = _operand(a, b, "minimum")
    if not isinstance(b, Tensor):
        b = wrap(a.device.full((), b, a.dtype), a.device)
    a, b = prepare(a, b, "minimum")
    return apply(MaxMin("minimum"), a, b)


# -- unary -------------------------------------------------------------------------------------
_FUSED_BACKWARD = ("relu", "tanh", "sigmoid", "exp", "gelu", "gelu_tanh")
_GELU_C = math.sqrt(2.0 / math.pi)  # gelu_tanh: 0.5 x (1 + tanh(c (x + a x^3)))
_GELU_A = 0.044715


class Unary(Op):
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def compute(self, x):
        r = self.device.unary(self.name, x)
        return r if r.shape == x.shape else self.device.reshape(r, x.shape)  # see UnaryBackward

    def gradient(self, g, node):
        name = self.name
        x = node._inputs[0]
        if name in _FUSED_BACKWARD:
            # NOTE: one fused kernel (grad * f'(x)) instead of 2-3 elementwise passes.
            return (apply(UnaryBackward(name), x, node, g),)
        if name == "neg":
            return (-g,)
        if name == "log":
            return (g / x,)
        if name == "sqrt":
            return ((g * 0.5) / node,)
        if name == "abs":
            return (g * wrap(self.device.unary("sign", x._data), x.device),)
        if name == "sin":
            return (g * x.cos(),)
        if name == "cos":
            return (-(g * x.sin()),)
        if name == "erf":
            return (g * (x * x * -1.0).exp() * (2.0 / math.sqrt(math.pi)),)
        if name == "log1p":
            return (g / (x + 1.0),)
        raise RuntimeError(f"no gradient for unary op {name}")


class UnaryBackward(Op):
    """grad * f'(x) for f in relu/tanh/sigmoid/exp/gelu/gelu_tanh; inputs (x, y = f(x), grad)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def compute(self, x, y, g):
        r = self.device.unary_backward(self.name, x, y, g)
        # NOTE: the CPU backend's Numba path returns 0-d inputs as 1-d (np.ascontiguousarray)
        return r if r.shape == g.shape else self.device.reshape(r, g.shape)

    def gradient(self, gg, node):
        x, y, g = node._inputs
        name = self.name
        dg = apply(UnaryBackward(name), x, y, gg) if g._requires_grad else None
        dx = dy = None
        if name == "exp":
            dy = gg * g
        elif name == "tanh":
            dy = gg * g * y * -2.0
        elif name == "sigmoid":
            dy = gg * g * (1.0 - y * 2.0)
        elif name == "gelu":
            phi = (x * x * -0.5).exp() * (1.0 / math.sqrt(2.0 * math.pi))
            dx = gg * g * phi * (2.0 - x * x)
        elif name == "gelu_tanh":  # f'' = (1 - t^2) (u' - x t u'^2 + x u'' / 2)
            t = tanh((x + x * x * x * _GELU_A) * _GELU_C)
            du = (x * x * (3.0 * _GELU_A) + 1.0) * _GELU_C
            dx = gg * g * (1.0 - t * t) * (du - x * t * du * du + x * x * (3.0 * _GELU_A * _GELU_C))
        if not x._requires_grad:
            dx = None
        if not y._requires_grad:
            dy = None
        return (dx, dy, dg)


def _float_unary(name):
    def f(x):
        if x._data.dtype.kind != "f":
            raise TypeError(f"{name}: needs a floating tensor, got dtype {x._data.dtype}")
        return apply(Unary(name), x)

    f.__name__ = name
    return f


def unary(name, x):
    return apply(Unary(name), x)


def neg(x):
    return apply(Unary("neg"), x)


def abs(x):  # noqa: A001 - numpy/PyTorch name
    return apply(Unary("abs"), x)


exp = _float_unary("exp")
log = _float_unary("log")
log1p = _float_unary("log1p")
sqrt = _float_unary("sqrt")
tanh = _float_unary("tanh")
sigmoid = _float_unary("sigmoid")
gelu = _float_unary("gelu")
gelu_tanh = _float_unary("gelu_tanh")
sin = _float_unary("sin")
cos = _float_unary("cos")
erf = _float_unary("erf")


def relu(x):
    return apply(Unary("relu"), x)


# -- where ---------------------------------------------------------------------------------------
class Where(Op):
    __slots__ = ("cond",)

    def __init__(self, cond):
        self.cond = cond

    def compute(self, a, b):
        return self.device.where(self.cond, a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        z = wrap(self.device.full(g.shape, 0, g.dtype), g.device)
        return (apply(Where(self.cond), g, z) if a._requires_grad else None,
                apply(Where(self.cond), z, g) if b._requires_grad else None)


def _scalar_dtype(*values):
    """torch's dtype for Python scalars: float32 if any is a float, else int64, else bool."""
    if builtins.any(isinstance(v, float) for v in values):
        return np.dtype(np.float32)
    if builtins.all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.dtype(np.bool_)
    return np.dtype(np.int64)


def where(cond, a=None, b=None):
    """Elementwise ``cond ? a : b`` (cond: a bool Tensor; a, b: Tensors or scalars; two
    scalars give torch's dtype: float32, int64 or bool). ``where(cond)`` is
    ``nonzero(cond, as_tuple=True)``."""
    if not isinstance(cond, Tensor) or cond.dtype != np.bool_:
        raise TypeError(f"where: cond must be a bool Tensor, got "
                        f"{getattr(cond, 'dtype', type(cond).__name__)}")
    if a is None and b is None:
        return nonzero(cond, as_tuple=True)
    if not isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            dt = _scalar_dtype(a, b)
            b = wrap(cond.device.full((), b, dt), cond.device)
        a = wrap(b.device.full((), _operand(b, a, "where"), b.dtype), b.device)
    if not isinstance(b, Tensor):
        b = wrap(a.device.full((), _operand(a, b, "where"), a.dtype), a.device)
    a, b = prepare(a, b, "where")
    if cond.device != a.device:
        raise ValueError(f"where: cond is on {cond.device}, values on {a.device}")
    c = cond._data
    if c.shape != a.shape:
        try:
            shape = np.broadcast_shapes(c.shape, a.shape)
        except ValueError:
            raise ValueError(f"where: cond shape {c.shape} and value shape {a.shape} cannot be "
                             f"broadcast together") from None
        c = a.device.broadcast_to(c, shape)
        if a.shape != shape:
            a, b = _sh.broadcast_to(a, shape), _sh.broadcast_to(b, shape)
    return apply(Where(c), a, b)


def nonzero(x, as_tuple=False):
    """The indices of the non-zero elements: an (n, ndim) int64 tensor, or one int64 tensor
    per dim with ``as_tuple`` (no gradient; the count is known only after a device sync)."""
    d = x.device
    idx = np.nonzero(np.asarray(x))
    if as_tuple:
        return tuple(wrap(d.from_numpy(i.astype(np.int64)), d) for i in idx)
    return wrap(d.from_numpy(np.stack(idx, 1).astype(np.int64).reshape(-1, x.ndim)), d)

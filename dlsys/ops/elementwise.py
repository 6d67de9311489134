"""Elementwise ops: binary (+ - * / ** maximum minimum), with a scalar, unary, where, compare.

Broadcasting and the strict dtype/device rules are resolved here, once, in ``prepare``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import apply, wrap
from ..tensor import Tensor
from . import Op, check_same
from . import shape as _sh

__all__ = ["add", "sub", "rsub", "mul", "div", "rdiv", "power", "rpower", "neg", "exp", "log",
           "sqrt", "relu", "tanh", "sigmoid", "gelu", "abs", "maximum", "minimum", "where",
           "compare", "prepare", "unary"]


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
    __slots__ = ()

    def compute(self, a, b):
        return self.device.binary("pow", a, b)

    def gradient(self, g, node):
        a, b = node._inputs
        return (g * b * a ** (b - 1) if a._requires_grad else None,
                g * node * a.log() if b._requires_grad else None)


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
            if self.reverse:
                return (g * node * math.log(s),)
            return (g * s * a ** (s - 1),)
        raise RuntimeError(f"no gradient for scalar op {name}")


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
_FUSED_BACKWARD = ("relu", "tanh", "sigmoid", "exp", "gelu")


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
        raise RuntimeError(f"no gradient for unary op {name}")


class UnaryBackward(Op):
    """grad * f'(x) for f in relu/tanh/sigmoid/exp/gelu; inputs (x, y = f(x), grad)."""

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
sqrt = _float_unary("sqrt")
tanh = _float_unary("tanh")
sigmoid = _float_unary("sigmoid")
gelu = _float_unary("gelu")


def relu(x):
    return apply(Unary("relu"), x)


# -- where / compare ---------------------------------------------------------------------------
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


def where(cond, a, b):
    """Elementwise ``cond ? a : b`` (cond: a bool Tensor; a, b: Tensors or scalars)."""
    if not isinstance(cond, Tensor) or cond.dtype != np.bool_:
        raise TypeError(f"where: cond must be a bool Tensor, got "
                        f"{getattr(cond, 'dtype', type(cond).__name__)}")
    if not isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            raise TypeError("where: a or b must be a Tensor")
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


def compare(name, a, o):
    """A bool Tensor (never requires grad). A float scalar may meet an integer tensor here:
    the result is a bool, nothing is truncated."""
    d = a.device
    if isinstance(o, numbers.Real) and not isinstance(o, (bool, np.bool_)):
        return wrap(d.scalar(name, a._data, o), d)
    o = _operand(a, o, name)
    if isinstance(o, Tensor):
        check_same(a, o, name)
        x, y = a._data, o._data
        if x.shape != y.shape:
            try:
                shape = np.broadcast_shapes(x.shape, y.shape)
            except ValueError:
                raise ValueError(f"{name}: shapes {x.shape} and {y.shape} cannot be broadcast "
                                 f"together") from None
            x, y = d.broadcast_to(x, shape), d.broadcast_to(y, shape)
        return wrap(d.binary(name, x, y), d)
    return wrap(d.scalar(name, a._data, o), d)

"""Vectorisable float32 exp and erf for the CPU's Numba kernels.

NOTE: without Intel's SVML (not a dependency), LLVM cannot vectorise ``math.exp``/``math.erf``:
each element calls libm, ~8x slower than numpy's SIMD exp and 18x slower than torch's GELU.
These are straight-line polynomials that LLVM vectorises (AVX2/AVX-512) in any loop:
- ``exp``: Cephes' expf (Cody-Waite reduction by ln 2, degree-6 polynomial, 2^k put into the
  exponent bits), relative error < 2e-7; 0 below -87.3 (exp(-inf) = 0), inf above 88.7.
- ``erf``: Eigen's rational approximation of erf on [-4, 4] (odd degree 13 / even degree 8),
  ±1 outside, absolute error < 4e-7 (float32's own rounding is 6e-8).
float64 keeps libm's math.exp/erf (accuracy first): ``fexp`` and ``ferf`` choose by the
argument's type when a kernel is compiled; ``like`` types a kernel's constants.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

_FM = {"reassoc", "contract"}


@intrinsic
def _float_bits(typingctx, v):
    """The int32 bit pattern of a float32 (a register bitcast)."""
    if v != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _bits_float(typingctx, i):
    """The float32 whose bit pattern is the low 32 bits of the integer ``i``."""
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = args[0] if i.bitwidth == 32 else builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(low, ir.FloatType())
    return types.float32(i), codegen


@njit(fastmath=_FM, inline="always", cache=True)
def exp32(v):
    f = np.float32
    c = min(max(v, f(-87.3)), f(88.3))
    k = np.floor(c * f(1.4426950408889634) + f(0.5))  # NOTE: float32 (math.floor: int64)
    r = c - k * f(0.693359375) - k * f(-2.12194440e-4)  # NOTE: ln 2 in two parts (Cody-Waite)
    p = f(1.9875691500e-4)
    p = p * r + f(1.3981999507e-3)
    p = p * r + f(8.3334519073e-3)
    p = p * r + f(4.1665795894e-2)
    p = p * r + f(1.6666665459e-1)
    p = p * r + f(5.0000001201e-1)
    p = p * r * r + r + f(1.0)
    y = _bits_float(_float_bits(p) + (np.int32(k) << 23))
    if v < f(-87.3):
        y = f(0.0)
    if v > f(88.3):
        y = f(np.inf)
    if v != v:
        y = v
    return y


@njit(fastmath=_FM, inline="always", cache=True)
def erf32(v):
    f = np.float32
    x = min(max(v, f(-4.0)), f(4.0))
    x2 = x * x
    p = x2 * f(-2.72614225801306e-10) + f(2.77068142495902e-08)
    p = x2 * p + f(-2.10102402082508e-06)
    p = x2 * p + f(-5.69250639462346e-05)
    p = x2 * p + f(-7.34990630326855e-04)
    p = x2 * p + f(-2.95459980854025e-03)
    p = x2 * p + f(-1.60960333262415e-02)
    q = x2 * f(-1.45660718464996e-05) + f(-2.13374055278905e-04)
    q = x2 * q + f(-1.68282697438203e-03)
    q = x2 * q + f(-7.37332916720468e-03)
    q = x2 * q + f(-1.42647390514189e-02)
    y = x * p / q
    if v != v:
        y = v
    return y


def fexp(v):
    """exp: ``exp32`` for float32, math.exp otherwise (Numba only)."""
    return math.exp(v)


def ferf(v):
    """erf: ``erf32`` for float32, math.erf otherwise (Numba only)."""
    return math.erf(v)


def _by_type(fast, exact):
    def choose(v):
        if v == types.float32:
            return lambda v: fast(v)
        return lambda v: exact(v)
    return choose


overload(fexp, inline="always")(_by_type(exp32, math.exp))
overload(ferf, inline="always")(_by_type(erf32, math.erf))


def like(v, c):
    """The constant ``c`` in the float type of ``v`` (Numba only).

    NOTE: Numba types Python float literals and globals as float64, and float32 * float64 is
    float64: a float32 kernel must wrap its constants in ``like`` to stay float32 (and reach
    ``exp32``/``erf32``/``tanh32``); LLVM folds the conversion away."""
    return c


@overload(like, inline="always")
def _like(v, c):
    if v == types.float32:
        return lambda v, c: np.float32(c)
    return lambda v, c: c

"""einsum: Einstein summation composed of diagonal gathers, sums, permutes, reshapes and
batched matmuls, so it is differentiable (to any order) on every device.

Operands are contracted left to right, two at a time: the letters both share that no later
operand and not the output needs are contracted by one matmul, the shared letters still needed
are its batch, the rest its rows and columns. "..." stands for the same broadcast dims in every
operand (right-aligned, as torch).
"""

from __future__ import annotations

import math
import string

import numpy as np

from ..tensor import Tensor
from . import reduce as _rd
from . import shape as _sh
from .matmul import matmul

__all__ = ["einsum"]


def _parse(equation: str, operands):
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {equation!r} names {len(terms)} operands, got "
                         f"{len(operands)}")
    used = set(eq) - set(",->.")
    if not all(c in string.ascii_letters for c in used):
        raise ValueError(f"einsum: {equation!r}: subscripts must be letters")
    free = [c for c in string.ascii_letters if c not in used]
    n_ell = 0
    for t, x in zip(terms, operands, strict=True):
        if "..." in t:
            n_ell = max(n_ell, x.ndim - len(t.replace("...", "")))
    ell = "".join(free[:n_ell])
    out_terms = []
    for t, x in zip(terms, operands, strict=True):
        if t.count("...") > 1 or ("." in t.replace("...", "")):
            raise ValueError(f"einsum: bad ellipsis in {t!r}")
        k = x.ndim - len(t.replace("...", ""))
        t = t.replace("...", ell[n_ell - k:] if k else "") if "..." in t else t
        if len(t) != x.ndim:
            raise ValueError(f"einsum: subscripts {t!r} do not match an operand of shape "
                             f"{x.shape}")
        out_terms.append(t)
    if arrow:
        if rhs.count("...") > 1:
            raise ValueError(f"einsum: bad ellipsis in {rhs!r}")
        out = rhs.replace("...", ell)
        if len(set(out)) != len(out) or not set(out) <= set("".join(out_terms)):
            raise ValueError(f"einsum: output {rhs!r} repeats a letter or names one no "
                             "operand has")
    else:  # implicit output: the broadcast dims, then the letters seen once, sorted
        counts = {c: "".join(out_terms).count(c) for c in set("".join(out_terms))}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return out_terms, out


def _diagonal(x: Tensor, term: str):
    """Take the diagonal of repeated letters (``ii`` -> ``i``)."""
    while len(set(term)) != len(term):
        c = next(c for c in term if term.count(c) > 1)
        i, j = term.index(c), term.index(c, term.index(c) + 1)
        n = x.shape[i]
        if x.shape[j] != n:
            raise ValueError(f"einsum: letter {c!r} has sizes {n} and {x.shape[j]}")
        x = _sh.movedim(_sh.movedim(x, i, -1), j - 1, -1)  # (..., n, n) last
        ar = np.arange(n)
        x = x[(Ellipsis, ar, ar)]
        term = "".join(t for k, t in enumerate(term) if k not in (i, j)) + c
    return x, term


def _sum_out(x: Tensor, term: str, keep) -> tuple:
    """Sum the letters no one needs any more."""
    drop = tuple(i for i, c in enumerate(term) if c not in keep)
    if not drop:
        return x, term
    return _rd.sum(x, drop), "".join(c for c in term if c in keep)


def _sizes(terms, xs):
    size = {}
    for t, x in zip(terms, xs, strict=True):
        for c, n in zip(t, x.shape, strict=True):
            if c in size and size[c] != n and size[c] != 1 and n != 1:
                raise ValueError(f"einsum: letter {c!r} has sizes {size[c]} and {n}")
            size[c] = max(size.get(c, 1), n)
    return size


def _contract(a, ta, b, tb, keep):
    """a (letters ta) times b (letters tb), summing the shared letters not in ``keep``."""
    size = _sizes([ta, tb], [a, b])
    batch = [c for c in ta if c in tb and c in keep]
    inner = [c for c in ta if c in tb and c not in keep]
    rows = [c for c in ta if c not in tb]
    cols = [c for c in tb if c not in ta]

    def arrange(x, t, order, shape):
        x = _sh.permute(x, *[t.index(c) for c in order])
        full = tuple(size[c] for c in order)
        if x.shape != full:
            x = _sh.broadcast_to(x, full)
        return _sh.reshape(x, shape)

    nb = tuple(size[c] for c in batch)
    m, k, n = (math.prod(size[c] for c in g) for g in (rows, inner, cols))
    a3 = arrange(a, ta, batch + rows + inner, nb + (m, k))
    b3 = arrange(b, tb, batch + inner + cols, nb + (k, n))
    if inner:
        out = matmul(a3, b3)
    else:  # NOTE: nothing to contract: a broadcast product, not a batch of 1 x 1 matmuls
        out = a3 * b3
    shape = nb + tuple(size[c] for c in rows) + tuple(size[c] for c in cols)
    return _sh.reshape(out, shape), "".join(batch + rows + cols)


def einsum(equation: str, *operands) -> Tensor:
    """torch.einsum: e.g. "ij,jk->ik", "bij,bjk->bik", "bhqd,bhkd->bhqk", "i,j->ij", "ii->",
    "...ij->...ji"; operands as separate arguments or one list."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands or not all(isinstance(x, Tensor) for x in operands):
        raise TypeError("einsum: operands must be Tensors")
    terms, out = _parse(equation, operands)
    xs = []
    for x, t in zip(operands, terms, strict=True):
        x, t = _diagonal(x, t)
        xs.append((x, t))
    _sizes([t for _, t in xs], [x for x, _ in xs])
    x, t = xs[0]
    for i in range(1, len(xs) + 1):
        later = set(out).union(*(set(tt) for _, tt in xs[i:]))
        x, t = _sum_out(x, t, later)
        if i == len(xs):
            break
        y, ty = xs[i]
        y, ty = _sum_out(y, ty, later | set(t))
        x, t = _contract(x, t, y, ty, later)
    return _sh.permute(x, *[t.index(c) for c in out]) if len(out) > 1 else x

"""Rearrangements composed of views, slices, concatenation and index gathers, so each
gradient comes from those ops: repeat, roll, split, chunk, unbind, pad (torch's F.pad)."""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor
from . import elementwise as _ew
from . import shape as _sh
from . import wrap_dim

__all__ = ["repeat", "roll", "split", "chunk", "unbind", "pad"]


def repeat(x: Tensor, *sizes) -> Tensor:
    """Tile x ``sizes[i]`` times along each dim (torch's repeat, numpy's tile); sizes may
    name more dims than x has (new leading ones)."""
    sizes = tuple(int(s) for s in _sh._shape_args(sizes))
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: {len(sizes)} sizes {sizes} for a tensor of shape {x.shape} "
                         f"(at least its {x.ndim} dims are needed)")
    if any(s < 0 for s in sizes):
        raise ValueError(f"repeat: sizes must be non-negative, got {sizes}")
    shape = (1,) * (len(sizes) - x.ndim) + x.shape
    # (a, b) repeated (r, s): view as (1, a, 1, b), broadcast to (r, a, s, b), merge pairs
    inter = tuple(v for n in shape for v in (1, n))
    big = tuple(v for r, n in zip(sizes, shape, strict=True) for v in (r, n))
    out = _sh.broadcast_to(_sh.reshape(x, inter), big)
    return _sh.reshape(out, tuple(r * n for r, n in zip(sizes, shape, strict=True)))


def roll(x: Tensor, shifts, dims=None) -> Tensor:
    """Shift elements along ``dims`` cyclically (all elements, flattened, when dims is None)."""
    if dims is None:
        if isinstance(shifts, (tuple, list)) and len(shifts) != 1:
            raise ValueError(f"roll: without dims, shifts must be one int, got {shifts}")
        s = shifts[0] if isinstance(shifts, (tuple, list)) else shifts
        return _sh.reshape(roll(_sh.reshape(x, -1), s, 0), x.shape)
    shifts = tuple(shifts) if isinstance(shifts, (tuple, list)) else (shifts,)
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} differ in length")
    for s, d in zip(shifts, dims, strict=True):
        d = wrap_dim(d, x.ndim, "roll")
        n = x.shape[d] if x.ndim else 1
        k = int(s) % n if n else 0
        if k and x.ndim:
            pre = (slice(None),) * d
            x = _sh.concatenate([x[pre + (slice(n - k, None),)], x[pre + (slice(0, n - k),)]],
                                d)
    return x


def split(x: Tensor, split_size_or_sections, dim=0) -> tuple:
    """Pieces of ``split_size`` along dim (the last may be smaller), or of the given sizes."""
    d = wrap_dim(dim, x.ndim, "split")
    if x.ndim == 0:
        raise ValueError("split: a 0-d tensor cannot be split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, (tuple, list)):
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} must sum exactly to {n} (the size of dim "
                             f"{d} of shape {x.shape})")
    else:
        step = int(split_size_or_sections)
        if step <= 0 and n:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, n - i) for i in range(0, n, step)] if n else [0]
    pre = (slice(None),) * d
    out, start = [], 0
    for s in sizes:
        out.append(x[pre + (slice(start, start + s),)])
        start += s
    return tuple(out)


def chunk(x: Tensor, chunks, dim=0) -> tuple:
    """``chunks`` pieces of ceil(size / chunks) along dim (fewer when they run out, as torch)."""
    chunks = int(chunks)
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = wrap_dim(dim, x.ndim, "chunk")
    n = x.shape[d]
    return split(x, max(math.ceil(n / chunks), 1), d)


def unbind(x: Tensor, dim=0) -> tuple:
    """The slices along ``dim``, that dim removed."""
    d = wrap_dim(dim, x.ndim, "unbind")
    if x.ndim == 0:
        raise ValueError("unbind: a 0-d tensor has no dim to unbind")
    pre = (slice(None),) * d
    return tuple(x[pre + (i,)] for i in range(x.shape[d]))


# -- F.pad ------------------------------------------------------------------------------------
def _pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source positions of a dim of size n padded by lo before and hi after."""
    pos = np.arange(-lo, n + hi)
    if mode == "reflect":
        period = 2 * (n - 1)
        pos = np.abs(pos) % period if period else np.zeros_like(pos)
        pos = np.where(pos >= n, period - pos, pos)
    elif mode == "replicate":
        pos = np.clip(pos, 0, n - 1)
    else:  # circular
        pos = pos % n
    return pos.astype(np.int64)


def pad(x: Tensor, pad, mode="constant", value=None) -> Tensor:
    """torch's F.pad: ``pad`` = (before, after) for the last dim, then the one before it, ...;
    mode "constant" (``value``, default 0; negative pads crop), "reflect", "replicate" or
    "circular" (for the last 1-3 dims of a batched input, as torch)."""
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) > 2 * x.ndim:
        raise ValueError(f"pad: {pad} must hold pairs for at most the {x.ndim} dims of shape "
                         f"{x.shape}")
    k = len(pad) // 2
    pairs = [(x.ndim - 1 - i, pad[2 * i], pad[2 * i + 1]) for i in range(k)]
    if mode == "constant":
        return _pad_constant(x, pairs, 0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be constant, reflect, replicate or circular, got "
                         f"{mode!r}")
    if value is not None and value != 0:
        raise ValueError(f"pad: value= is only for mode='constant', got mode {mode!r}")
    if k not in (1, 2, 3) or x.ndim not in (k + 1, k + 2):
        raise ValueError(f"pad: mode {mode!r} pads the last 1-3 dims of a batched input: "
                         f"padding of {len(pad)} values for a {x.ndim}-D input is not supported "
                         f"(use a {k + 1}-D or {k + 2}-D input)")
    for d, lo, hi in pairs:
        n = x.shape[d]
        limit = n - 1 if mode == "reflect" else n
        if max(lo, hi) > limit or min(lo, hi) < 0 and mode != "circular":
            raise ValueError(f"pad: padding ({lo}, {hi}) of dim {d} must be non-negative and "
                             f"{'less than' if mode == 'reflect' else 'at most'} its size {n} "
                             f"in mode {mode!r} (shape {x.shape})")
        idx = _pad_index(n, lo, hi, mode)
        x = _sh.getitem(x, (slice(None),) * d + (idx,))
    return x


def _pad_constant(x, pairs, value):
    from ..autograd import wrap

    for d, lo, hi in pairs:
        n = x.shape[d]
        if lo < 0 or hi < 0:  # NOTE: negative padding crops
            if -min(lo, 0) - min(hi, 0) > n:
                raise ValueError(f"pad: cropping ({lo}, {hi}) exceeds dim {d} of size {n}")
            x = _sh.getitem(x, (slice(None),) * d + (slice(-min(lo, 0), n + min(hi, 0)),))
            lo, hi = max(lo, 0), max(hi, 0)
        parts = []
        for width in (lo, None, hi):
            if width is None:
                parts.append(x)
            elif width:
                shape = x.shape[:d] + (width,) + x.shape[d + 1:]
                fill = _ew._operand(x, value, "pad")
                parts.append(wrap(x.device.full(shape, fill, x.dtype), x.device))
        x = _sh.concatenate(parts, d) if len(parts) > 1 else x
    return x

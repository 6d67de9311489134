"""A float64 central-difference gradient checker for dlsys ops.

``gradcheck(fn, *arrays)`` builds float64 leaf tensors from the arrays (optionally as
non-contiguous views), backpropagates random upstream weights W through ``fn`` and compares
every input's gradient with (f(x + eps) - f(x - eps)) / 2 eps of sum(fn(x) * W). Returns the
largest error |analytic - numeric| / (1 + |numeric|).
"""

from __future__ import annotations

import numpy as np

import dlsys as ds


def _noncontig(a: np.ndarray) -> np.ndarray:
    """A view with a's values that is not C-contiguous (transposed, or strided for 1-D)."""
    if a.ndim >= 2:
        base = np.ascontiguousarray(np.swapaxes(a, -1, -2))
        v = np.swapaxes(base, -1, -2)
    elif a.ndim == 1:
        base = np.zeros(2 * a.shape[0], dtype=a.dtype)
        v = base[::2]
        v[...] = a
    else:
        return a.copy()
    return v


def make_leaves(arrays, noncontig=False, requires_grad=None):
    leaves = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(np.float64)
            a = _noncontig(a) if noncontig else a.copy()
            rg = True if requires_grad is None else requires_grad[i]
            leaves.append(ds.Tensor.from_array(a, requires_grad=rg))
        else:
            leaves.append(ds.Tensor.from_array(a.copy()))
    return leaves


def _weighted(out, w):
    return float(np.sum(np.asarray(out, dtype=np.float64) * w))


def gradcheck(fn, *arrays, eps=1e-6, seed=0, noncontig=False, requires_grad=None) -> float:
    """Max error between backprop and central differences of fn at ``arrays`` (see module)."""
    rng = np.random.default_rng(seed)
    leaves = make_leaves(arrays, noncontig, requires_grad)
    out = fn(*leaves)
    w = rng.standard_normal(out.shape)
    out.backward(ds.tensor(w, dtype=out.dtype))
    err = 0.0
    for t in leaves:
        if not t.requires_grad:
            continue
        if t.grad is not None:
            assert t.grad.shape == t.shape and t.grad.dtype == t.dtype
        x = t._data
        num = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            old = x[idx]
            x[idx] = old + eps
            with ds.no_grad():
                fp = _weighted(fn(*leaves), w)
            x[idx] = old - eps
            with ds.no_grad():
                fm = _weighted(fn(*leaves), w)
            x[idx] = old
            num[idx] = (fp - fm) / (2 * eps)
        # no gradient reached t (it does not influence the output): zeros, as PyTorch's None
        ana = np.zeros(x.shape) if t.grad is None else np.asarray(t.grad, dtype=np.float64)
        if num.size:
            err = max(err, float(np.max(np.abs(ana - num) / (1.0 + np.abs(num)))))
    return err


def gradgradcheck(fn, *arrays, eps=1e-6, seed=1) -> float:
    """gradcheck of x -> d(sum(fn(x) * W))/dx[0] built with create_graph=True (second order)."""
    rng = np.random.default_rng(seed)
    probe = fn(*make_leaves(arrays))
    w = ds.tensor(rng.standard_normal(probe.shape), dtype=ds.float64)

    def first_grad(*ts):
        with ds.enable_grad():
            (g,) = ds.autograd.grad((fn(*ts) * w).sum(), ts[0], create_graph=True)
        return g

    return gradcheck(first_grad, *arrays, eps=eps, seed=seed)

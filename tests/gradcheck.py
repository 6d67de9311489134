"""A float64 central-difference gradient checker for dlsys ops, on any device.

``gradcheck(fn, *arrays, device="cpu")`` builds float64 leaf tensors from the arrays (optionally
as non-contiguous views), backpropagates random upstream weights W through ``fn`` and compares
every input's gradient with (f(x + eps) - f(x - eps)) / 2 eps of sum(fn(x) * W). Returns the
largest error |analytic - numeric| / (1 + |numeric|).

On another device than the CPU the analytic gradients (and the forward values) are the device's
own, compared with the central differences of the same function evaluated on the CPU.
NOTE: the differences are taken on the CPU because they cost two forward passes per input
element, and Numba's CUDA simulator runs every kernel launch as Python threads; the device's
forward is checked against the CPU's at the same point, so a wrong device forward still fails.
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


def _on_device(a: np.ndarray, dev, noncontig):
    """a as an array of device ``dev``; with noncontig a strided view of a larger allocation
    (every other element of the last axis)."""
    if not noncontig or a.ndim == 0:
        return dev.from_numpy(np.array(a))
    base = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    base[..., ::2] = a
    return dev.getitem(dev.from_numpy(base), (Ellipsis, slice(None, None, 2)))


def make_leaves(arrays, noncontig=False, requires_grad=None, device="cpu"):
    dev = ds.backend.as_device(device)
    on_cpu = dev == ds.cpu()
    leaves = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        rg = a.dtype.kind == "f" and (True if requires_grad is None else requires_grad[i])
        if a.dtype.kind == "f":
            a = a.astype(np.float64)
        if on_cpu:
            data = (_noncontig(a) if noncontig else a.copy()) if a.dtype.kind == "f" else a.copy()
        else:
            data = _on_device(a, dev, noncontig and a.dtype.kind == "f")
        leaves.append(ds.Tensor.from_array(data, device=dev, requires_grad=rg))
    return leaves


def _weighted(out, w):
    return float(np.sum(np.asarray(out, dtype=np.float64) * w))


def _numeric(fn, leaves, w, eps):
    """Central differences of sum(fn * w) for every leaf that requires grad (CPU leaves)."""
    nums = []
    for t in leaves:
        if not t.requires_grad:
            nums.append(None)
            continue
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
        nums.append(num)
    return nums


def _rel(a, b):
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b)))) if np.size(b) else 0.0


def gradcheck(fn, *arrays, eps=1e-6, seed=0, noncontig=False, requires_grad=None,
              device="cpu") -> float:
    """Max error between backprop on ``device`` and central differences of fn at ``arrays``
    (see module)."""
    rng = np.random.default_rng(seed)
    leaves = make_leaves(arrays, noncontig, requires_grad)
    out = fn(*leaves)
    w = rng.standard_normal(out.shape)
    err = 0.0
    if ds.backend.as_device(device) != ds.cpu():
        ref = np.asarray(out, dtype=np.float64)
        dleaves = make_leaves(arrays, noncontig, requires_grad, device)
        out = fn(*dleaves)
        assert out.device == ds.backend.as_device(device), out.device
        err = _rel(np.asarray(out, dtype=np.float64), ref)  # the device's forward
    else:
        dleaves = leaves
    out.backward(ds.tensor(w, dtype=out.dtype, device=out.device))
    nums = _numeric(fn, leaves, w, eps)
    for t, num in zip(dleaves, nums, strict=True):
        if num is None:
            continue
        if t.grad is not None:
            assert t.grad.shape == t.shape and t.grad.dtype == t.dtype
            assert t.grad.device == t.device
        # no gradient reached t (it does not influence the output): zeros, as PyTorch's None
        ana = np.zeros(t.shape) if t.grad is None else np.asarray(t.grad, dtype=np.float64)
        err = max(err, _rel(ana, num))
    return err


def gradgradcheck(fn, *arrays, eps=1e-6, seed=1, device="cpu") -> float:
    """gradcheck of x -> d(sum(fn(x) * W))/dx[0] built with create_graph=True (second order)."""
    rng = np.random.default_rng(seed)
    probe = fn(*make_leaves(arrays))
    w = ds.tensor(rng.standard_normal(probe.shape), dtype=ds.float64)

    def first_grad(*ts):
        with ds.enable_grad():
            (g,) = ds.autograd.grad((fn(*ts) * w.to(ts[0].device)).sum(), ts[0],
                                    create_graph=True)
        return g

    return gradcheck(first_grad, *arrays, eps=eps, seed=seed, device=device)

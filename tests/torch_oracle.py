"""PyTorch as the oracle of dlsys's semantics (guarantee 10): the same call, spelled once, on
both libraries.

A case is ``fn(L, *tensors)`` where ``L`` is the ``dlsys`` or the ``torch`` module: methods
(``x.max(1).values``) and functions (``L.cat``, ``L.nn.functional.pad``) are spelled alike.
``check`` runs it on tensors made from the same numpy arrays (float arrays in the dtype under
test and requiring grad; integer and bool arrays as they are), and compares every output
(shape, dtype, values, named-tuple fields) and the gradient of every float input of
sum(out * W) for fixed random weights W. ``check_raises`` asserts that dlsys raises where torch
raises. The test modules import torch with ``pytest.importorskip``; this one never imports it.
"""

from __future__ import annotations

import numpy as np

import dlsys as ds

DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-9, atol=1e-12)}
ERRORS = (ValueError, TypeError, IndexError, RuntimeError, ZeroDivisionError)


def _tensors(L, arrays, dtype, device):
    out = []
    for a in arrays:
        if not isinstance(a, np.ndarray):
            out.append(a)  # a scalar or a Python value passed through
            continue
        if a.dtype.kind == "f":
            a = a.astype(dtype)
            t = L.tensor(a, requires_grad=True) if L is not ds else \
                ds.tensor(a, device=device, requires_grad=True)
        else:
            t = L.tensor(a) if L is not ds else ds.tensor(a, device=device)
        out.append(t)
    return out


def _flat(out, prefix=""):
    """(name, tensor) of each output: a tensor, or the fields of (nested) tuples and named
    tuples (torch.return_types are structseqs with values/indices)."""
    if isinstance(out, (tuple, list)):
        names = getattr(out, "_fields", None)
        if names is None and hasattr(out, "values") and hasattr(out, "indices"):
            names = ("values", "indices")
        items = [(n, getattr(out, n)) for n in names] if names is not None else \
            [(str(i), o) for i, o in enumerate(out)]
        return [f for n, o in items for f in _flat(o, f"{prefix}{n}.")]
    return [(prefix.rstrip(".") or "out", out)]


def _np(t):
    if hasattr(t, "detach") and hasattr(t, "numpy") and not isinstance(t, ds.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def run(L, fn, arrays, dtype, device="cpu", grad=True, seed=0):
    """Outputs and input gradients (numpy) of fn on library L."""
    ts = _tensors(L, arrays, dtype, device)
    out = fn(L, *ts)
    flat = _flat(out)
    outs = [(n, _np(o)) for n, o in flat]
    grads = []
    if grad:
        rng = np.random.default_rng(seed)
        loss = None
        for _n, o in flat:
            if o.dtype.is_floating_point if L is not ds else o.dtype.kind == "f":
                w = rng.standard_normal(tuple(o.shape)).astype(_np(o).dtype)
                if not o.requires_grad:  # NOTE: after the draw, so both sides draw alike
                    continue
                wt = L.tensor(w) if L is not ds else ds.tensor(w, device=o.device)
                term = (o * wt).sum()
                loss = term if loss is None else loss + term
        if loss is not None:
            loss.backward()
        for a, t in zip(arrays, ts, strict=True):
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                g = t.grad
                grads.append(np.zeros(a.shape, dtype) if g is None else _np(g))
    return outs, grads


def check(torch, fn, *arrays, dtypes=(np.float32, np.float64), grad=True, device="cpu",
          tol=None, values=True):
    """fn on dlsys and on torch agree: output names, shapes, dtypes, values, gradients.
    ``values=False`` compares shapes and dtypes only (e.g. random draws)."""
    for dt in dtypes:
        want, want_g = run(torch, fn, arrays, dt, grad=grad)
        got, got_g = run(ds, fn, arrays, dt, device=device, grad=grad)
        kw = dict(TOL[dt], **(tol or {}))
        assert [n for n, _ in got] == [n for n, _ in want], (got, want)
        for (name, g), (_, w) in zip(got, want, strict=True):
            assert g.shape == w.shape, f"{name}: shape {g.shape}, torch {w.shape}"
            assert g.dtype == w.dtype, f"{name}: dtype {g.dtype}, torch {w.dtype}"
            if values:
                np.testing.assert_allclose(g, w, err_msg=f"{name} ({dt.__name__})",
                                           equal_nan=True, **kw)
        for i, (g, w) in enumerate(zip(got_g, want_g, strict=True)):
            np.testing.assert_allclose(g, w, err_msg=f"grad of input {i} ({dt.__name__})",
                                       equal_nan=True, **kw)


def check_raises(torch, fn, *arrays, dtype=np.float32, device="cpu", match=None,
                 expected=ERRORS):
    """torch raises on fn, and so does dlsys (one of ``expected``, message matching)."""
    import pytest

    with pytest.raises(Exception):  # noqa: B017 - torch's own type does not matter here
        fn(torch, *_tensors(torch, arrays, dtype, "cpu"))
    with pytest.raises(expected, match=match):
        fn(ds, *_tensors(ds, arrays, dtype, device))


def R(*shape, seed=0):
    """Standard normal float64 values."""
    return np.random.default_rng(seed + 13 * len(shape) + sum(shape)).standard_normal(shape)


def U(*shape, seed=0):
    """Distinct float64 values (no ties: argmax, sort and max gradients are unambiguous)."""
    n = int(np.prod(shape)) if shape else 1
    return (np.random.default_rng(seed).permutation(n) * 0.37 - n * 0.1).reshape(shape)


def P(*shape, seed=0):
    """Positive float64 values."""
    return np.abs(R(*shape, seed=seed)) + 0.5

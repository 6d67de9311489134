"""RMSprop and Adagrad (and SGD, Adam, AdamW with parameter groups) against torch.optim over 25
steps, float32 and float64; the Numba kernels against their numpy references; the CUDA kernels
against the CPU's (the simulator); state_dict round trips."""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn, optim
from dlsys.backend import cpu_kernels_optim as KO

torch = pytest.importorskip("torch")

STEPS = 25
RNG = np.random.default_rng(0)
SHAPES = [(3, 4), (5,)]

RMSPROP = [dict(), dict(momentum=0.9), dict(centered=True), dict(centered=True, alpha=0.3),
           dict(weight_decay=0.1, momentum=0.5, centered=True, eps=1e-3), dict(lr=0.1)]
ADAGRAD = [dict(), dict(lr_decay=0.05), dict(weight_decay=0.1), dict(initial_accumulator_value=0.3),
           dict(eps=1e-3, lr=0.5)]


def data(dtype, seed=0):
    r = np.random.default_rng(seed)
    x0 = [r.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[r.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    return x0, grads


def run_ds(make, x0, grads, groups=None):
    ps = [nn.Parameter(ds.tensor(x, dtype=x.dtype)) for x in x0]
    opt = make(ps if groups is None else groups(ps))
    for gs in grads:
        for p, g in zip(ps, gs, strict=True):
            p.grad = ds.tensor(g, dtype=g.dtype)
        opt.step()
    return [p.numpy() for p in ps], opt


def run_torch(make, x0, grads, groups=None):
    ps = [torch.nn.Parameter(torch.tensor(x)) for x in x0]
    opt = make(ps if groups is None else groups(ps))
    for gs in grads:
        for p, g in zip(ps, gs, strict=True):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in ps]


def check(name, kw, dtype, groups=None):
    x0, grads = data(dtype)
    got, _ = run_ds(lambda ps: getattr(optim, name)(ps, **kw), x0, grads, groups)
    want = run_torch(lambda ps: getattr(torch.optim, name)(ps, **kw), x0, grads, groups)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", RMSPROP)
def test_rmsprop_as_torch(kw, dtype):
    check("RMSprop", kw, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", ADAGRAD)
def test_adagrad_as_torch(kw, dtype):
    check("Adagrad", kw, dtype)


GROUPS = {
    "SGD": (dict(lr=0.1), dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "Adam": (dict(), dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=0.1, eps=1e-6)),
    "AdamW": (dict(), dict(lr=1e-2, betas=(0.5, 0.99), weight_decay=0.5)),
    "RMSprop": (dict(), dict(lr=1e-3, alpha=0.9, momentum=0.8, centered=True, weight_decay=0.1)),
    "Adagrad": (dict(), dict(lr=0.3, lr_decay=0.01, weight_decay=0.2, eps=1e-5)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(GROUPS))
def test_parameter_groups_with_their_own_options(name, dtype):
    defaults, second = GROUPS[name]
    check(name, defaults, dtype, groups=lambda ps: [{"params": [ps[0]]},
                                                    dict(second, params=[ps[1]])])


@pytest.mark.parametrize("name,kw", [("RMSprop", dict(momentum=0.9, centered=True)),
                                     ("Adagrad", dict(lr_decay=0.1)), ("Adam", dict()),
                                     ("SGD", dict(lr=0.1, momentum=0.9))])
def test_state_dict_round_trip_continues_bitwise(name, kw):
    x0, grads = data(np.float32, seed=3)
    full, _ = run_ds(lambda ps: getattr(optim, name)(ps, **kw), x0, grads)
    half, opt = run_ds(lambda ps: getattr(optim, name)(ps, **kw), x0, grads[:10])
    sd = opt.state_dict()
    ps = [nn.Parameter(ds.tensor(x)) for x in half]
    fresh = getattr(optim, name)(ps, **kw)
    fresh.load_state_dict(sd)
    for gs in grads[10:]:
        for p, g in zip(ps, gs, strict=True):
            p.grad = ds.tensor(g)
        fresh.step()
    for a, p in zip(full, ps, strict=True):
        np.testing.assert_array_equal(p.numpy(), a)


def test_state_layout_as_torch():
    p = nn.Parameter(ds.ones(2))
    tp = torch.nn.Parameter(torch.ones(2))
    for kw in (dict(momentum=0.9, centered=True), dict()):
        o, to = optim.RMSprop([p], **kw), torch.optim.RMSprop([tp], **kw)
        p.grad, tp.grad = ds.ones(2), torch.ones(2)
        o.step()
        to.step()
        assert sorted(o.state_dict()["state"][0]) == sorted(to.state_dict()["state"][0])
    o, to = optim.Adagrad([p]), torch.optim.Adagrad([tp])  # state made at construction
    assert sorted(o.state_dict()["state"][0]) == sorted(to.state_dict()["state"][0])
    assert set(o.param_groups[0]) <= set(to.param_groups[0])


def test_validation():
    p = [nn.Parameter(ds.ones(1))]
    for kw in (dict(alpha=-1), dict(eps=-1), dict(momentum=-0.1), dict(weight_decay=-1),
               dict(lr=-1)):
        with pytest.raises(ValueError, match="Invalid"):
            optim.RMSprop(p, **kw)
    for kw in (dict(lr_decay=-1), dict(initial_accumulator_value=-1), dict(eps=-1)):
        with pytest.raises(ValueError, match="Invalid"):
            optim.Adagrad(p, **kw)


# -- kernels ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [dict(momentum=0.0, centered=False, weight_decay=0.0),
                                dict(momentum=0.9, centered=True, weight_decay=0.1),
                                dict(momentum=0.0, centered=True, weight_decay=0.0, alpha=0.2)])
def test_rmsprop_kernel_vs_reference(kw, dtype):
    kw = dict(dict(alpha=0.99), **kw)
    n = 1000
    p, g = RNG.standard_normal(n).astype(dtype), RNG.standard_normal(n).astype(dtype)
    sq = np.abs(RNG.standard_normal(n)).astype(dtype) + 1
    states = {k: [sq.copy(), np.zeros(n, dtype), np.zeros(n, dtype)] for k in ("nb", "ref")}
    pp = {"nb": p.copy(), "ref": p.copy()}
    for _ in range(5):
        for which, fn in (("nb", KO.rmsprop_fast), ("ref", KO.rmsprop_ref)):
            sq, ga, buf = states[which]
            fn(pp[which], g, sq, ga if kw["centered"] else None,
               buf if kw["momentum"] else None, 0.01, kw["alpha"], 1e-8, kw["weight_decay"],
               kw["momentum"], kw["centered"])
    np.testing.assert_array_equal(pp["nb"], pp["ref"])  # the same operations in the same order
    for a, b in zip(states["nb"], states["ref"], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_adagrad_kernel_vs_reference(wd, dtype):
    n = 1000
    p, g = RNG.standard_normal(n).astype(dtype), RNG.standard_normal(n).astype(dtype)
    s = np.full(n, 0.1, dtype)
    p2, s2 = p.copy(), s.copy()
    for step in range(1, 6):
        KO.adagrad_fast(p, g, s, 0.1, 0.01, wd, 1e-10, step)
        KO.adagrad_ref(p2, g, s2, 0.1, 0.01, wd, 1e-10, step)
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(s, s2)
    # a non-contiguous or float16 parameter takes the reference
    h, gh, sh = p.astype(np.float16), g.astype(np.float16), s.astype(np.float16)
    KO.adagrad_fast(h, gh, sh, 0.1, 0.0, 0.0, 1e-10, 1)
    assert h.dtype == np.float16


@pytest.mark.skipif(not ds.cuda_is_available(), reason="no CUDA device or simulator")
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_cuda_kernels_match_cpu(dtype):
    dev, cpu = ds.cuda(), ds.cpu()
    tol = 1e-5 if dtype == np.float32 else 3e-3
    p, g = RNG.standard_normal(7).astype(dtype), RNG.standard_normal(7).astype(dtype)
    for centered, mom in ((False, 0.0), (True, 0.9)):
        host = [p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)]
        devs = [dev.from_numpy(a.copy()) for a in host]
        for _ in range(3):
            for d, (pp, sq, ga, b) in ((cpu, host), (dev, devs)):
                d.update("rmsprop", pp, g if d is cpu else dev.from_numpy(g), sq,
                         ga if centered else None, b if mom else None, 0.01, 0.9, 1e-6, 0.1,
                         mom, centered)
        for a, b in zip(host, devs, strict=True):
            np.testing.assert_allclose(dev.to_numpy(b).astype(np.float64), a, rtol=tol,
                                       atol=tol)
    host = [p.copy(), np.full_like(p, 0.1)]
    devs = [dev.from_numpy(a.copy()) for a in host]
    for step in (1, 2, 3):
        cpu.update("adagrad", host[0], g, host[1], 0.1, 0.01, 0.2, 1e-10, step)
        dev.update("adagrad", devs[0], dev.from_numpy(g), devs[1], 0.1, 0.01, 0.2, 1e-10, step)
    for a, b in zip(host, devs, strict=True):
        np.testing.assert_allclose(dev.to_numpy(b).astype(np.float64), a, rtol=tol, atol=tol)


@pytest.mark.skipif(not ds.cuda_is_available(), reason="no CUDA device or simulator")
@pytest.mark.parametrize("name", ["RMSprop", "Adagrad"])
def test_training_steps_on_cuda_match_cpu(name):
    out, xs = [], RNG.standard_normal((4, 3)).astype(np.float32)
    for device in ("cpu", "cuda"):
        ds.manual_seed(0)
        m = nn.Linear(3, 2).to(device)
        opt = getattr(optim, name)(m.parameters(), lr=0.05)
        x = ds.tensor(xs, device=device)
        for _ in range(3):
            opt.zero_grad()
            ((m(x) ** 2).sum()).backward()
            opt.step()
        out.append(m.weight.numpy())
    np.testing.assert_allclose(out[1], out[0], rtol=1e-5, atol=1e-6)

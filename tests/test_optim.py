"""dlsys.optim: closed-form updates, param_groups, state_dict, schedulers, convergence."""

import math

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn, optim
from dlsys.data import DataLoader, TensorDataset, synthetic_classification

STEPS = 5


def setup(shape=(3, 4), seed=0, dtype=np.float64):
    r = np.random.default_rng(seed)
    x0 = r.standard_normal(shape).astype(dtype)
    grads = [r.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    return x0, grads


def run(make_opt, x0, grads):
    p = nn.Parameter(ds.tensor(x0, dtype=x0.dtype))
    opt = make_opt([p])
    for g in grads:
        gt = ds.tensor(g, dtype=g.dtype)
        p.grad = gt
        opt.step()
        np.testing.assert_array_equal(p.grad.numpy(), g)     # .grad is never modified
    return p.numpy()


def sgd_reference(x, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
                  nesterov=False):
    x, buf = x.copy(), None
    for g in grads:
        d = g + weight_decay * x
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        x = x - lr * d
    return x


def adam_reference(x, grads, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    x, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            x = x * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        x = x - lr * mhat / (np.sqrt(vhat) + eps)
    return x


@pytest.mark.parametrize("kw", [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.3),
    dict(momentum=0.8, nesterov=True),
    dict(momentum=0.9, weight_decay=0.01),
    dict(weight_decay=0.1),
])
def test_sgd_closed_form(kw):
    x0, grads = setup()
    got = run(lambda ps: optim.SGD(ps, lr=0.1, **kw), x0, grads)
    np.testing.assert_allclose(got, sgd_reference(x0, grads, 0.1, **kw), rtol=1e-12)


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.05), dict(betas=(0.8, 0.99))])
def test_adam_closed_form(kw):
    x0, grads = setup(seed=1)
    got = run(lambda ps: optim.Adam(ps, lr=0.01, **kw), x0, grads)
    b1, b2 = kw.pop("betas", (0.9, 0.999))
    ref = adam_reference(x0, grads, 0.01, b1, b2, **kw)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_adamw_decoupled_weight_decay():
    x0, grads = setup(seed=2)
    got = run(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1), x0, grads)
    ref = adam_reference(x0, grads, 0.01, weight_decay=0.1, decoupled=True)
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert not np.allclose(got, adam_reference(x0, grads, 0.01, weight_decay=0.1))
    assert optim.AdamW([nn.Parameter(ds.zeros(1))]).defaults["weight_decay"] == 1e-2


def test_float32_updates_stay_float32():
    x0, grads = setup(dtype=np.float32)
    got = run(lambda ps: optim.Adam(ps, lr=0.01), x0, grads)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, adam_reference(x0.astype(np.float64),
                                                   [g.astype(np.float64) for g in grads], 0.01),
                               rtol=1e-5, atol=1e-6)


def test_param_groups_per_group_options_and_skipped_grads():
    a = nn.Parameter(ds.tensor(np.ones(2)))
    b = nn.Parameter(ds.tensor(np.ones(2)))
    c = nn.Parameter(ds.tensor(np.ones(2)))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.9}],
                    lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[0]["momentum"] == 0.0
    opt.add_param_group({"params": c, "weight_decay": 1.0})
    for p in (a, b, c):
        p.grad = ds.tensor(np.ones(2))
    opt.step()
    np.testing.assert_allclose(a.numpy(), 0.9)
    np.testing.assert_allclose(b.numpy(), 0.5)
    np.testing.assert_allclose(c.numpy(), 1 - 0.1 * 2)
    c.grad = None                                   # no grad: untouched
    opt.step()
    np.testing.assert_allclose(c.numpy(), 0.8)
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([a])


def test_zero_grad():
    p = nn.Parameter(ds.tensor(np.ones(3)))
    opt = optim.SGD([p], lr=0.1)
    p.grad = ds.tensor(np.ones(3))
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), 0)
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: optim.Adam(ps, lr=0.01),
    lambda ps: optim.AdamW([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.1}], lr=0.01),
])
def test_state_dict_roundtrip_continues_identically(make):
    r = np.random.default_rng(3)
    init = [r.standard_normal((3, 2)), r.standard_normal(4)]
    grads = [[r.standard_normal(x.shape) for x in init] for _ in range(6)]

    def params():
        return [nn.Parameter(ds.tensor(x, dtype=ds.float64)) for x in init]

    def step(ps, opt, gs):
        for p, g in zip(ps, gs, strict=True):
            p.grad = ds.tensor(g, dtype=ds.float64)
        opt.step()

    ref_ps = params()
    ref = make(ref_ps)
    for gs in grads:
        step(ref_ps, ref, gs)
    ps = params()
    first = make(ps)
    for gs in grads[:3]:
        step(ps, first, gs)
    sd = first.state_dict()
    assert sorted(sd["state"]) == [0, 1]
    assert [g["params"] for g in sd["param_groups"]] in ([[0, 1]], [[0], [1]])
    ps2 = [nn.Parameter(ds.tensor(p.numpy().copy(), dtype=ds.float64)) for p in ps]
    second = make(ps2)
    second.load_state_dict(sd)
    for v in sd["state"][0].values():                  # loading copied, not aliased
        if hasattr(v, "numpy"):
            assert not np.shares_memory(v.numpy(), next(iter(
                s for s in second.state[ps2[0]].values() if hasattr(s, "numpy"))).numpy())
    for gs in grads[3:]:
        step(ps2, second, gs)
    for p, q in zip(ref_ps, ps2, strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_load_state_dict_mismatch():
    a, b = nn.Parameter(ds.zeros(2)), nn.Parameter(ds.zeros(2))
    sd = optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="parameter"):
        optim.SGD([a], lr=0.1).load_state_dict(sd)


def test_lr_schedulers():
    p = nn.Parameter(ds.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    opt = optim.SGD([p], lr=1.0)
    cos = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = []
    for _ in range(5):
        lrs.append(cos.get_last_lr()[0])
        cos.step()
    expect = [0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)]
    np.testing.assert_allclose(lrs, expect)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_mlp_converges_on_synthetic_data(opt_name):
    x, y = synthetic_classification(512, shape=(20,), num_classes=4, seed=0, noise=0.5)
    ds.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 4))
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, seed=0)
    losses = []
    for _ in range(5):
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8])
    with ds.no_grad():
        acc = (np.asarray(model(ds.tensor(x))).argmax(1) == y).mean()
    assert acc > 0.9


def test_scheduler_state_dict_and_plain_tensor_params():
    w = ds.tensor(np.ones(2), requires_grad=True)       # a plain leaf Tensor works too
    opt = optim.SGD([w], lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    sd = sched.state_dict()
    opt2 = optim.SGD([w], lr=1.0)
    opt2.load_state_dict(opt.state_dict())  # the rate is the optimizer's state, as in torch
    sched2 = optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    sched2.load_state_dict(sd)
    sched2.step()
    assert sched2.get_last_lr() == [0.25]
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([w * 2], lr=0.1)

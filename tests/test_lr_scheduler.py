"""LR schedulers against torch.optim.lr_scheduler: the same rates (bitwise, Python floats) step
by step over 40 steps with three parameter groups, get_last_lr(), momentum/betas for
OneCycleLR, and a resume through state_dict that continues as torch's does."""

import copy

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn, optim
from dlsys.optim import lr_scheduler as sched_mod

torch = pytest.importorskip("torch")

STEPS = 40
LRS = [0.1, 0.05, 0.2]
METRICS = [1.0, 0.9, 0.95, 0.95, 0.96, 0.8, 0.85, 0.85, 0.9, 0.9, 0.91, 0.7, 0.7, 0.7, 0.7,
           0.75, 0.6, 0.6, 0.61, 0.62, 0.63, 0.64, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4,
           0.41, 0.42, 0.43, 0.44, 0.45, 0.3, 0.3, 0.3, 0.3, 0.3]


class Warmup:
    """A callable object: LambdaLR saves its __dict__ (plain functions are not saved)."""

    def __init__(self, n):
        self.n = n

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.n)


def _opts(kind):
    """The same optimizer in dlsys and torch: three groups with different lrs."""
    ours = [nn.Parameter(ds.zeros(2)) for _ in LRS]
    theirs = [torch.nn.Parameter(torch.zeros(2)) for _ in LRS]
    if kind == "adam":
        o = optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(ours, LRS, strict=True)])
        t = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(theirs, LRS,
                                                                        strict=True)])
    else:
        o = optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(ours, LRS, strict=True)],
                      lr=0.1, momentum=0.9)
        t = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(theirs, LRS,
                                                                       strict=True)],
                            lr=0.1, momentum=0.9)
    return (o, ours), (t, theirs)


def _build(lib, opt, name):
    m = sched_mod if lib == "ours" else torch.optim.lr_scheduler
    if name == "StepLR":
        return m.StepLR(opt, step_size=3, gamma=0.5)
    if name == "MultiStepLR":
        return m.MultiStepLR(opt, milestones=[3, 7, 7, 20], gamma=0.3)
    if name == "ExponentialLR":
        return m.ExponentialLR(opt, gamma=0.9)
    if name == "CosineAnnealingLR":
        return m.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    if name == "LambdaLR":
        return m.LambdaLR(opt, lr_lambda=lambda e: 0.95 ** e)
    if name == "LambdaLR-groups":
        return m.LambdaLR(opt, lr_lambda=[Warmup(5), Warmup(10), lambda e: 1.0 / (1 + e)])
    if name == "LinearLR":
        return m.LinearLR(opt, start_factor=0.25, total_iters=8)
    if name == "LinearLR-decay":
        return m.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=10)
    if name == "SequentialLR":
        return m.SequentialLR(opt, [m.LinearLR(opt, start_factor=0.1, total_iters=5),
                                    m.CosineAnnealingLR(opt, T_max=30)], milestones=[5])
    if name == "SequentialLR-3":
        return m.SequentialLR(opt, [m.ExponentialLR(opt, gamma=0.8), m.StepLR(opt, 4),
                                    m.MultiStepLR(opt, [2, 5])], milestones=[10, 20])
    if name == "OneCycleLR":
        return m.OneCycleLR(opt, max_lr=[1.0, 0.5, 2.0], total_steps=STEPS + 1)
    if name == "OneCycleLR-linear-3":
        return m.OneCycleLR(opt, max_lr=0.3, epochs=3, steps_per_epoch=14,
                            anneal_strategy="linear", three_phase=True, pct_start=0.25)
    if name == "ReduceLROnPlateau":
        return m.ReduceLROnPlateau(opt, patience=2, cooldown=1, factor=0.5,
                                   min_lr=[0.0, 0.01, 0.0])
    if name == "ReduceLROnPlateau-max-abs":
        return m.ReduceLROnPlateau(opt, mode="max", threshold=0.05, threshold_mode="abs",
                                   patience=1)
    raise AssertionError(name)


NAMES = ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR",
         "LambdaLR-groups", "LinearLR", "LinearLR-decay", "SequentialLR", "SequentialLR-3",
         "OneCycleLR", "OneCycleLR-linear-3", "ReduceLROnPlateau", "ReduceLROnPlateau-max-abs"]


def _record(opt, sched, steps, start=0):
    """Per step: the rates the optimizer uses, get_last_lr(), and momentum or beta1."""
    out = []
    for k in range(start, start + steps):
        g = opt.param_groups
        out.append(([x["lr"] for x in g], list(sched.get_last_lr()),
                    [x.get("momentum", x.get("betas", (None,))[0]) for x in g]))
        opt.step()
        if isinstance(sched, (sched_mod.ReduceLROnPlateau,
                              torch.optim.lr_scheduler.ReduceLROnPlateau)):
            sched.step(METRICS[k])
        else:
            sched.step()
    return out


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", NAMES)
def test_rates_match_torch_step_by_step(name, kind):
    (o, _), (t, _) = _opts(kind)
    ours = _record(o, _build("ours", o, name), STEPS)
    theirs = _record(t, _build("torch", t, name), STEPS)
    assert ours == theirs       # bitwise: the same float operations in the same order
    assert len({tuple(r[0]) for r in ours}) > 1 or name.startswith("Reduce")


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_state_dicts_continues_as_torch(name):
    """Save optimizer + scheduler after 13 steps; fresh optimizer, load its state, build the
    scheduler, load its state, continue: the rates are torch's doing the same."""
    k = 13
    runs = {}
    for lib in ("ours", "torch"):
        (o, _), (t, _) = _opts("sgd")
        opt = o if lib == "ours" else t
        sched = _build(lib, opt, name)
        _record(opt, sched, k)
        opt_sd = copy.deepcopy(opt.state_dict()) if lib == "torch" else opt.state_dict()
        sched_sd = copy.deepcopy(sched.state_dict())
        (o2, _), (t2, _) = _opts("sgd")
        opt2 = o2 if lib == "ours" else t2
        opt2.load_state_dict(opt_sd)
        sched2 = _build(lib, opt2, name)
        sched2.load_state_dict(sched_sd)
        runs[lib] = _record(opt2, sched2, STEPS - k, start=k)
    assert runs["ours"] == runs["torch"]


@pytest.mark.parametrize("name", ["StepLR", "ExponentialLR", "CosineAnnealingLR",
                                  "MultiStepLR", "ReduceLROnPlateau"])
def test_scheduler_built_after_load_keeps_the_loaded_lr(name):
    # bug: the scheduler's constructor reset every group's lr to initial_lr, so the first
    # step after a resume ran at the wrong rate. (Like torch, LinearLR, LambdaLR, OneCycleLR
    # and SequentialLR do set a rate when built: the test above follows torch for those.)
    (o, _), _ = _opts("sgd")
    sched = _build("ours", o, name)
    _record(o, sched, 14)
    loaded_lrs = [g["lr"] for g in o.param_groups]
    assert loaded_lrs != LRS
    opt_sd, sched_sd = o.state_dict(), sched.state_dict()
    (o2, _), _ = _opts("sgd")
    o2.load_state_dict(opt_sd)
    _build("ours", o2, name)
    assert [g["lr"] for g in o2.param_groups] == loaded_lrs
    _build("ours", o2, name).load_state_dict(sched_sd)
    assert [g["lr"] for g in o2.param_groups] == loaded_lrs


def test_step_with_epoch_uses_the_closed_form_as_torch():
    for name in ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR"):
        (o, _), (t, _) = _opts("sgd")
        a, b = _build("ours", o, name), _build("torch", t, name)
        with pytest.warns(UserWarning):
            a.step(7)
        with pytest.warns(UserWarning):
            b.step(7)
        assert a.get_last_lr() == b.get_last_lr(), name


def test_state_dicts_round_trip_through_ds_save(tmp_path):
    for name in NAMES:
        (o, _), _ = _opts("sgd")
        sched = _build("ours", o, name)
        _record(o, sched, 9)
        path = tmp_path / f"{name}.ckpt"
        ds.save({"opt": o.state_dict(), "sched": sched.state_dict()}, path)
        state = ds.load(path)
        (o2, _), _ = _opts("sgd")
        sched2 = _build("ours", o2, name)   # built first, as torch's docs advise: some
        o2.load_state_dict(state["opt"])    # schedulers (LambdaLR, OneCycleLR) set a rate
        sched2.load_state_dict(state["sched"])  # when built
        assert _record(o2, sched2, 12, start=9) == _record(o, sched, 12, start=9), name


def test_scheduler_argument_errors():
    (o, _), _ = _opts("sgd")
    with pytest.raises(TypeError, match="not an Optimizer"):
        sched_mod.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="3 lr_lambdas|Expected 3"):
        sched_mod.LambdaLR(o, [lambda e: 1.0])
    with pytest.raises(ValueError, match="Starting"):
        sched_mod.LinearLR(o, start_factor=0.0)
    with pytest.raises(ValueError, match="milestone"):
        sched_mod.SequentialLR(o, [sched_mod.StepLR(o, 2)], milestones=[3])
    with pytest.raises(ValueError, match="total_steps"):
        sched_mod.OneCycleLR(o, max_lr=1.0)
    with pytest.raises(ValueError, match="Tried to step"):
        s = sched_mod.OneCycleLR(o, max_lr=1.0, total_steps=2)
        for _ in range(3):
            s.step()
    with pytest.raises(ValueError, match="Factor"):
        sched_mod.ReduceLROnPlateau(o, factor=1.0)
    with pytest.raises(KeyError, match="initial_lr"):
        (o3, _), _ = _opts("sgd")
        sched_mod.StepLR(o3, 2, last_epoch=4)
    np.testing.assert_equal(sched_mod.StepLR(o, 2).get_last_lr(), [g["lr"] for g in
                                                                   o.param_groups])

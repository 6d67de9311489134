"""ModuleDict, ParameterList, ParameterDict and the module API (forward hooks, named_modules,
apply, buffers, requires_grad_, zero_grad, get_submodule), each the same as PyTorch's: the same
calls run on both libraries and give the same names, orders and values."""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn

torch = pytest.importorskip("torch")
LIBS = [(ds, nn), (torch, torch.nn)]


def build(lib, tnn):
    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = tnn.ModuleDict({"b": tnn.Linear(3, 3), "a": tnn.Linear(3, 2)})
            self.scales = tnn.ParameterList([tnn.Parameter(lib.ones(2)), lib.zeros(2)])
            self.extra = tnn.ParameterDict({"z": tnn.Parameter(lib.ones(3))})
            self.register_buffer("step", lib.zeros(1))
            self.register_buffer("cache", lib.zeros(2), persistent=False)
            self.shared = self.blocks["b"]  # reached twice

        def forward(self, x):
            h = self.blocks["b"](x) * self.extra["z"]
            return self.blocks["a"](h) * self.scales[0] + self.scales[1]

    return Net()


def test_names_orders_and_state_dict_keys_as_torch():
    d, t = build(ds, nn), build(torch, torch.nn)
    assert [n for n, _ in d.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert list(d.state_dict()) == list(t.state_dict())
    assert [n for n, _ in d.named_modules()] == [n for n, _ in t.named_modules()]
    assert ([n for n, _ in d.named_modules(remove_duplicate=False)]
            == [n for n, _ in t.named_modules(remove_duplicate=False)])
    assert [n for n, _ in d.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert len(list(d.modules())) == len(list(t.modules()))
    assert list(d.blocks.keys()) == list(t.blocks.keys()) == ["b", "a"]
    assert len(d.scales) == 2 and isinstance(d.scales[1], nn.Parameter)
    assert d.get_submodule("blocks.a") is d.blocks["a"]
    assert d.get_parameter("blocks.a.bias") is d.blocks["a"].bias
    with pytest.raises(AttributeError, match="nope"):
        d.get_submodule("blocks.nope")


def test_containers_behave_like_python_containers():
    md = nn.ModuleDict([("x", nn.ReLU())])
    md["y"] = nn.Tanh()
    md.update({"z": nn.Identity()})
    assert list(md) == ["x", "y", "z"] and "y" in md and len(md) == 3
    assert isinstance(md.pop("x"), nn.ReLU) and list(md.keys()) == ["y", "z"]
    with pytest.raises(TypeError, match="strings"):
        md[1] = nn.ReLU()
    with pytest.raises(ValueError, match="pair"):
        md.update([nn.ReLU()])
    pl = nn.ParameterList()
    pl.append(ds.ones(2)).extend([ds.zeros(3)])
    pl += [ds.ones(1)]
    assert [p.shape for p in pl] == [(2,), (3,), (1,)] and pl[-1].shape == (1,)
    pl[0] = ds.zeros(4)
    assert pl[0].shape == (4,) and len(pl[1:]) == 2
    with pytest.raises(IndexError):
        pl[3]
    with pytest.raises(TypeError, match="Tensor is required"):
        pl.append(3.0)
    pd = nn.ParameterDict({"w": ds.ones(2)})
    pd["b"] = nn.Parameter(ds.zeros(2))
    assert list(pd) == ["w", "b"] and pd.get("q") is None and isinstance(pd["w"], nn.Parameter)
    del pd["w"]
    assert list(pd.keys()) == ["b"]


def _hook_log(lib, tnn):
    log = []
    lin = tnn.Linear(2, 2)
    with lib.no_grad():
        lin.weight.copy_(lib.tensor([[1.0, 2.0], [3.0, 4.0]]))
        lin.bias.zero_()

    def pre(m, args):
        log.append(("pre", len(args)))
        return args[0] * 2  # a single value becomes the 1-tuple of new args

    def pre_kw(m, args, kwargs):
        log.append(("pre_kw", sorted(kwargs)))
        return args, kwargs

    def first(m, args, out):
        log.append("first")

    def post(m, args, out):
        log.append(("post", float(args[0].sum())))
        return out + 1

    h1 = lin.register_forward_pre_hook(pre)
    lin.register_forward_pre_hook(pre_kw, with_kwargs=True)
    lin.register_forward_hook(post)
    h4 = lin.register_forward_hook(first, prepend=True)
    out = lin(lib.tensor([[1.0, 1.0]]))
    log.append(out.detach().numpy().tolist())
    h1.remove()
    h4.remove()
    h4.remove()  # idempotent
    log.append(lin(lib.tensor([[1.0, 1.0]])).detach().numpy().tolist())
    return log


def test_forward_hooks_as_torch():
    assert _hook_log(ds, nn) == _hook_log(torch, torch.nn)


@pytest.mark.parametrize("lib,tnn", LIBS)
def test_forward_hook_always_call_and_pre_hook_errors(lib, tnn):
    class Boom(tnn.Module):
        def forward(self, x):
            raise KeyError("boom")

    seen = []
    m = Boom()
    m.register_forward_hook(lambda m, a, o: seen.append(o), always_call=True)
    with pytest.raises(KeyError, match="boom"):
        m(lib.ones(1))
    assert seen == [None]
    m = tnn.Identity()
    m.register_forward_pre_hook(lambda m, a, k: 3, with_kwargs=True)
    with pytest.raises(RuntimeError, match="new_args, new_kwargs"):
        m(lib.ones(1))


def test_apply_requires_grad_zero_grad_buffers():
    net = build(ds, nn)
    visited = []
    net.apply(lambda m: visited.append(type(m).__name__))
    tnet = build(torch, torch.nn)
    tvisited = []
    tnet.apply(lambda m: tvisited.append(type(m).__name__))
    assert visited == tvisited
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    net(ds.ones(1, 3)).sum().backward()
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not np.any(p.grad.numpy()) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert "cache" not in net.state_dict() and "step" in net.state_dict()
    net.to(ds.float64)
    assert net.cache.dtype == np.float64 and net.scales[0].dtype == np.float64

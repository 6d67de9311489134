"""dlsys.nn.Module: registration, state_dict, load_state_dict, modes, to(), zero_grad."""

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn


def make_model():
    ds.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))


KEYS = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "3.weight", "3.bias"]


def test_named_parameters_stable_order_and_children():
    m = make_model()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    assert [p is q for p, q in zip(m.parameters(), [m[0].weight, m[0].bias, m[1].weight,
                                                    m[1].bias, m[3].weight, m[3].bias],
                                   strict=True)] == [True] * 6
    assert [type(c).__name__ for c in m.children()] == ["Linear", "BatchNorm1d", "ReLU",
                                                        "Linear"]
    assert len(list(m.modules())) == 5
    assert [n for n, _ in m.named_buffers()] == ["1.running_mean", "1.running_var",
                                                  "1.num_batches_tracked"]


def test_custom_module_registration_and_shared_parameters():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(3, 3)
            self.scale = nn.Parameter(ds.ones(1))
            self.dec = nn.Linear(3, 3)
            self.dec.weight = self.enc.weight        # tied: reported once
            self.register_buffer("steps", ds.zeros(1))
            self.plain = 5                            # not registered

        def forward(self, x):
            return self.dec(self.enc(x)) * self.scale

    net = Net()
    # PyTorch's order: the module's own tensors first, then each child's
    assert [n for n, _ in net.named_parameters()] == ["scale", "enc.weight", "enc.bias",
                                                      "dec.bias"]
    assert list(net.state_dict()) == ["scale", "steps", "enc.weight", "enc.bias",
                                      "dec.weight", "dec.bias"]
    assert net(ds.ones(2, 3)).shape == (2, 3)
    with pytest.raises(TypeError, match="Parameter"):
        net.scale = ds.ones(1)

    class Broken(nn.Module):
        def __init__(self):
            self.lin = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="__init__"):
        Broken()


def test_state_dict_keys_and_storage_sharing():
    m = make_model()
    sd = m.state_dict()
    assert list(sd) == KEYS
    assert all(not v.requires_grad for v in sd.values())
    sd["0.weight"].numpy()[...] = 7.0           # in place on the shared storage
    assert (m[0].weight.numpy() == 7.0).all()
    assert sd["1.num_batches_tracked"].dtype == ds.int64


def test_load_state_dict_roundtrip_and_cast():
    src, dst = make_model(), make_model()
    for p in dst.parameters():
        with ds.no_grad():
            p.fill_(0.0)
    src[1](ds.randn(5, 3))                      # move the running stats
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k].numpy(), v.numpy())
    as_numpy64 = {k: np.asarray(v.numpy(), dtype=np.float64) * 2 for k, v in
                  src.state_dict().items()}
    w_obj = dst[0].weight
    dst.load_state_dict(as_numpy64)
    assert dst[0].weight is w_obj and dst[0].weight.dtype == ds.float32
    np.testing.assert_allclose(dst[0].weight.numpy(), src[0].weight.numpy() * 2, rtol=1e-6)


def test_load_state_dict_errors_name_the_keys():
    m = make_model()
    sd = dict(m.state_dict())
    before = m[0].weight.numpy().copy()
    bad = dict(sd)
    del bad["3.bias"]
    bad["extra.weight"] = np.zeros(2)
    bad["0.weight"] = np.ones((4, 3), np.float32)
    with pytest.raises(RuntimeError) as exc:
        m.load_state_dict(bad)
    msg = str(exc.value)
    assert 'Missing key(s) in state_dict: "3.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight"' in msg
    assert "size mismatch for 0.weight" in msg and "(4, 3)" in msg and "(3, 4)" in msg
    np.testing.assert_array_equal(m[0].weight.numpy(), before)   # nothing was copied
    partial = {"0.bias": np.zeros(3), "junk": np.zeros(1)}
    res = m.load_state_dict(partial, strict=False)
    assert res.unexpected_keys == ["junk"] and "3.bias" in res.missing_keys
    assert not m[0].bias.numpy().any()
    with pytest.raises(RuntimeError, match="size mismatch"):
        m.load_state_dict({"0.bias": np.zeros(4)}, strict=False)


def test_train_eval_and_zero_grad():
    m = make_model()
    assert m.training and m[1].training
    m.eval()
    assert not m.training and not m[1].training
    m.train()
    assert m[3].training
    loss = m(ds.randn(6, 4)).sum()
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_to_dtype_in_place_keeps_parameter_objects():
    m = make_model()
    params = list(m.parameters())
    values = [p.numpy().copy() for p in params]
    assert m.to(ds.float64) is m
    assert [p is q for p, q in zip(params, m.parameters(), strict=True)] == [True] * 6
    assert all(p.dtype == ds.float64 for p in m.parameters())
    assert m[1].running_var.dtype == ds.float64
    assert m[1].num_batches_tracked.dtype == ds.int64          # integers are never cast
    for p, v in zip(params, values, strict=True):
        np.testing.assert_array_equal(p.numpy(), v)
    assert m(ds.randn(2, 4).to(ds.float64)).dtype == ds.float64


def test_repr():
    text = repr(make_model())
    assert "(0): Linear(in_features=4, out_features=3, bias=True)" in text
    assert "(1): BatchNorm1d(3" in text and text.startswith("Sequential(")


def test_sequential_indexing():
    m = make_model()
    assert len(m) == 4 and isinstance(m[-1], nn.Linear)
    assert list(m[:2].state_dict())[:2] == ["0.weight", "0.bias"]
    with pytest.raises(IndexError):
        m[4]

"""PyTorch as the oracle of dlsys's nn ops: every op of the contract's nn part (conv2d, the
pools, scaled_dot_product_attention, every loss, linear, embedding, layer_norm, dropout) is
run with the same inputs and options in both libraries, forward values and input gradients
compared in float32 and float64, on every device; bad inputs must raise in both (dlsys with
ValueError/TypeError). Skipped without torch (the test extra installs its CPU build).
"""

from __future__ import annotations

import numpy as np
import pytest

import dlsys as ds
import dlsys.nn.functional as DF

torch = pytest.importorskip("torch")
TF = torch.nn.functional
DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


class Lib:
    """One library's functional module and constant-tensor maker (same code runs on both)."""

    def __init__(self, name, dtype, device):
        self.name, self.dtype, self.device = name, dtype, device
        self.F = TF if name == "torch" else DF

    def t(self, a, grad=False):
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(self.dtype)
        if self.name == "torch":
            return torch.tensor(a, requires_grad=grad)
        return ds.tensor(a, dtype=a.dtype, device=self.device, requires_grad=grad)


def R(*shape, seed=0):
    return np.random.default_rng(seed + 3 * sum(shape)).standard_normal(shape)


def U01(*shape, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 0.95, shape)


def P(*shape, seed=0):  # distinct values: max-pool ties are measure zero, keep margins wide
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) * 0.37 - n * 0.1).reshape(shape)


CASES = []


def case(name, fn, *arrays):
    CASES.append(pytest.param(fn, arrays, id=name))


# convolution
case("conv2d", lambda L, x, w, b: L.F.conv2d(x, w, b), R(2, 3, 6, 5), R(4, 3, 3, 2, seed=1),
     R(4, seed=2))
case("conv2d_stride_pad", lambda L, x, w: L.F.conv2d(x, w, None, (2, 1), (1, 2)),
     R(2, 3, 7, 6), R(4, 3, 3, 3, seed=1))
case("conv2d_dilation_groups", lambda L, x, w, b: L.F.conv2d(x, w, b, 1, 2, (2, 1), 2),
     R(2, 4, 7, 6), R(6, 2, 3, 3, seed=1), R(6, seed=2))
case("conv2d_depthwise", lambda L, x, w: L.F.conv2d(x, w, padding=1, groups=4),
     R(2, 4, 6, 6), R(8, 1, 3, 3, seed=1))
case("conv2d_same_even_kernel", lambda L, x, w: L.F.conv2d(x, w, padding="same", dilation=2),
     R(1, 2, 7, 6), R(3, 2, 4, 2, seed=1))
case("conv2d_valid", lambda L, x, w: L.F.conv2d(x, w, padding="valid", stride=2),
     R(2, 2, 7, 7), R(3, 2, 3, 3, seed=1))
case("conv2d_gemm_route", lambda L, x, w, b: L.F.conv2d(x, w, b, padding=1),
     R(2, 16, 5, 5), R(8, 16, 3, 3, seed=1), R(8, seed=2))
case("conv2d_unbatched", lambda L, x, w: L.F.conv2d(x, w, padding=1), R(2, 5, 4),
     R(3, 2, 3, 3, seed=1))
# pooling
case("max_pool2d", lambda L, x: L.F.max_pool2d(x, 2), P(2, 3, 6, 6))
case("max_pool2d_options", lambda L, x: L.F.max_pool2d(x, 3, 2, 1, 1, True), P(2, 2, 8, 7))
case("max_pool2d_dilation", lambda L, x: L.F.max_pool2d(x, (3, 2), (1, 2), (1, 1), (2, 1)),
     P(1, 2, 7, 7))
case("max_pool2d_indices", lambda L, x: L.F.max_pool2d(x, 3, 2, ceil_mode=True,
                                                        return_indices=True), P(2, 2, 7, 8))
case("max_pool2d_unbatched", lambda L, x: L.F.max_pool2d(x, 2, 1), P(2, 4, 5))
case("avg_pool2d", lambda L, x: L.F.avg_pool2d(x, 2), R(2, 3, 6, 6))
case("avg_pool2d_options", lambda L, x: L.F.avg_pool2d(x, 3, 2, 1, True, False), R(2, 2, 8, 7))
case("avg_pool2d_include_pad", lambda L, x: L.F.avg_pool2d(x, (3, 2), (2, 1), (1, 1), True),
     R(1, 2, 7, 6))
case("avg_pool2d_divisor", lambda L, x: L.F.avg_pool2d(x, 2, divisor_override=3), R(1, 2, 4, 6))
for size in (1, (2, 3), (3, 4), (None, 2), 5):
    case(f"adaptive_avg_pool2d_{size}", lambda L, x, s=size: L.F.adaptive_avg_pool2d(x, s),
         R(2, 3, 7, 6))
# attention
MASK = np.random.default_rng(3).random((5, 6)) < 0.7
MASK[:, 0] = True
case("sdpa", lambda L, q, k, v: L.F.scaled_dot_product_attention(q, k, v),
     R(2, 3, 5, 4), R(2, 3, 6, 4, seed=1), R(2, 3, 6, 3, seed=2))
case("sdpa_causal_scale", lambda L, q, k, v: L.F.scaled_dot_product_attention(
    q, k, v, is_causal=True, scale=0.3), R(2, 2, 6, 4), R(2, 2, 6, 4, seed=1),
     R(2, 2, 6, 3, seed=2))
case("sdpa_bool_mask", lambda L, q, k, v: L.F.scaled_dot_product_attention(
    q, k, v, attn_mask=L.t(MASK)), R(2, 5, 4), R(2, 6, 4, seed=1), R(2, 6, 3, seed=2))
case("sdpa_float_mask", lambda L, q, k, v, m: L.F.scaled_dot_product_attention(
    q, k, v, attn_mask=m), R(2, 2, 5, 4), R(2, 2, 6, 4, seed=1), R(2, 2, 6, 3, seed=2),
     R(2, 1, 5, 6, seed=3))
case("sdpa_masked_row", lambda L, q, k, v: L.F.scaled_dot_product_attention(
    q, k, v, attn_mask=L.t(np.arange(6) < np.array([[3], [0], [6]]))), R(1, 3, 4),
     R(1, 6, 4, seed=1), R(1, 6, 2, seed=2))
case("sdpa_gqa", lambda L, q, k, v: L.F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
     R(1, 4, 3, 2), R(1, 2, 5, 2, seed=1), R(1, 2, 5, 3, seed=2))
# losses
T = np.array([1, 0, 3, 4, 2, 3])
TI = np.array([1, -100, 3, 4, -100, 3])
W5 = np.array([0.5, 2.0, 1.0, 1.5, 0.7])
for red in ("mean", "sum", "none"):
    case(f"cross_entropy_{red}", lambda L, x, r=red: L.F.cross_entropy(x, L.t(T), reduction=r),
         R(6, 5))
    case(f"cross_entropy_weight_ignore_smooth_{red}", lambda L, x, r=red: L.F.cross_entropy(
        x, L.t(TI), L.t(W5), reduction=r, label_smoothing=0.15), R(6, 5))
    case(f"cross_entropy_probs_{red}", lambda L, x, p, r=red: L.F.cross_entropy(
        x, p, L.t(W5), reduction=r, label_smoothing=0.1), R(6, 5), U01(6, 5, seed=1))
    case(f"nll_loss_{red}", lambda L, x, r=red: L.F.nll_loss(x, L.t(TI), L.t(W5), reduction=r),
         R(6, 5))
    case(f"binary_cross_entropy_{red}", lambda L, p, y, r=red: L.F.binary_cross_entropy(
        p, y, L.t(U01(3, seed=4)), reduction=r), U01(4, 3), U01(4, 3, seed=1))
    case(f"bce_with_logits_{red}", lambda L, x, y, r=red: L.F.binary_cross_entropy_with_logits(
        x, y, L.t(U01(4, 1, seed=4)), reduction=r, pos_weight=L.t(U01(3, seed=5) * 3)),
         R(4, 3) * 4, U01(4, 3, seed=1))
    case(f"mse_loss_{red}", lambda L, a, b, r=red: L.F.mse_loss(a, b, reduction=r), R(4, 3),
         R(4, 3, seed=1))
    case(f"l1_loss_{red}", lambda L, a, b, r=red: L.F.l1_loss(a, b, reduction=r), R(4, 3),
         R(4, 3, seed=1))
    case(f"smooth_l1_loss_{red}", lambda L, a, b, r=red: L.F.smooth_l1_loss(
        a, b, reduction=r, beta=0.6), R(4, 3), R(4, 3, seed=1))
case("cross_entropy_fast_ignore", lambda L, x: L.F.cross_entropy(x, L.t(TI)), R(6, 5))
case("cross_entropy_nd", lambda L, x: L.F.cross_entropy(x, L.t(T.reshape(2, 3)),
                                                        label_smoothing=0.2), R(2, 5, 3))
case("cross_entropy_nd_mean", lambda L, x: L.F.cross_entropy(x, L.t(T.reshape(2, 3, 1))),
     R(2, 5, 3, 1))
case("cross_entropy_unbatched", lambda L, x: L.F.cross_entropy(x, L.t(np.array(2))), R(5))
case("cross_entropy_unbatched_probs", lambda L, x, p: L.F.cross_entropy(x, p), R(5), U01(5))
case("nll_loss_nd", lambda L, x: L.F.nll_loss(x, L.t(TI.reshape(3, 2)), ignore_index=-100),
     R(3, 5, 2))
case("smooth_l1_loss_beta0", lambda L, a, b: L.F.smooth_l1_loss(a, b, beta=0.0), R(4, 3),
     R(4, 3, seed=1))
case("bce_with_logits_plain", lambda L, x, y: L.F.binary_cross_entropy_with_logits(x, y),
     R(4, 3) * 10, U01(4, 3, seed=1))
# the rest of the contract's nn ops
case("linear", lambda L, x, w, b: L.F.linear(x, w, b), R(2, 3, 4), R(5, 4, seed=1),
     R(5, seed=2))
case("linear_nobias", lambda L, x, w: L.F.linear(x, w), R(3, 4), R(2, 4, seed=1))
case("embedding", lambda L, w: L.F.embedding(L.t(np.array([[0, 3], [3, 1]])), w), R(4, 3))
case("layer_norm", lambda L, x, w, b: L.F.layer_norm(x, (4,), w, b, 1e-5), R(3, 4),
     R(4, seed=1), R(4, seed=2))
case("layer_norm_2d_noaffine", lambda L, x: L.F.layer_norm(x, (2, 3)), R(2, 2, 3))


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn,arrays", CASES)
def test_forward_and_input_gradients_match_torch(fn, arrays, dtype, device):
    tl, dl = Lib("torch", dtype, None), Lib("dlsys", dtype, device)
    tin = [tl.t(a, grad=True) for a in arrays]
    din = [dl.t(a, grad=True) for a in arrays]
    touts, douts = _outputs(fn(tl, *tin)), _outputs(fn(dl, *din))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    assert len(touts) == len(douts)
    for t, d in zip(touts, douts, strict=True):
        assert tuple(d.shape) == tuple(t.shape)
        if t.dtype.is_floating_point:
            assert d.dtype == dtype
            np.testing.assert_allclose(d.numpy(), t.detach().numpy(), **tol)
        else:
            np.testing.assert_array_equal(d.numpy(), t.numpy())  # indices: exact
    g = np.random.default_rng(9).standard_normal(touts[0].shape).astype(dtype)
    touts[0].backward(torch.tensor(g))
    douts[0].backward(ds.tensor(g, dtype=dtype, device=device))
    for t, d in zip(tin, din, strict=True):
        tg = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        dg = np.zeros(d.shape) if d.grad is None else d.grad.numpy()
        np.testing.assert_allclose(dg, tg, **tol)


@pytest.mark.parametrize("p", [0.2, 0.6])
def test_dropout_statistics_match_torch(p):
    x = np.ones((400, 250), np.float32)
    torch.manual_seed(0)
    ds.manual_seed(0)
    tx = torch.tensor(x, requires_grad=True)
    dx = ds.tensor(x, requires_grad=True)
    t, d = TF.dropout(tx, p, True), DF.dropout(dx, p, True)
    tv, dv = t.detach().numpy(), d.numpy()
    assert set(np.unique(dv).tolist()) == set(np.unique(tv).tolist())  # {0, 1 / (1 - p)}
    n = x.size  # the kept fraction: 1 - p within 5 binomial standard deviations
    assert abs((dv != 0).mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(dv.mean() - tv.mean()) < 10 * np.sqrt(p / (1 - p) / n)  # both unbiased: ~1
    t.sum().backward()
    d.sum().backward()
    np.testing.assert_array_equal(dx.grad.numpy(), dv)  # the gradient is the mask itself
    np.testing.assert_array_equal(tx.grad.numpy(), tv)
    assert DF.dropout(dx, p, False) is dx
    np.testing.assert_array_equal(TF.dropout(tx, p, False).detach().numpy(), x)


BAD = {  # name: fn(L) that must raise in both libraries
    "conv2d_channels": lambda L: L.F.conv2d(L.t(R(1, 3, 5, 5)), L.t(R(2, 2, 3, 3))),
    "conv2d_groups": lambda L: L.F.conv2d(L.t(R(1, 4, 5, 5)), L.t(R(3, 2, 3, 3)), groups=2),
    "conv2d_same_strided": lambda L: L.F.conv2d(L.t(R(1, 2, 5, 5)), L.t(R(2, 2, 3, 3)),
                                                stride=2, padding="same"),
    "conv2d_kernel_too_big": lambda L: L.F.conv2d(L.t(R(1, 2, 3, 3)), L.t(R(2, 2, 4, 4))),
    "conv2d_bad_padding_string": lambda L: L.F.conv2d(L.t(R(1, 2, 5, 5)), L.t(R(2, 2, 3, 3)),
                                                      padding="full"),
    "max_pool2d_big_padding": lambda L: L.F.max_pool2d(L.t(R(1, 1, 6, 6)), 2, padding=2),
    "max_pool2d_too_small": lambda L: L.F.max_pool2d(L.t(R(1, 1, 2, 2)), 3),
    "avg_pool2d_zero_divisor": lambda L: L.F.avg_pool2d(L.t(R(1, 1, 4, 4)), 2,
                                                        divisor_override=0),
    "cross_entropy_target_range": lambda L: L.F.cross_entropy(L.t(R(3, 4)),
                                                              L.t(np.array([0, 4, 1]))),
    "cross_entropy_target_shape": lambda L: L.F.cross_entropy(L.t(R(3, 4)),
                                                              L.t(np.array([0, 1]))),
    "cross_entropy_probs_shape": lambda L: L.F.cross_entropy(L.t(R(3, 4)), L.t(U01(3, 3))),
    "cross_entropy_reduction": lambda L: L.F.cross_entropy(L.t(R(3, 4)),
                                                           L.t(np.array([0, 1, 2])),
                                                           reduction="avg"),
    "cross_entropy_weight_shape": lambda L: L.F.cross_entropy(L.t(R(3, 4)),
                                                              L.t(np.array([0, 1, 2])),
                                                              L.t(np.ones(3))),
    "nll_loss_target_range": lambda L: L.F.nll_loss(L.t(R(3, 4)), L.t(np.array([0, -1, 1]))),
    "bce_out_of_range": lambda L: L.F.binary_cross_entropy(L.t(np.array([0.5, 1.5])),
                                                           L.t(np.array([0.0, 1.0]))),
    "bce_shape": lambda L: L.F.binary_cross_entropy(L.t(U01(2, 3)), L.t(U01(3))),
    "bce_with_logits_shape": lambda L: L.F.binary_cross_entropy_with_logits(L.t(R(2, 3)),
                                                                            L.t(U01(2))),
    "sdpa_embed_dims": lambda L: L.F.scaled_dot_product_attention(L.t(R(2, 3, 4)),
                                                                  L.t(R(2, 5, 3)),
                                                                  L.t(R(2, 5, 4))),
    "sdpa_mask_shape": lambda L: L.F.scaled_dot_product_attention(
        L.t(R(2, 3, 4)), L.t(R(2, 5, 4)), L.t(R(2, 5, 4)), attn_mask=L.t(np.ones((4, 5), bool))),
    "linear_shape": lambda L: L.F.linear(L.t(R(2, 3)), L.t(R(4, 2))),
    "embedding_float_indices": lambda L: L.F.embedding(L.t(np.array([0.0, 1.0])),
                                                       L.t(R(3, 2))),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_inputs_raise_in_both(name):
    fn = BAD[name]
    with pytest.raises(Exception):  # noqa: B017 - torch's own exception types vary
        fn(Lib("torch", np.float32, None))
    with pytest.raises((ValueError, TypeError)):
        fn(Lib("dlsys", np.float32, "cpu"))

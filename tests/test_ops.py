"""Every op against float64 central differences (gradcheck), over several shapes including
broadcasting, size-1 dims and non-contiguous inputs, on every device (the CPU, and CUDA on a
GPU or under Numba's CUDA simulator); second order for a few ops."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import gradcheck, gradgradcheck

import dlsys as ds
import dlsys.nn.functional as F

TOL = 1e-6
DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


def on(x, data, **kw):
    """A tensor of ``data`` on x's device (index and target tensors inside a checked fn)."""
    return ds.tensor(data, device=x.device, **kw)


def R(*shape, seed=0, low=None):
    rng = np.random.default_rng(seed + 7 * len(shape) + sum(shape))
    a = rng.standard_normal(shape)
    if low is not None:  # keep away from a kink / the domain's edge
        a = np.sign(a) * (np.abs(a) + low) if low > 0 else a
    return a


def P(*shape, seed=0):
    """Positive values (log, sqrt, pow bases)."""
    return np.abs(R(*shape, seed=seed)) + 0.5


def U(*shape, seed=0):
    """Distinct values (max, max_pool ties are measure-zero but keep the margin wide)."""
    n = int(np.prod(shape)) if shape else 1
    rng = np.random.default_rng(seed)
    return (rng.permutation(n).astype(np.float64) * 0.37 - n * 0.1).reshape(shape)


BCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((), (2, 3)),
         ((2, 3), (1, 1))]

CASES = []


def case(name, fn, *arrays, **kw):
    CASES.append(pytest.param(fn, arrays, kw, id=name))


for sa, sb in BCAST:
    tag = f"{sa}x{sb}"
    case(f"add{tag}", lambda a, b: a + b, R(*sa), R(*sb, seed=1))
    case(f"sub{tag}", lambda a, b: a - b, R(*sa), R(*sb, seed=1))
    case(f"mul{tag}", lambda a, b: a * b, R(*sa), R(*sb, seed=1))
    case(f"div{tag}", lambda a, b: a / b, R(*sa), P(*sb, seed=1))
    case(f"pow{tag}", lambda a, b: a ** b, P(*sa), R(*sb, seed=1))
    case(f"maximum{tag}", lambda a, b: ds.maximum(a, b), R(*sa), R(*sb, seed=1))
    case(f"minimum{tag}", lambda a, b: ds.minimum(a, b), R(*sa), R(*sb, seed=1))
    case(f"where{tag}", lambda a, b: ds.where(a > 0, a, b), R(*sa, low=0.1), R(*sb, seed=1))

for shp in [(3, 4), (2, 1, 3), (5,), ()]:
    tag = str(shp)
    case(f"add_scalar{tag}", lambda a: a + 2 - (1.5 - a), R(*shp))
    case(f"mul_scalar{tag}", lambda a: a * 3 / 2, R(*shp))
    case(f"rdiv_scalar{tag}", lambda a: 2 / a, P(*shp))
    case(f"pow_scalar{tag}", lambda a: a ** 2 + a ** 0.5 + a ** -1.5, P(*shp))
    case(f"rpow_scalar{tag}", lambda a: 2 ** a, R(*shp))
    case(f"neg{tag}", lambda a: -a, R(*shp))
    case(f"exp{tag}", lambda a: a.exp(), R(*shp))
    case(f"log{tag}", lambda a: a.log(), P(*shp))
    case(f"sqrt{tag}", lambda a: a.sqrt(), P(*shp))
    case(f"relu{tag}", lambda a: a.relu(), R(*shp, low=0.1))
    case(f"tanh{tag}", lambda a: a.tanh(), R(*shp))
    case(f"sigmoid{tag}", lambda a: a.sigmoid(), R(*shp))
    case(f"gelu{tag}", lambda a: F.gelu(a), R(*shp))
    case(f"abs{tag}", lambda a: a.abs(), R(*shp, low=0.1))

for shp, axis, kd in [((3, 4), None, False), ((3, 4), 0, False), ((2, 3, 4), (0, 2), True),
                      ((2, 3, 4), -1, False), ((1, 3, 1), 1, True), ((4,), 0, False)]:
    tag = f"{shp}_{axis}_{kd}"
    case(f"sum{tag}", lambda a, axis=axis, kd=kd: a.sum(axis, keepdims=kd), R(*shp))
    case(f"mean{tag}", lambda a, axis=axis, kd=kd: a.mean(axis, keepdims=kd), R(*shp))
    case(f"amax{tag}", lambda a, axis=axis, kd=kd: a.amax(axis, keepdims=kd), U(*shp))
    case(f"amin{tag}", lambda a, axis=axis, kd=kd: a.amin(axis, keepdim=kd), U(*shp))
    if isinstance(axis, int):
        case(f"max_dim{tag}", lambda a, axis=axis, kd=kd: a.max(axis, kd).values, U(*shp))
        case(f"min_dim{tag}", lambda a, axis=axis, kd=kd: a.min(dim=axis, keepdim=kd)[0],
             U(*shp))
    else:
        case(f"max{tag}", lambda a: a.max() + a.min(), U(*shp))
    case(f"var{tag}", lambda a, axis=axis, kd=kd: a.var(axis, keepdims=kd, correction=1),
         R(*shp) + 3 * (shp == (1, 3, 1)))

case("clamp", lambda a: a.clamp(-0.5, 0.7) + abs(a).clip(min=0.2), R(4, 5))
case("amax_ties_split", lambda a: a.amax(1), np.array([[1.0, 3.0, 3.0], [2.0, 0.5, 2.0]]))
case("reshape", lambda a: a.reshape(4, -1) * 1.0, R(2, 3, 2))
case("reshape_flat", lambda a: a.reshape(-1), R(3, 4))
case("permute", lambda a: a.permute(2, 0, 1), R(2, 3, 4))
case("T_3d", lambda a: a.T, R(2, 3, 4))
case("transpose_swap", lambda a: a.transpose(0, 2), R(2, 3, 4))
case("T", lambda a: a.T, R(3, 4))
case("broadcast_to", lambda a: a.broadcast_to(2, 3, 4), R(3, 1))
case("broadcast_to_lead", lambda a: a.broadcast_to((2, 5)), R(5))
case("flatten", lambda a: a.flatten(1), R(2, 3, 2))
case("squeeze_unsqueeze", lambda a: a.squeeze(1).unsqueeze(0), R(3, 1, 2))
case("contiguous", lambda a: a.contiguous(), R(3, 4))
case("getitem_slices", lambda a: a[1:, ::2], R(3, 5))
case("getitem_int_none_ellipsis", lambda a: a[1, None, ..., -1], R(3, 4, 2))
case("getitem_negstep", lambda a: a[::-1, 1:3], R(4, 4))
case("getitem_gather_repeats", lambda a: a[np.array([0, 2, 0, 1, 0])], R(3, 4))
case("getitem_gather_axis1", lambda a: a[:, np.array([1, 1, 3])], R(2, 4))
case("getitem_tensor_index", lambda a: a[on(a, [2, 2, 0])], R(3, 2))
case("getitem_mask", lambda a: a[on(a, np.array([True, False, True]))], R(3, 2))
case("stack0", lambda a, b: ds.stack([a, b, a]), R(2, 3), R(2, 3, seed=1))
case("stack_last", lambda a, b: ds.stack([a, b], axis=-1), R(2, 3), R(2, 3, seed=1))
case("concat0", lambda a, b: ds.concatenate([a, b]), R(2, 3), R(1, 3, seed=1))
case("concat1", lambda a, b: ds.concatenate([a, b, a], axis=1), R(2, 3), R(2, 1, seed=1))

for sa, sb in [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 2)), ((2, 1, 3, 4), (5, 4, 2)),
               ((4,), (4, 3)), ((3, 4), (4,)), ((2, 3, 4), (4, 2)), ((1, 4), (4, 1))]:
    case(f"matmul{sa}@{sb}", lambda a, b: a @ b, R(*sa), R(*sb, seed=1))

case("linear_bias", lambda x, w, b: F.linear(x, w, b), R(4, 3), R(5, 3, seed=1), R(5, seed=2))
case("linear_nobias", lambda x, w: F.linear(x, w), R(4, 3), R(2, 3, seed=1))
case("linear_3d", lambda x, w, b: F.linear(x, w, b), R(2, 3, 3), R(2, 3, seed=1), R(2, seed=2))

for stride, pad, bias in [(1, 0, True), (2, 1, False), (1, 1, True), ((2, 1), (0, 1), True)]:
    tag = f"s{stride}_p{pad}_b{bias}"
    if bias:
        case(f"conv2d_{tag}", lambda x, w, b, s=stride, p=pad: F.conv2d(x, w, b, s, p),
             R(2, 2, 5, 4), R(3, 2, 3, 2, seed=1), R(3, seed=2))
    else:
        case(f"conv2d_{tag}", lambda x, w, s=stride, p=pad: F.conv2d(x, w, None, s, p),
             R(2, 2, 5, 4), R(3, 2, 3, 2, seed=1))

case("max_pool2d_2", lambda x: F.max_pool2d(x, 2), U(2, 2, 4, 4))
case("max_pool2d_3s1", lambda x: F.max_pool2d(x, 3, 1), U(1, 2, 4, 5))
case("avg_pool2d_2", lambda x: F.avg_pool2d(x, 2), R(2, 2, 4, 4))
case("avg_pool2d_3s2", lambda x: F.avg_pool2d(x, (3, 2), (2, 1)), R(1, 2, 5, 4))

for shp, axis in [((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1), ((4,), 0)]:
    tag = f"{shp}_{axis}"
    case(f"softmax{tag}", lambda x, axis=axis: F.softmax(x, axis), R(*shp))
    case(f"log_softmax{tag}", lambda x, axis=axis: F.log_softmax(x, axis), R(*shp))
    case(f"logsumexp{tag}", lambda x, axis=axis: F.logsumexp(x, axis), R(*shp))

case("cross_entropy", lambda x: F.cross_entropy(x, on(x, [1, 0, 3, 1])), R(4, 5))
case("cross_entropy_n1", lambda x: F.cross_entropy(x, on(x, [2])), R(1, 3))
case("mse_loss", lambda a, b: F.mse_loss(a, b), R(3, 4), R(3, 4, seed=1))
case("layer_norm", lambda x, w, b: F.layer_norm(x, 4, w, b, 1e-5), R(3, 4), R(4, seed=1),
     R(4, seed=2))
case("layer_norm_2d", lambda x: F.layer_norm(x, (2, 3), None, None, 1e-5), R(2, 2, 3))
case("embedding", lambda w: F.embedding(on(w, [[0, 2], [2, 2]]), w), R(3, 4))


def _dropout(x):
    ds.manual_seed(123)  # the same mask at every evaluation
    return F.dropout(x, 0.4, True)


case("dropout", _dropout, R(4, 5))
case("dropout_eval", lambda x: F.dropout(x, 0.4, False), R(4, 5))
case("chain_mlp", lambda x, w1, w2: F.cross_entropy(F.linear(F.linear(x, w1).relu(), w2),
                                                    on(x, [0, 2, 1])),
     R(3, 4), R(5, 4, seed=1), R(3, 5, seed=2))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays,kw", CASES)
def test_gradcheck(fn, arrays, kw, device):
    assert gradcheck(fn, *arrays, device=device, **kw) < TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays,kw", CASES)
def test_gradcheck_noncontiguous(fn, arrays, kw, device):
    assert gradcheck(fn, *arrays, noncontig=True, device=device, **kw) < TOL


SECOND = [
    pytest.param(lambda a: a.tanh(), (R(3, 4),), id="tanh"),
    pytest.param(lambda a: a.exp(), (R(3, 4),), id="exp"),
    pytest.param(lambda a: a.sigmoid(), (R(3, 4),), id="sigmoid"),
    pytest.param(lambda a: F.gelu(a), (R(3, 4),), id="gelu"),
    pytest.param(lambda a: a.relu() * a, (R(3, 4, low=0.1),), id="relu_times_x"),
    pytest.param(lambda a, b: a * b * a, (R(3, 4), R(4, seed=1)), id="mul_bcast"),
    pytest.param(lambda a, b: a / b, (R(3, 4), P(3, 4, seed=1)), id="div"),
    pytest.param(lambda a: a.log() + a.sqrt() + a ** 3, (P(2, 3),), id="log_sqrt_pow"),
    pytest.param(lambda a, b: (a @ b).tanh(), (R(2, 3), R(3, 4, seed=1)), id="matmul"),
    pytest.param(lambda x: F.log_softmax(x, -1), (R(3, 4),), id="log_softmax"),
    pytest.param(lambda x: F.softmax(x, 0), (R(3, 4),), id="softmax"),
    pytest.param(lambda x: F.logsumexp(x, 1), (R(3, 4),), id="logsumexp"),
    pytest.param(lambda x: F.cross_entropy(x, on(x, [1, 0, 2])), (R(3, 4),),
                 id="cross_entropy"),
    pytest.param(lambda x: F.avg_pool2d(x, 2).tanh(), (R(1, 2, 4, 4),), id="avg_pool"),
    pytest.param(lambda x: F.max_pool2d(x.tanh(), 2), (U(1, 1, 4, 4) / 5,), id="max_pool"),
    pytest.param(lambda x: (x[np.array([0, 0, 2])] ** 2).sum(0), (R(3, 2),), id="gather"),
    pytest.param(lambda x, w: F.conv2d(x, w).tanh(), (R(1, 2, 4, 4), R(2, 2, 2, 2, seed=1)),
                 id="conv2d"),
    pytest.param(lambda x: x.amax(1) * x.sum(1), (U(2, 3),), id="amax_sum"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays", SECOND)
def test_second_order(fn, arrays, device):
    assert gradgradcheck(fn, *arrays, device=device) < 1e-5


def test_float32_matches_float64():
    x64 = R(4, 6)
    w64 = R(3, 6, seed=1)
    grads = []
    for dt in (ds.float32, ds.float64):
        x = ds.tensor(x64, dtype=dt, requires_grad=True)
        w = ds.tensor(w64, dtype=dt, requires_grad=True)
        F.cross_entropy(F.linear(x, w).tanh(), ds.tensor([0, 1, 2, 1])).backward()
        assert x.grad.dtype == dt and w.grad.dtype == dt
        grads.append(np.asarray(w.grad, dtype=np.float64))
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_cast_gradient():
    x = ds.tensor(R(3), dtype=ds.float64, requires_grad=True)
    y = x.to(ds.float32)
    assert y.dtype == ds.float32 and y.requires_grad
    (y * ds.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.dtype == ds.float64
    np.testing.assert_array_equal(np.asarray(x.grad), [1.0, 2.0, 3.0])
    assert not x.to(ds.int64).requires_grad


def test_float16_forward_backward():
    x = ds.tensor(R(3, 4), dtype=ds.float16, requires_grad=True)
    y = (x * 2).relu().sum()
    y.backward()
    assert y.dtype == ds.float16 and x.grad.dtype == ds.float16
    np.testing.assert_allclose(np.asarray(x.grad), 2.0 * (np.asarray(x) > 0))


def _conv_ref(xi, wi):
    pad = np.pad(xi, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros((2, 4, 6, 5))
    for i in range(6):
        for j in range(5):
            ref[:, :, i, j] = np.einsum("nchw,ochw->no", pad[:, :, i:i + 3, j:j + 3], wi)
    return ref


def _log_probs(a):
    return a - np.log(np.exp(a).sum(1, keepdims=True))


_A, _B = R(3, 4), R(4, 5, seed=1)
_XI, _WI = R(2, 3, 6, 5), R(4, 3, 3, 3, seed=2)
FORWARD = {  # name: (dlsys fn of (x, y) float64 tensors of _A, _B; numpy reference)
    "matmul": (lambda x, y: x @ y, _A @ _B),
    "softmax": (lambda x, y: F.softmax(x, 1), np.exp(_A) / np.exp(_A).sum(1, keepdims=True)),
    "logsumexp_large": (lambda x, y: F.logsumexp(x * 100, 1),
                        np.log(np.exp(_A * 100 - (_A * 100).max(1, keepdims=True)).sum(1))
                        + (_A * 100).max(1)),
    "max": (lambda x, y: x.max(0).values, _A.max(0)),
    "argmax": (lambda x, y: x.argmax(1), _A.argmax(1)),
    "argmax_flat": (lambda x, y: x.argmax(), _A.argmax()),
    "cross_entropy": (lambda x, y: F.cross_entropy(x, on(x, [0, 3, 1])),
                      -_log_probs(_A)[[0, 1, 2], [0, 3, 1]].mean()),
    "conv2d_padded": (lambda x, y: F.conv2d(on(x, _XI, dtype=ds.float64),
                                            on(x, _WI, dtype=ds.float64), stride=1, padding=1),
                      _conv_ref(_XI, _WI)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(FORWARD))
def test_forward_values_match_numpy(name, device):
    fn, ref = FORWARD[name]
    x = ds.tensor(_A, dtype=ds.float64, device=device)
    y = ds.tensor(_B, dtype=ds.float64, device=device)
    out = fn(x, y)
    assert out.dtype == (ds.int64 if name.startswith("argmax") else ds.float64)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-12)


def test_dropout_scaling_and_seed():
    x = ds.ones(200, 50)
    ds.manual_seed(5)
    y1 = np.asarray(F.dropout(x, 0.3, True)).copy()
    ds.manual_seed(5)
    y2 = np.asarray(F.dropout(x, 0.3, True))
    np.testing.assert_array_equal(y1, y2)
    assert set(np.unique(y1).tolist()) <= {0.0, np.float32(1 / 0.7)}
    assert abs((y1 == 0).mean() - 0.3) < 0.03
    assert F.dropout(x, 0.3, False) is x
    assert np.asarray(F.dropout(x, 1.0, True)).sum() == 0
    with pytest.raises(ValueError):
        F.dropout(x, 1.5, True)

"""gradcheck (float64 central differences, tests/gradcheck.py) of the ops added for PyTorch's
API (DESIGN 0.2), with broadcasting and non-contiguous inputs, on every device (the CPU, and
CUDA on a GPU or under Numba's CUDA simulator); second order for a few."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import gradcheck, gradgradcheck

import dlsys as ds
import dlsys.nn.functional as F

TOL = 1e-6
DEVICES = ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


def on(x, data, **kw):
    return ds.tensor(data, device=x.device, **kw)


def R(*shape, seed=0):
    return np.random.default_rng(seed + 7 * len(shape) + sum(shape)).standard_normal(shape)


def P(*shape, seed=0):
    return np.abs(R(*shape, seed=seed)) + 0.5


def U(*shape, seed=0):
    """Distinct values, spaced 0.37 apart (no ties, no kinks within eps)."""
    n = int(np.prod(shape)) if shape else 1
    return (np.random.default_rng(seed).permutation(n) * 0.37 - n * 0.1).reshape(shape)


CASES = []


def case(name, fn, *arrays):
    CASES.append(pytest.param(fn, arrays, id=name))


# elementwise
case("sin_cos", lambda a: a.sin() + a.cos() * 2, R(3, 4))
case("erf", lambda a: a.erf(), R(3, 4))
case("log1p", lambda a: a.log1p(), P(3, 4))
case("clamp_scalars", lambda a: a.clamp(-0.5, 0.6) + a.clamp(min=0.2), U(3, 4))
case("clamp_tensor_bounds", lambda a, lo, hi: a.clamp(lo, hi), U(3, 4), U(4, seed=1) - 2,
     U(3, 1, seed=2) + 1)
case("pow_tensor_bcast", lambda a, b: a ** b, P(2, 3), R(3, seed=1))
case("where_scalar_branch", lambda a: ds.where(a > 0, a * 2, 0.5), U(3, 4))
case("silu", lambda a: F.silu(a), R(3, 4))
case("softplus", lambda a: F.softplus(a * 3) + F.softplus(a * 10, beta=0.5, threshold=2.0),
     U(3, 4))
case("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), R(3, 4))
# reductions
for dim, kd in [(None, False), (1, False), ((0, 2), True), (-1, True)]:
    tag = f"{dim}_{kd}"
    case(f"var{tag}", lambda a, d=dim, k=kd: a.var(d, keepdim=k), R(2, 3, 4))
    case(f"std{tag}", lambda a, d=dim, k=kd: a.std(dim=d, correction=0, keepdim=k), R(2, 3, 4))
    case(f"norm2{tag}", lambda a, d=dim, k=kd: a.norm(dim=d, keepdim=k), R(2, 3, 4))
    case(f"norm3{tag}", lambda a, d=dim, k=kd: a.norm(3, d, k), R(2, 3, 4))
    case(f"logsumexp{tag}", lambda a, d=dim, k=kd: a.logsumexp(d if d is not None else 0, k),
         R(2, 3, 4))
case("norm1_inf", lambda a: a.norm(1, 1) + a.norm(float("inf"), 0).sum(), U(3, 4))
case("prod_dim", lambda a: a.prod(1), R(3, 5))
case("prod_all_odd", lambda a: a.prod(), R(7) * 0.5 + 1.0)
case("prod_with_zeros", lambda a: a.prod(0, keepdim=True), np.array([[0.0, 2.0], [3.0, 0.0],
                                                                      [0.5, 0.0]]))
case("cumsum", lambda a: a.cumsum(1) + a.cumsum(dim=0), R(3, 4))
case("max_dim_min_dim", lambda a: a.max(1).values + a.min(dim=1, keepdim=False)[0], U(3, 4))
case("softmax_0d", lambda a: F.softmax(a, 0) * a + F.log_softmax(a, -1), R())
# shapes and views
case("transpose", lambda a: a.transpose(0, 2) * 1.0, R(2, 3, 4))
case("movedim_mT", lambda a: a.movedim(0, -1) + a.mT.permute(1, 2, 0), R(2, 3, 3))
case("expand_-1", lambda a: a.expand(2, -1, 4), R(3, 1))
case("repeat", lambda a: a.repeat(2, 1, 3), R(3, 2))
case("flip", lambda a: a.flip(0) + a.flip((0, 1)), R(3, 4))
case("roll", lambda a: a.roll(1, 1) + a.roll((2, -1), (0, 1)) + a.roll(5), R(3, 4))
case("split_chunk_unbind", lambda a: ds.cat([p * (i + 1) for i, p in enumerate(a.split(2, 1))],
                                            1) + ds.stack(a.unbind(0)) * a.chunk(3, 0)[0],
     R(3, 5))
case("split_sections", lambda a: a.split([1, 3], 1)[1], R(2, 4))
case("view_clone", lambda a: a.contiguous().view(4, 3).clone() * 2 + a.reshape(3, 2, 2).sum(),
     R(3, 4))
case("cat_dim_kw", lambda a, b: ds.cat([a, b], dim=1), R(2, 3), R(2, 1, seed=1))
# indexing
case("getitem_int_then_array", lambda a: a[1, :, np.array([0, 2, 2])], R(2, 3, 4))
case("getitem_none_int_array", lambda a: a[None, 0, :, np.array([1, 3])], R(2, 3, 4))
case("getitem_mask_int", lambda a: a[0, np.array([True, False, True])], R(2, 3, 4))
case("gather", lambda a: a.gather(1, on(a, [[0, 0, 2], [1, 2, 1]])), R(2, 3))
case("gather_dim0_small", lambda a: a.gather(0, on(a, [[1, 0]])), R(3, 4))
case("scatter", lambda a, s: a.scatter(1, on(a, [[0, 2], [1, 0]]), s), R(2, 4), R(2, 3, seed=1))
case("scatter_value", lambda a: a.scatter(0, on(a, [[1, 0, 1]]), value=2.5), R(2, 3))
case("scatter_add", lambda a, s: a.scatter_add(1, on(a, [[0, 0], [2, 0]]), s), R(2, 3),
     R(2, 2, seed=1))
case("index_select", lambda a: a.index_select(1, on(a, [2, 0, 2])), R(2, 3))
case("select_narrow", lambda a: a.select(1, -1) + a.narrow(1, 1, 2).sum(1), R(3, 4))
case("masked_fill", lambda a, v: a.masked_fill(on(a, [True, False, True, False]), 0.0)
     + a.masked_fill(on(a, [[True], [False], [True]]), v), R(3, 4), R())
case("tril_triu", lambda a: a.tril() + a.triu(1) * 2 + a.tril(-1), R(2, 3, 4))
case("sort", lambda a: a.sort(1).values + a.sort(0, descending=True)[0], U(3, 4))
case("topk", lambda a: a.topk(2).values.sum() + a.topk(1, dim=0, largest=False)[0].sum(),
     U(3, 4))
# einsum
for eq, shapes in [("ij,jk->ik", [(3, 4), (4, 2)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 2)]),
                   ("bhqd,bhkd->bhqk", [(1, 2, 3, 2), (1, 2, 4, 2)]), ("i,j->ij", [(3,), (2,)]),
                   ("i,i->", [(4,), (4,)]), ("ii->i", [(3, 3)]), ("ij->", [(3, 4)]),
                   ("...ij,...jk->...ik", [(2, 3, 4), (4, 2)]), ("ij,ij->ij", [(2, 3), (1, 3)]),
                   ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]), ("bij->bji", [(2, 3, 4)])]:
    case(f"einsum_{eq}", lambda *xs, eq=eq: ds.einsum(eq, *xs),
         *[R(*s, seed=i) for i, s in enumerate(shapes)])
# F.pad, matmul edge cases
case("pad_constant", lambda a: F.pad(a, (1, 2, 0, 1), value=0.5), R(2, 3))
case("pad_crop", lambda a: F.pad(a, (-1, 1)), R(2, 4))
for mode in ("reflect", "replicate", "circular"):
    case(f"pad_{mode}", lambda a, m=mode: F.pad(a, (2, 1, 1, 0), mode=m), R(1, 3, 4))
case("matmul_1d_1d", lambda a, b: a @ b, R(4), R(4, seed=1))
case("matmul_1d_3d", lambda a, b: a @ b, R(4), R(2, 4, 3, seed=1))
case("matmul_empty", lambda a, b: (a @ b).sum() + a.sum(), R(3, 0), R(0, 2, seed=1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays", CASES)
def test_gradcheck(fn, arrays, device):
    assert gradcheck(fn, *arrays, device=device) < TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays", CASES)
def test_gradcheck_noncontiguous(fn, arrays, device):
    assert gradcheck(fn, *arrays, noncontig=True, device=device) < TOL


SECOND = [
    pytest.param(lambda a: a.prod(1), (R(3, 4),), id="prod"),
    pytest.param(lambda a: a.prod(0), (np.array([[0.0, 2.0], [3.0, 0.5]]),), id="prod_zero"),
    pytest.param(lambda a: a.norm(dim=1), (R(3, 4),), id="norm"),
    pytest.param(lambda a: a.std(0), (R(3, 4),), id="std"),
    pytest.param(lambda a: a.cumsum(1) ** 2, (R(3, 4),), id="cumsum"),
    pytest.param(lambda a: F.softplus(a * 2), (R(3, 4),), id="softplus"),
    pytest.param(lambda a: (a.gather(1, on(a, [[0, 0], [1, 2]])) ** 2), (R(2, 3),),
                 id="gather"),
    pytest.param(lambda a, b: ds.einsum("ij,jk->ik", a, b).tanh(), (R(2, 3), R(3, 2, seed=1)),
                 id="einsum"),
    pytest.param(lambda a: F.pad(a, (1, 1), mode="reflect") ** 3, (R(2, 3),), id="pad"),
    pytest.param(lambda a: a.sin() * a.erf(), (R(3, 4),), id="sin_erf"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn,arrays", SECOND)
def test_second_order(fn, arrays, device):
    assert gradgradcheck(fn, *arrays, device=device) < 1e-5

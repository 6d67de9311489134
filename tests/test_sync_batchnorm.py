"""col.SyncBatchNorm and col.convert_sync_batchnorm.

In one process: the float64 gradcheck of the synchronised function, P = 1 bitwise equal to
plain BatchNorm, conversion, bad input. On 2 and 3 ranks (tests/ranks/sync_batchnorm.py):
equivalence with plain BatchNorm in one process over every rank's samples (uneven per-rank
batch sizes), running statistics bitwise identical across ranks, and central differences of
the sum of all ranks' losses.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import gradcheck
from mpi_harness import run_ranks

import collective as col
import dlsys as ds
from collective.sync_batchnorm import sync_batch_norm


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2), (2, 3, 2, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck_float64(shape, affine):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 3 + 2
    C = shape[1]
    if affine:
        w, b = rng.standard_normal(C), rng.standard_normal(C)
        err = gradcheck(lambda x, w, b: sync_batch_norm(x, w, b)[0], x, w, b)
    else:
        err = gradcheck(lambda x: sync_batch_norm(x)[0], x)
    assert err < 1e-7, err


@pytest.mark.skipif(not ds.cuda_is_available(), reason="no CUDA GPU and the simulator is off")
def test_gradcheck_cuda():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 2, 2)) + 1, rng.standard_normal(2), rng.standard_normal(2)
    err = gradcheck(lambda x, w, b: sync_batch_norm(x, w, b)[0], x, w, b, device="cuda")
    assert err < 1e-7, err


def test_returns_the_global_statistics():
    x = np.random.default_rng(1).standard_normal((6, 2, 3))
    y, mean, var, n = sync_batch_norm(ds.tensor(x))
    assert n == 18
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(y.numpy(), (x - x.mean(axis=(0, 2), keepdims=True))
                               / np.sqrt(x.var(axis=(0, 2), keepdims=True) + 1e-5), atol=1e-12)


@pytest.mark.parametrize("cls,shape", [(ds.nn.BatchNorm1d, (8, 4)), (ds.nn.BatchNorm1d, (8, 4, 3)),
                                       (ds.nn.BatchNorm2d, (6, 4, 3, 3))])
def test_one_rank_is_plain_batchnorm_bitwise(cls, shape):
    rng = np.random.default_rng(2)
    plain = cls(4)
    sync = col.convert_sync_batchnorm(cls(4))
    assert isinstance(sync, col.SyncBatchNorm)
    for m in (plain, sync):
        m.weight.data = ds.tensor(np.linspace(0.5, 2, 4, dtype=np.float32))
    for step in range(3):
        x = rng.standard_normal(shape).astype(np.float32) + step
        outs = []
        for m in (plain, sync):
            xt = ds.tensor(x, requires_grad=True)
            y = m(xt)
            (y * y).sum().backward()
            outs.append((y.numpy(), xt.grad.numpy(), m.weight.grad.numpy(),
                         m.bias.grad.numpy(), m.running_mean.numpy(), m.running_var.numpy()))
            m.zero_grad()
        for a, b in zip(*outs, strict=True):
            np.testing.assert_array_equal(a, b)
    plain.eval()
    sync.eval()
    x = ds.tensor(rng.standard_normal(shape).astype(np.float32))
    np.testing.assert_array_equal(plain(x).numpy(), sync(x).numpy())
    assert int(sync.num_batches_tracked.item()) == 3


def test_convert_recursive_shares_parameters_buffers_and_training_flag():
    model = ds.nn.Sequential(
        ds.nn.Conv2d(1, 4, 3), ds.nn.BatchNorm2d(4, momentum=0.3, eps=1e-3),
        ds.nn.Sequential(ds.nn.Flatten(), ds.nn.Linear(4, 5), ds.nn.BatchNorm1d(5, affine=False)),
        ds.nn.LayerNorm(5))
    model[2][2].eval()
    bn2d, bn1d = model[1], model[2][2]
    opt = ds.optim.SGD(model.parameters(), lr=0.1)
    keys = list(model.state_dict())
    out = col.SyncBatchNorm.convert_sync_batchnorm(model)
    assert out is model
    s2, s1 = model[1], model[2][2]
    assert type(s2) is col.SyncBatchNorm and type(s1) is col.SyncBatchNorm
    assert isinstance(model[3], ds.nn.LayerNorm)
    assert (s2.eps, s2.momentum, s2.num_features, s2.affine) == (1e-3, 0.3, 4, True)
    assert s1.affine is False and s1.weight is None
    assert s2.weight is bn2d.weight and s2.bias is bn2d.bias
    assert s2.running_mean is bn2d.running_mean and s1.running_var is bn1d.running_var
    assert s2.training and not s1.training
    assert list(model.state_dict()) == keys
    assert opt.param_groups[0]["params"][2] is s2.weight  # the optimizer still holds them
    # a BatchNorm as the root is replaced; a SyncBatchNorm is left as it is
    root = col.convert_sync_batchnorm(ds.nn.BatchNorm1d(3))
    assert type(root) is col.SyncBatchNorm
    assert col.convert_sync_batchnorm(root) is root


def test_convert_keeps_dtype():
    bn = ds.nn.BatchNorm2d(3, dtype=ds.float64)
    s = col.convert_sync_batchnorm(bn)
    assert s.weight.dtype == np.float64 and s.running_var.dtype == np.float64


def test_bad_input():
    bn = col.SyncBatchNorm(3)
    with pytest.raises(ValueError, match=r"2-D or 3-D or 4-D or 5-D.*shape \(3,\)"):
        bn(ds.zeros(3))
    with pytest.raises(ValueError, match=r"3 channels at axis 1, got shape \(2, 4, 5\)"):
        bn(ds.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="more than 1 value per channel.*got 1"):
        sync_batch_norm(ds.zeros(1, 3))
    with pytest.raises(ValueError, match="not both"):
        col.SyncBatchNorm(3, process_set=object(), process_group=object())


# -- on 2 and 3 ranks ---------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[2, 3])
def ranks_job(request):
    res = run_ranks("sync_batchnorm", request.param, timeout=150)
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank()
    assert sorted(reports) == list(range(request.param)), res.output[-4000:]
    return request.param, reports


def test_equivalence_with_one_process_over_all_samples(ranks_job):
    P, reports = ranks_job
    assert reports[0]["sizes"] == [3, 5, 1, 4][:P]  # uneven per-rank batches
    for rank, rep in reports.items():
        for case, res in rep["results"].items():
            if case == "gradcheck":
                continue
            tol = 1e-10 if "float64" in case else 1e-4
            for what, err in res["err"].items():
                assert err < tol, (P, rank, case, what, err)
            assert res["tracked"] == 4


def test_running_statistics_bitwise_identical_across_ranks(ranks_job):
    P, reports = ranks_job
    for case in reports[0]["results"]:
        if case != "gradcheck":
            assert len({reports[r]["results"][case]["digest"] for r in range(P)}) == 1, case


def test_total_loss_central_differences(ranks_job):
    P, reports = ranks_job
    for rank, rep in reports.items():
        assert rep["results"]["gradcheck"] < 1e-7, (rank, rep["results"]["gradcheck"])

"""Buckets in the node's shared window (collective/shared_buckets.py, engines.SharedEngine):
the Numba kernel against its numpy reference, training against one process and against the
rings at P = 2 and 3 (guarantees 1, 2, 5), the fallbacks, and a rank failing mid-step."""

from __future__ import annotations

import numpy as np
import pytest
from mpi_harness import run_mpi, run_ranks

from collective.shared_buckets import reduce_into_all, reducer_for, sum_into_all


@pytest.mark.parametrize("P", [2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("divisor", [0, 1])
def test_kernel_is_bitwise_its_numpy_reference(P, dtype, divisor):
    rng = np.random.default_rng(P)
    n = 5000 + 3  # several blocks, uneven segments
    xs = [(rng.standard_normal(n) * 3).astype(dtype) for _ in range(P)]
    got, want = tuple(x.copy() for x in xs), [x.copy() for x in xs]
    bounds = np.linspace(0, n, P + 1).astype(int)
    for k in range(P):
        sum_into_all(got, k, bounds[k], bounds[k + 1], divisor * P)
        reduce_into_all(want, k, bounds[k], bounds[k + 1], np.add, divisor * P)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.view(np.uint8), w.view(np.uint8))
    # the reference is the ring's documented order: x_k + (x_{k-1} + ... + x_{k+1})
    k, lo, hi = 0, bounds[0], bounds[1]
    acc = xs[1 % P][lo:hi].copy()
    for j in range(2, P + 1):
        acc = xs[(k + j) % P][lo:hi] + acc
    if divisor:
        acc = np.true_divide(acc, P)
    assert np.array_equal(got[0][lo:hi], acc) and np.array_equal(got[-1][lo:hi], acc)


def test_other_dtypes_and_ops_take_the_numpy_path():
    assert reducer_for(np.float32, np.add, 2) is sum_into_all
    assert reducer_for(np.float64, np.add, 4) is sum_into_all
    assert reducer_for(np.float64, np.add, 5) is not sum_into_all
    assert reducer_for(np.float16, np.add, 2) is not sum_into_all
    assert reducer_for(np.float64, np.maximum, 2) is not sum_into_all
    xs = [np.array([1, 5, 2], np.float16), np.array([4, 0, 2], np.float16)]
    reducer_for(np.float16, np.maximum, 2)(xs, 0, 0, 3, 0)
    assert xs[0].tolist() == xs[1].tolist() == [4, 5, 2]


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 3])
def test_shared_buckets_train_as_one_process_and_as_the_rings(nprocs, tmp_path):
    res = run_ranks("shared_buckets", nprocs, timeout=240, tmp_path=tmp_path)
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank()
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    for rank, rep in reports.items():
        for name in ("plain", "adam32", "fp16", "accumulate", "predivide", "sum"):
            case = rep[name]
            assert case["engine"] == "shared" and all(case["shared"]), (rank, name, case)
            assert case["agree"], (rank, name, case)
            assert case["as_rings"], (rank, name, "differs from the rings' bits")
            tol = {"float64": 1e-10, "float32": 1e-5}["float32" if name in ("adam32", "fp16")
                                                      else "float64"]
            if name == "fp16":
                tol = 2e-2  # gradients rounded to float16 on the wire
            assert case["err"] < tol, (rank, name, case)
        assert all(rep["join"]["shared"]) and rep["join"]["agree"], (rank, rep["join"])


FALLBACK = """
import collective as col
import dlsys as ds
col.init()
p = ds.tensor([1.0, 2.0, 3.0], requires_grad=True)
opt = col.DistributedOptimizer(ds.optim.SGD([p], lr=0.0), op=col.Sum, overlap=OVERLAP)
(p * (col.rank() + 1.0)).sum().backward()
opt.synchronize()
report(engine=opt._overlap, shared=[b.shared for b in opt.buckets], grad=p.grad.numpy().tolist())
"""


@pytest.mark.mpi
@pytest.mark.parametrize("overlap, env, engine", [
    ('"auto"', {"COLLECTIVE_SHM": "0"}, "nonblocking"),
    ('"shared"', {"COLLECTIVE_SHM": "0"}, "nonblocking"),
    ('"auto"', {}, "shared"),
    ('"nonblocking"', {}, "nonblocking"),
])
def test_where_the_window_cannot_be_had_the_buckets_stay_private(overlap, env, engine,
                                                                  tmp_path):
    res = run_mpi(FALLBACK.replace("OVERLAP", overlap), 2, timeout=60, env=env,
                  tmp_path=tmp_path)
    assert res.returncode == 0, res.output[-3000:]
    for rep in res.reports:
        assert rep["engine"] == engine, rep
        assert rep["shared"] == [engine == "shared"], rep
        assert rep["grad"] == [3.0, 3.0, 3.0], rep


MID_STEP = """
import collective as col
import dlsys as ds
col.init()
ps = [ds.tensor([float(i)] * 300000, requires_grad=True) for i in range(3)]  # 3 buckets
opt = col.DistributedOptimizer(ds.optim.SGD(ps, lr=0.1))
assert opt._overlap == "shared"
def fail(param):
    raise RuntimeError("injected failure on rank 1 inside backward")
if col.rank() == 1:
    ps[0].register_post_accumulate_grad_hook(fail)  # after the last bucket was published
for step in range(3):
    opt.zero_grad()
    sum((p * 2.0).sum() for p in ps).backward()
    opt.step()
"""


@pytest.mark.mpi
def test_a_rank_failing_mid_step_ends_the_job_with_its_error(tmp_path):
    res = run_mpi(MID_STEP, 2, timeout=40, tmp_path=tmp_path)
    assert res.returncode != 0, res.output[-3000:]
    assert "injected failure on rank 1 inside backward" in res.output, res.output[-3000:]
    assert res.elapsed < 40, res.elapsed


COLLECTIVE_IN_BACKWARD = """
import numpy as np
import collective as col
import dlsys as ds
col.init()
# 3 buckets; after bucket 0 (the last parameter's gradient) is handed over, the backward of
# the first multiply makes a collective call of its own (as SyncBatchNorm's backward does)
ps = [ds.tensor([float(i + 1)] * 1000, requires_grad=True) for i in range(3)]
opt = col.DistributedOptimizer(ds.optim.SGD(ps, lr=0.1), bucket_cap_mb=0.001)
assert opt._overlap == "shared" and len(opt.buckets) == 3

class SumInBackward(ds.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        col.allreduce(np.ones(4), op=col.Sum)  # the Context's window, mid-step
        return g

for step in range(20):
    opt.zero_grad()
    (SumInBackward.apply(ps[0]).sum() + (ps[1] * 2.0).sum() + (ps[2] * 3.0).sum()).backward()
    opt.step()
report(w=[float(p.numpy()[0]) for p in ps])
"""


@pytest.mark.mpi
def test_collective_calls_during_backward_do_not_disturb_the_step_check(tmp_path):
    """The shared engine's step-check rounds have a window of their own: collective calls a
    model makes during backward (SyncBatchNorm) used to shift them and hang the job."""
    res = run_mpi(COLLECTIVE_IN_BACKWARD, 2, timeout=60, tmp_path=tmp_path, check=True)
    ws = [rep["w"] for rep in res.by_rank().values()]
    assert len(ws) == 2 and ws[0] == ws[1], ws
    assert np.allclose(ws[0], [1 - 20 * 0.1, 2 - 20 * 0.2, 3 - 20 * 0.3]), ws


TWO_OPTIMIZERS_ONE_BACKWARD = """
import numpy as np
import collective as col
import dlsys as ds
col.init()
r = col.rank()
# one loss, an optimizer per parameter group: both optimizers' buckets fill in one backward
# (each hands its bucket 0 over, and posts its step-check round, before either step)
ps = [ds.tensor([float(i + 1)] * 1000, requires_grad=True) for i in range(4)]
a = col.DistributedOptimizer(ds.optim.SGD(ps[:2], lr=0.1), bucket_cap_mb=0.001, overlap=OVERLAP)
b = col.DistributedOptimizer(ds.optim.SGD(ps[2:], lr=0.1), bucket_cap_mb=0.001, overlap=OVERLAP)
assert a._overlap == b._overlap == OVERLAP
for step in range(10):
    a.zero_grad()
    b.zero_grad()
    sum((p * float(i + 1 + r)).sum() for i, p in enumerate(ps)).backward()
    a.step()
    b.step()
report(w=[float(p.numpy()[0]) for p in ps])
"""


@pytest.mark.mpi
@pytest.mark.parametrize("overlap,nprocs", [("shared", 2), ("shared", 3), ("nonblocking", 3),
                                            ("thread", 2), ("inline", 2)])
def test_two_optimizers_stepping_after_one_backward(overlap, nprocs, tmp_path):
    """Both optimizers' reductions are in flight at once. They used to hang or fail: the
    shared engines' step-check rounds overwrote each other in the window, the non-blocking
    rings took each other's messages (one communicator), the thread engines' threads called
    collectives in different orders."""
    code = TWO_OPTIMIZERS_ONE_BACKWARD.replace("OVERLAP", repr(overlap))
    res = run_mpi(code, nprocs, timeout=60, tmp_path=tmp_path, check=True)
    ws = [rep["w"] for rep in res.by_rank().values()]
    mean_extra = (nprocs - 1) / 2  # the gradient of p_i is i + 1 + rank, averaged over ranks
    expected = [i + 1 - 10 * 0.1 * (i + 1 + mean_extra) for i in range(4)]
    assert len(ws) == nprocs and all(w == ws[0] for w in ws), ws
    assert np.allclose(ws[0], expected), (ws[0], expected)

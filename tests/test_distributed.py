"""DistributedOptimizer, buckets, broadcast helpers: DESIGN.md guarantees 1-4.

The MPI checks run as one job per world size (tests/ranks/distributed.py, each rank computing
the single-process reference itself, so the suite stays fast on 2 cores); each test below
asserts one property of that job's reports.
"""

from __future__ import annotations

import numpy as np
import pytest
from mpi_harness import run_ranks

from collective import tuning
from collective.buckets import FIRST_BUCKET_BYTES, assign_buckets
from collective.compression import Compression
from collective.context import TuningTable

# -- no MPI -------------------------------------------------------------------------------------


def test_assign_buckets_reverse_order_and_cap():
    f32 = "f4"
    specs = [(f32, 400), (f32, 400), (f32, 400), (f32, 400), (f32, 400)]
    # reverse registration order, at most 1000 bytes each
    assert assign_buckets(specs, 1000) == [[4, 3], [2, 1], [0]]
    # a huge cap: one bucket; a tiny cap: one parameter per bucket
    assert assign_buckets(specs, 10**9) == [[4, 3, 2, 1, 0]]
    assert assign_buckets(specs, 1) == [[4], [3], [2], [1], [0]]


def test_assign_buckets_one_dtype_per_bucket():
    specs = [("f4", 8), ("f8", 8), ("f4", 8), ("f8", 8)]
    buckets = assign_buckets(specs, 1000)
    assert buckets == [[3, 1], [2, 0]]
    for b in buckets:
        assert len({specs[i][0] for i in b}) == 1
    with pytest.raises(ValueError, match="positive"):
        assign_buckets(specs, 0)


def test_first_bucket_is_small_as_in_ddp():
    # the first bucket of each key holds up to first_cap, the others up to the cap
    specs = [("f4", 400)] * 5 + [("f8", 400)] * 2
    assert assign_buckets(specs, 10**9, first_cap_bytes=800) == [[6, 5], [4, 3], [2, 1, 0]]
    assert FIRST_BUCKET_BYTES == 1 << 20  # DDP's _DEFAULT_FIRST_BUCKET_BYTES


def test_default_mnist_mlp_gets_more_than_one_bucket():
    """The MLP of examples/train_mnist.py (~270k float32 parameters, ~1 MiB) fits one 25 MiB
    bucket: the small first bucket is what lets its reduction start during backward."""
    shapes = [(256, 784), (256,), (256, 256), (256,), (10, 256), (10,)]
    specs = [("f4", int(np.prod(s)) * 4) for s in shapes]
    assert sum(n for _, n in specs) > FIRST_BUCKET_BYTES
    buckets = assign_buckets(specs, 25 << 20, FIRST_BUCKET_BYTES)
    assert buckets == [[5, 4, 3, 2, 1], [0]]


def test_blocking_engines_never_choose_the_mpi_library():
    """Replicas agree by our own arithmetic: where MPI's Allreduce is predicted fastest, auto
    takes it, DistributedOptimizer's blocking engines the fastest of ours."""
    table = TuningTable([4096, 1 << 24], {"mpi": [1e-6, 1e-3], "ring": [9e-6, 5e-3],
                                          "recursive_doubling": [5e-6, 9e-3],
                                          "shared_memory": [7e-6, 8e-3]})

    class Ctx:
        tuning = table

    assert tuning.best(table, 1 << 20) == "mpi"
    assert tuning.choose_own(Ctx, 4096) == "recursive_doubling"
    assert tuning.choose_own(Ctx, 1 << 24) == "ring"


def test_compression_numpy_roundtrip():
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    wire, ctx = Compression.fp16.compress(x)
    assert wire.dtype == np.float16
    back = Compression.fp16.decompress(wire, ctx)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-3)
    out = np.empty_like(x)
    Compression.fp16.decompress(wire, ctx, out=out)
    np.testing.assert_array_equal(out, back)
    same, ctx = Compression.none.compress(x)
    assert same is x and Compression.none.decompress(same, ctx) is x
    ints = np.arange(4)
    assert Compression.fp16.compress(ints)[0] is ints  # integers are never cast


# -- one MPI job per world size; one property per test -------------------------------------------

@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda p: f"P{p}")
def job(request, tmp_path_factory):
    nprocs = request.param
    res = run_ranks("distributed", nprocs, timeout=240,
                    tmp_path=tmp_path_factory.mktemp(f"distributed{nprocs}"))
    assert res.returncode == 0, res.output[-6000:]
    reports = res.by_rank()
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    return reports


def each(job):
    return sorted(job.items())


@pytest.mark.mpi
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_equivalence_with_one_process(job, opt_name):
    for r, out in each(job):
        assert out[f"{opt_name}_float64_err"] < 1e-10, (r, out[f"{opt_name}_float64_err"])
        assert out[f"{opt_name}_float32_err"] < 1e-5, (r, out[f"{opt_name}_float32_err"])


@pytest.mark.mpi
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_replicas_agree_after_every_step(job, opt_name):
    for r, out in each(job):
        assert out[f"{opt_name}_float64_agree"] and out[f"{opt_name}_float32_agree"], r


@pytest.mark.mpi
def test_same_seed_same_run(job):
    assert all(out["deterministic"] for _, out in each(job))


@pytest.mark.mpi
def test_backward_passes_per_step(job):
    for r, out in each(job):
        assert out["accum_err"] < 1e-10 and out["accum_agree"], (r, out["accum_err"])


@pytest.mark.mpi
def test_fp16_compression(job):
    for r, out in each(job):
        assert out["fp16_err"] < 2e-2 and out["fp16_agree"], (r, out["fp16_err"])


@pytest.mark.mpi
@pytest.mark.parametrize("cap", ["tiny", "huge"])
def test_bucket_caps(job, cap):
    for r, out in each(job):
        assert out[f"{cap}_err"] < 1e-10 and out[f"{cap}_agree"], (r, out[f"{cap}_err"])
        want = out["n_params"] if cap == "tiny" else 1
        assert out[f"{cap}_buckets"] == want, (r, out[f"{cap}_buckets"])


@pytest.mark.mpi
@pytest.mark.parametrize("engine", ["thread", "inline", "nonblocking"])
def test_every_engine_gives_the_same_result(job, engine):
    for r, out in each(job):
        assert out[f"{engine}_err"] < 1e-10 and out[f"{engine}_agree"], (r, out[f"{engine}_err"])
        assert out[f"{engine}_fp16_err"] < 2e-2, (r, out[f"{engine}_fp16_err"])


@pytest.mark.mpi
def test_grads_stay_views_into_the_buckets(job):
    for r, out in each(job):
        assert out["views_at_start"] and out["views_after_steps"], r
        assert out["views_after_module_zero_grad"], r


@pytest.mark.mpi
def test_wrapper_is_the_optimizer(job):
    assert all(out["isinstance"] and out["same_state"] for _, out in each(job))


@pytest.mark.mpi
def test_zero_grad_between_backward_and_step_raises(job):
    assert all("zero_grad" in out["zero_grad_error"] for _, out in each(job))


@pytest.mark.mpi
def test_synchronize_clip_skip_synchronize(job):
    assert all(out["clip_agree"] for _, out in each(job))


@pytest.mark.mpi
def test_op_sum(job):
    for r, out in each(job):
        assert out["sum_err"] < 1e-10, (r, out["sum_err"])


@pytest.mark.mpi
def test_unused_parameters_are_reduced_as_zeros(job):
    assert all(out["unused_agree"] and out["unused_moved"] for _, out in each(job))


@pytest.mark.mpi
def test_second_optimizer_takes_over_with_a_warning(job):
    for r, out in each(job):
        assert out["takeover_warned"] and out["takeover_ok"], r
        assert out["takeover_warning_here"], r  # the warning points at the user's line


@pytest.mark.mpi
def test_broadcast_optimizer_state(job):
    for r, out in each(job):
        assert out["opt_state_agree"] and out["opt_state_nonempty"], r
        assert out["params_agree"], r


@pytest.mark.mpi
def test_distributed_cuda_simulator(tmp_path):
    res = run_ranks("distributed_cuda", 2, timeout=120, tmp_path=tmp_path,
                    env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert res.returncode == 0, res.output
    for out in res.by_rank().values():
        assert out["engine"] == "thread", out
        assert out["none_err"] < 1e-5 and out["none_agree"], out
        assert out["fp16_err"] < 2e-2 and out["fp16_agree"], out
        assert out["nonblocking_err"] < 1e-5 and out["nonblocking_agree"], out


def test_mpi_library_only_when_faster_than_ours_by_the_margin():
    """A near tie goes to our own algorithm (whose first round carries the mismatch check)."""
    def table(mpi_s):
        return TuningTable([4096, 1 << 20], {"mpi": [mpi_s, 1.0], "shared_memory": [1e-4, 1.0],
                                             "ring": [1.0, 1.0], "recursive_doubling": [1.0, 1.0]})

    assert tuning.best(table(0.95e-4), 4096) == "shared_memory"
    assert tuning.best(table(0.85e-4), 4096) == "mpi"
    assert tuning.MPI_MARGIN > 1.0

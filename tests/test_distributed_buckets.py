"""DistributedOptimizer's buckets: the documented arithmetic in every bucket (bitwise, per
bucket, float16/32/64, Sum/Average, rings in flight and buckets in shared memory), and
parameter groups added after construction (guarantee 2)."""

from __future__ import annotations

import pytest
from mpi_harness import run_ranks

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module", params=[(2, "poll"), (3, "poll"), (3, "block")],
                ids=lambda p: f"P{p[0]}-{p[1]}")
def bits(request, tmp_path_factory):
    """COLLECTIVE_WAIT: the ring's two ways of waiting (test + yield, MPI_Wait)."""
    nprocs, wait = request.param
    res = run_ranks("bucket_bits", nprocs, timeout=180, env={"COLLECTIVE_WAIT": wait},
                    tmp_path=tmp_path_factory.mktemp("bits"))
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank()
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    return reports


ENGINES = ["nonblocking", "shared"]


def test_shared_buckets_live_in_the_shared_window(bits):
    assert all(rep["shared"] == {"nonblocking": False, "shared": True}
               for rep in bits.values()), bits


@pytest.mark.parametrize("overlap", ENGINES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("op", ["col.Sum", "col.Average"])
def test_every_bucket_follows_the_documented_arithmetic(bits, dtype, op, overlap):
    for rank, rep in sorted(bits.items()):
        tag = f"{dtype}/{op}/{overlap}"
        assert rep["results"][tag + "/buckets"] >= 3, rep["results"]
        wrong = [k for k, ok in rep["results"].items()
                 if k.startswith(tag + "/") and not k.endswith("buckets") and not ok]
        assert not wrong, f"rank {rank}: buckets {wrong} differ from the documented arithmetic"


@pytest.mark.parametrize("overlap", ENGINES)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("op", ["col.Sum", "col.Average"])
def test_every_bucket_is_bitwise_identical_on_every_rank(bits, dtype, op, overlap):
    first = bits[0]["digests"]
    for rank, rep in sorted(bits.items()):
        diff = [k for k in first if k.startswith(f"{dtype}/{op}/{overlap}/")
                and rep["digests"][k] != first[k]]
        assert not diff, f"rank {rank} differs from rank 0 in buckets {diff}"


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    res = run_ranks("param_group", 2, timeout=120, tmp_path=tmp_path_factory.mktemp("groups"))
    assert res.returncode == 0, res.output[-4000:]
    return res.by_rank()


def test_add_param_group_keeps_replicas_identical(groups):
    assert all(rep["agree"] for rep in groups.values()), groups


def test_add_param_group_matches_one_process(groups):
    for rank, rep in sorted(groups.items()):
        assert rep["err"] < 1e-10 and rep["buckets_cover"], (rank, rep)


def test_group_added_to_the_wrapped_optimizer_is_an_error(groups):
    for rank, rep in sorted(groups.items()):
        assert "add_param_group" in rep["direct_error"], (rank, rep["direct_error"])

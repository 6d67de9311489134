"""The topology and algorithm="hierarchical" across virtual hosts (tools/virtual-cluster.sh):
cross_rank/cross_size/local_rank, guarantee 5 on awkward sizes, mismatches from every rank,
DistributedOptimizer over it (guarantees 1 and 2, every engine), on 2 hosts x 2 ranks, 3 x 1
and the uneven 2 + 1 (3 ranks on hosts of 2 slots: hydra fills node0 first), the last one also
without shared-memory windows (the node's steps then MPI messages). Every job asserts from the
hosts' link counters that the data crossed the links. Skipped only where namespaces cannot be
made. No timing asserts: speed is benchmarks/multihost.py's.
"""

from __future__ import annotations

import pytest
from mpi_harness import run_mpi
from multihost import RANKS, assert_crossed, run_cluster

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

# (hosts, slots per host, ranks, extra environment)
LAYOUTS = {"2x2": (2, 2, 4, {}), "3x1": (3, 1, 3, {}), "2+1": (2, 2, 3, {}),
           "2+1-no-windows": (2, 2, 3, {"COLLECTIVE_SHM": "0"})}


def check_topology(res, hosts, slots, nprocs):
    """Every rank on the host hydra put it on, with the node numbers collective derived."""
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank()
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    per_host = [min(slots, nprocs - h * slots) for h in range(hosts)]
    for rank, rep in reports.items():
        node = rank // slots
        want = {"host": f"node{node}", "local_rank": rank % slots,
                "local_size": per_host[node], "size": nprocs, "cross_rank": node,
                "cross_size": hosts}
        assert {k: rep[k] for k in want} == want, (rank, rep)
    crossed = {rep["crossed"] for rep in reports.values()}
    assert len(crossed) == 1, crossed
    assert_crossed(res, crossed.pop())
    return reports


@pytest.mark.parametrize("layout", LAYOUTS)
def test_hierarchical_exact_identical_and_checked_across_hosts(layout, tmp_path):
    hosts, slots, nprocs, env = LAYOUTS[layout]
    res = run_cluster("hier_allreduce", hosts, slots, nprocs=nprocs, tmp_path=tmp_path,
                      timeout=180, env=env)
    reports = check_topology(res, hosts, slots, nprocs)
    first = reports[0]
    assert first["shards"] == min(slots, nprocs - (hosts - 1) * slots), first
    # pieces (the pipeline) unless a node of several ranks has no window
    assert (first["piece"] > 0) == (layout != "2+1-no-windows"), first
    assert len(first["hashes"]) > 150, len(first["hashes"])
    for rank, rep in reports.items():
        assert rep["nfails"] == 0, f"rank {rank} on {rep['host']}: {rep['fails']}"
        bad = {k: v for k, v in rep["mismatch"].items() if v != "ok"}
        assert not bad and len(rep["mismatch"]) == 3 * nprocs, (rank, bad)
        diff = [k for k in first["hashes"] if rep["hashes"].get(k) != first["hashes"][k]]
        assert not diff, f"rank {rank} on {rep['host']} differs bitwise from rank 0: {diff[:8]}"
        # auto (built-in costs: the tests do not tune) chose hierarchical at every size
        assert set(rep["auto"].values()) == {"hierarchical"}, rep["auto"]


@pytest.mark.parametrize("layout", ["2x2", "2+1"])
def test_distributed_optimizer_over_hierarchical_across_hosts(layout, tmp_path):
    hosts, slots, nprocs, env = LAYOUTS[layout]
    res = run_cluster("hier_training", hosts, slots, nprocs=nprocs, tmp_path=tmp_path,
                      timeout=180, env=env)
    for rank, out in check_topology(res, hosts, slots, nprocs).items():
        for opt_name, dtype, tol in (("sgd", "float64", 1e-10), ("adam", "float32", 1e-5)):
            for engine in ("nonblocking", "thread", "inline"):
                key = f"{opt_name}_{dtype}_{engine}"
                assert out[f"{key}_err"] < tol, (rank, key, out[f"{key}_err"])  # guarantee 1
                assert out[f"{key}_agree"], (rank, key)  # guarantee 2: bitwise replicas
                assert out[f"{key}_algorithms"] == ["hierarchical"], (rank, key, out)
                assert out[f"{key}_buckets"] > 2, (rank, key, out)


@pytest.mark.parametrize("nprocs", [1, 3])
def test_hierarchical_on_one_node(nprocs, tmp_path):
    """One node: a shared-memory reduce-scatter + allgather (one rank: a copy), node 0 of 1."""
    res = run_mpi(script=RANKS / "hier_allreduce.py", nprocs=nprocs, timeout=120,
                  tmp_path=tmp_path, env={"COLLECTIVE_TUNING": "off"})
    assert res.returncode == 0, res.output[-4000:]
    reports = res.by_rank()
    first = reports[0]
    for rank, rep in reports.items():
        assert (rep["cross_rank"], rep["cross_size"], rep["local_size"]) == (0, 1, nprocs)
        assert rep["nfails"] == 0, (rank, rep["fails"])
        assert all(v == "ok" for v in rep["mismatch"].values()), rep["mismatch"]
        assert rep["hashes"] == first["hashes"], rank


def test_step_check_across_hosts(tmp_path):
    """The per-step layout check over the hierarchical rings (which carry no tag: the
    fingerprint goes in one small allreduce) and the blocking engines, on 2 + 1 hosts."""
    hosts, slots, nprocs, env = LAYOUTS["2+1"]
    res = run_cluster("divergence", hosts, slots, nprocs=nprocs, tmp_path=tmp_path,
                      timeout=180, env=env)
    assert res.returncode == 0, res.output[-4000:]
    results = res.by_rank("results")
    assert sorted(results) == [0, 1, 2], res.output[-3000:]
    for r, out in results.items():
        assert out["ok"] == "ok", (r, out)
        for case in ("passes", "passes_tiny", "passes_inline", "passes_thread"):
            step, kind, msg = out[case]
            assert (step, kind) == (3, "StepMismatchError"), (r, case, out[case])
            assert "backward passes differs: 2 on ranks 0, 1; 1 on rank 2" in msg, (r, msg)
        step, kind, msg = out["restored_alone"]
        assert (step, kind) == (2, "StepMismatchError"), (r, out["restored_alone"])

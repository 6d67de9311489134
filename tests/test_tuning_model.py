"""The cost model's formulas (collective.cost_model) on hand-made parameters, and the parts of
``auto``'s tuning that need no MPI: the defaults across nodes, the choice of the non-blocking
engine, the link classes of the cache."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collective import tuning
from collective.context import TuningTable
from collective.cost_model import HEADER, CostModel, fit_line

GB = 1e9
TWO_BY_TWO = [0, 0, 1, 1]


def model(nodes=TWO_BY_TWO, piece=2 << 20, intra=(0.0, 0.0), inter=(0.0, 1 / GB), **kw):
    sizes = [nodes.count(i) for i in range(max(nodes) + 1)]
    return CostModel(nodes=nodes, shards=min(sizes), piece=piece, intra=intra, inter=inter,
                     **kw)


def test_fit_line_recovers_alpha_and_beta():
    xs = np.array([4096, 65536, 1 << 20, 4 << 20])
    alpha, beta = fit_line(xs, 30e-6 + xs / 2e9)
    assert alpha == pytest.approx(30e-6, rel=1e-6) and beta == pytest.approx(1 / 2e9, rel=1e-6)
    assert fit_line(xs, [5e-3, 4e-3, 3e-3, 2e-3]) == (pytest.approx(3.5e-3), 0.0)  # no slope < 0


def test_link_bound_ring_and_recursive_doubling_bytes_on_2x2():
    """With free work inside the nodes, the time is the bytes through a node's link over its
    speed: hierarchical sends the vector once per direction (the link bound), the flat ring
    2(P-1)/P = 1.5 times, recursive doubling twice (both ranks of a node send it all across)."""
    m, n = model(), 64 << 20
    assert m.hierarchical(n) == pytest.approx(n / GB, rel=1e-6)
    assert m.ring(n) == pytest.approx(1.5 * n / GB, rel=1e-6)
    assert m.recursive_doubling(n) == pytest.approx(2 * n / GB, rel=1e-6)
    assert m.predict("mpi", n) is None  # the library's schedule is not modelled


def test_latency_terms_count_the_steps():
    """Per-message latency only: the ring's 2(P-1) steps plus the handshake's log2 P, the fused
    recursive doubling's log2 P, hierarchical's one cross exchange (2 nodes) plus two rounds."""
    a_in, a_x, rnd = 10e-6, 100e-6, 3e-6
    m = model(intra=(a_in, 0.0), inter=(a_x, 0.0), round_s=rnd)
    handshake = a_in + a_x  # mask 1 within the node, mask 2 across
    assert m.ring(4096) == pytest.approx(handshake + 6 * a_x)
    assert m.recursive_doubling(4096) == pytest.approx(handshake)
    assert m.hierarchical(4096) == pytest.approx(2 * rnd + a_x)


def test_hierarchical_pipeline_hides_the_node_steps_behind_the_link():
    piece, n = 2 << 20, 16 << 20
    m = model(piece=piece, copy=1e-11, reduce=1e-11, round_s=1e-6)
    rs = 1e-6 + piece * 1e-11 + piece / 2 * 1e-11
    ag = 1e-6 + piece * 1e-11
    header = HEADER / GB  # 2 nodes: one exchange of the 8-byte header
    # a piece across: two ring steps of a quarter piece from each of the 2 owners of a node,
    # and one reduction of a quarter piece
    cross = 2 * piece / 2 / GB + piece / 4 * 1e-11
    assert m.hierarchical(n) == pytest.approx(rs + header + 8 * cross + ag, rel=1e-9)


def test_uneven_nodes_and_one_rank_per_node():
    """2 + 1 ranks: one shard per node, so the node of two sends it once (no link sharing);
    3 x 1 without windows: recursive doubling over the 3 nodes for small vectors (a fold, one
    exchange, an unfold), a ring over them for large ones."""
    uneven = model(nodes=[0, 0, 1])
    assert uneven.shards == 1
    assert uneven.hierarchical(16 << 20) == pytest.approx((16 << 20) / GB, rel=1e-6)
    flat = model(nodes=[0, 1, 2], piece=0, inter=(50e-6, 0.0))
    assert flat.hierarchical(4096) == pytest.approx(3 * 50e-6)
    ring3 = model(nodes=[0, 1, 2], piece=0, inter=(0.0, 1 / GB))
    handshake = 3 * HEADER / GB  # fold, exchange, unfold
    assert ring3.hierarchical(3 << 20) == pytest.approx(
        handshake + 2 * 2 / 3 * (3 << 20) / GB, rel=1e-9)


def test_exposed_communication_of_a_step():
    """Buckets reduced one after another from the time each is ready; what ends after
    backward is exposed."""
    m = model(inter=(0.0, 1e-9))
    t1 = m.predict("hierarchical", 1 << 20)
    out = m.exposed([1 << 20, 1 << 20], ready_s=[0.0, 0.001], backward_s=0.002,
                    algorithm="hierarchical")
    assert out["comm_s"] == pytest.approx(2 * t1)
    assert out["exposed_s"] == pytest.approx(max(0.0, 2 * t1 - 0.002))
    late = m.exposed([1 << 20], ready_s=[0.01], backward_s=0.01, algorithm="hierarchical")
    assert late["exposed_s"] == pytest.approx(t1)


def test_model_round_trips_through_json():
    m = model(round_s=2e-6, copy=1e-10, reduce=2e-10, slot=4096)
    back = CostModel.from_json(m.to_json())
    assert back == m and back.predict("ring", 1 << 20) == m.predict("ring", 1 << 20)


class FakeTopo:
    def __init__(self, nodes):
        self.num_nodes = nodes


class FakeCtx:
    def __init__(self, nodes, table=None):
        self.topo, self.tuning, self.shm = FakeTopo(nodes), table, None


def test_defaults_choose_hierarchical_across_nodes_only():
    across, one = tuning._defaults(FakeCtx(2)), tuning._defaults(FakeCtx(1))
    for n in (0, 4096, 1 << 16, 1 << 20, 1 << 26):
        assert tuning.best(across, n) == "hierarchical"
        assert tuning.best(across, n, tuning.OWN) == "hierarchical"
        assert tuning.best(one, n) != "hierarchical"
    assert "hierarchical" not in one.times


def test_the_non_blocking_engine_chooses_between_ring_and_hierarchical():
    table = TuningTable([4096, 1 << 24], {"ring": [1e-3, 1e-2], "hierarchical": [2e-3, 5e-3],
                                          "mpi": [1e-6, 1e-6]})
    assert tuning.choose_in_flight(FakeCtx(1, table), 1 << 24) == "ring"  # one node: ring
    assert tuning.choose_in_flight(FakeCtx(2, None), 1 << 24) == "hierarchical"
    assert tuning.choose_in_flight(FakeCtx(2, table), 1 << 24) == "hierarchical"
    assert tuning.choose_in_flight(FakeCtx(2, table), 4096) == "ring"  # never mpi
    assert tuning.candidates(FakeCtx(2)) == ["ring", "recursive_doubling", "mpi",
                                              "hierarchical"]
    assert tuning.candidates(FakeCtx(1)) == ["ring", "recursive_doubling", "mpi"]


def test_cached_tables_are_kept_per_link_class():
    """A rate-limited and an unlimited cluster with the same host names share a cache file
    but not a table: a table serves links within LINK_MATCH of the one it was measured on."""
    shaped, fast = {"link_Bps": 1.2e8, "sizes": [1]}, {"link_Bps": 1.6e9, "sizes": [2]}
    assert tuning.pick([shaped, fast], 1.0e8) is shaped
    assert tuning.pick([shaped, fast], 2.0e9) is fast
    assert tuning.pick([shaped, fast], 6e8) is None  # between the two: measure anew
    assert tuning.pick([{"link_Bps": 0.0}], 0.0) == {"link_Bps": 0.0}  # one node: no link
    assert tuning.pick([shaped], 0.0) is None
    assert tuning.same_link(1e8, 1.9e8) and not tuning.same_link(1e8, 2.1e8)
    assert math.isclose(tuning.LINK_MATCH, 2.0)


def test_a_table_measured_on_a_busier_machine_is_measured_again():
    assert tuning.stale({"load": 4.0}, 0.3)  # measured under other jobs, the machine now quiet
    assert not tuning.stale({"load": 0.5}, 0.3)
    assert not tuning.stale({"load": 0.2}, 3.0)  # a quiet table serves a busy machine
    assert not tuning.stale({}, 0.0)  # tables of before this rule: load unknown, kept
    t = TuningTable([4096], {"ring": [1e-5]}, load=2.5)
    assert TuningTable.from_json(t.to_json()).load == 2.5


def test_hierarchical_is_one_of_the_design_algorithms():
    from collective.allreduce import ALGORITHMS, check_algorithm

    assert set(ALGORITHMS) == {"auto", "ring", "recursive_doubling", "mpi", "shared_memory",
                               "hierarchical"}
    assert check_algorithm("hierarchical") == "hierarchical"
    with pytest.raises(ValueError, match="hierarchical"):
        check_algorithm("tree")


def test_one_noisy_pair_does_not_decide_the_paired_comparison():
    """The tuning's robustness rule: a is 10% faster in 8 of 9 paired samples; one pair where
    a was hit by a burst of load (or b was lucky) must not make b the choice, and the table
    is overruled where it disagreed."""
    tb = np.full(9, 1e-4)
    ta = tb * 0.9
    ta[4] = 1e-2  # a burst of load during one of a's samples
    assert tuning.paired_winner(ta, tb) == 0
    tb2 = tb.copy()
    tb2[2] = 1e-6  # one lucky sample of b
    assert tuning.paired_winner(ta, tb2) == 0
    assert tuning.paired_winner(tb, ta) == 1  # symmetric
    # two separate medians of the same samples agree here; the table decided by one spoiled
    # median (b measured faster at size 0) is overruled by the paired comparison
    times = np.array([[2e-4, 5e-4], [1e-4, 4e-4]])  # rows: a, b; columns: sizes
    tuning.overrule(times, 0, winner=0, loser=1)
    assert tuning.best(TuningTable([4096, 65536], {"a": times[0].tolist(),
                                                   "b": times[1].tolist()}),
                       4096, ("a", "b")) == "a"
    assert times[1, 1] == 4e-4  # other sizes untouched


def test_monotone_caps_a_spike_at_a_small_size():
    t = np.array([[5e-3, 1e-4, 2e-4, 8e-4]])
    assert tuning.monotone(t).tolist() == [[1e-4, 1e-4, 2e-4, 8e-4]]

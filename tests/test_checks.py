"""Divergence turned into errors (issue 15): the per-step layout check, check_replicas and the
non-finite gradient check, each raising the same error on every rank in the same step."""

from __future__ import annotations

import re

import pytest
from mpi_harness import run_ranks


@pytest.mark.mpi
def test_divergence_raises_the_same_error_on_every_rank_in_the_same_step(tmp_path):
    res = run_ranks("divergence", 3, timeout=90, tmp_path=tmp_path, check=True)
    results = res.by_rank("results")
    assert sorted(results) == [0, 1, 2], res.output
    for r, out in results.items():
        assert out["ok"] == "ok", (r, out)
        for case in ("passes", "passes_tiny", "passes_inline", "passes_thread"):
            step, kind, msg = out[case]
            assert (step, kind) == (3, "StepMismatchError"), (r, case, out[case])
            assert "backward passes differs: 2 on ranks 0, 1; 1 on rank 2" in msg, (r, msg)
        step, kind, msg = out["skipped_optimizer"]
        assert (step, kind) == (2, "StepMismatchError"), (r, out["skipped_optimizer"])
        found = re.search(r"optimizer differs: DistributedOptimizer #(\d+) \(in creation "
                          r"order\) on ranks 0, 2; DistributedOptimizer #(\d+) \(in creation "
                          r"order\) on rank 1", msg)
        assert found and int(found[2]) == int(found[1]) + 1, (r, msg)
        step, kind, msg = out["restored_alone"]
        assert (step, kind) == (2, "StepMismatchError"), (r, out["restored_alone"])
        assert "step differs: 2 on ranks 0, 2; 100 on rank 1" in msg, (r, msg)
        # drift: every rank names the parameter and the ranks that differ
        assert out["drift"]["within_atol"] == "ok", out["drift"]
        for case in ("exact", "beyond_atol"):
            _, kind, msg = out["drift"][case]
            assert kind == "ReplicaDriftError", (r, case, msg)
            assert "1 of 4 parameters differ" in msg and "'0.weight' (ranks 0, 2 vs rank 1)" \
                in msg, (r, case, msg)
        step, kind, msg = out["replicas_every"]
        assert (step, kind) == (3, "ReplicaDriftError") and "'2.bias'" in msg, (r, msg)
        # non-finite: every rank raises naming the parameter, or every rank skips the step
        step, kind, msg = out["nonfinite"]
        assert (step, kind) == (2, "NonFiniteGradientError"), (r, out["nonfinite"])
        assert "1 parameter(s) are not finite at step 2: '2.bias' (0 NaN, 3 Inf)" in msg, msg
        assert out["skip_nonfinite"] == {"unchanged_at_2": True, "skipped": 1}, out
    assert len({str(o) for o in results.values()}) == 1  # the same errors on every rank

"""The timeline (col.start_timeline / col.stop_timeline, COLLECTIVE_TIMELINE) and
``python -m collective.explain`` on it."""

from __future__ import annotations

import json

import pytest
from mpi_harness import run_ranks

from collective import explain


def _check_trace(path, buckets, steps):
    doc = json.loads(path.read_text())
    meta = doc["otherData"]["collective"]
    assert meta["size"] == 2 and meta["missing_ranks"] == [] and meta["tuning"]["times"]
    events = doc["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in events if e["name"] == "process_name"}
    assert names == {(0, "rank 0"), (1, "rank 1")}
    for rank in (0, 1):
        mine = [e for e in events if e["pid"] == rank and e["ph"] != "M"]
        assert all(e["ts"] >= 0 for e in mine)
        phases = {}
        for e in mine:
            if e["tid"] == 0:
                phases.setdefault(e["args"]["step"], {})[e["name"]] = e
        assert len(phases) == steps, phases.keys()
        for n, p in phases.items():
            assert {"backward", "synchronize", "update", "step"} <= set(p), (n, p.keys())
            assert n == min(phases) or "forward" in p
            order = [p[k]["ts"] for k in ("backward", "synchronize", "update")]
            assert order == sorted(order), (n, p)
            assert p["step"]["ts"] <= p["synchronize"]["ts"]
        spans = [e for e in mine if e["tid"] == 1 and e["ph"] == "X"]
        ready = [e for e in mine if e["tid"] == 1 and e["ph"] == "i"]
        assert len(spans) == len(ready) == steps * len(buckets), (len(spans), len(ready))
        assert sorted({e["args"]["bytes"] for e in spans}) == sorted(set(buckets))
        colls = {e["name"] for e in mine if e["tid"] == 2}
        assert "barrier handshake" in colls and any(c.startswith("allreduce") for c in colls)
    return doc


@pytest.mark.mpi
def test_timeline_has_every_phase_and_explain_reads_it(tmp_path, capsys):
    path = tmp_path / "tl.json"
    res = run_ranks("timeline_run", 2, timeout=90, tmp_path=tmp_path, check=True,
                    env={"MODE": "api", "PATH_OUT": str(path)})
    out = res.by_rank()
    assert out[0]["written"] == str(path) and out[1]["written"] is None
    buckets = out[0]["buckets"]
    assert len(buckets) >= 3
    _check_trace(path, buckets, steps=6)

    summary = explain.main([str(path), "--png", str(tmp_path / "step.png"),
                            "--json", str(tmp_path / "summary.json")])
    text = capsys.readouterr().out
    # 6 steps: the first has no period (no step before it), the next is left out as warm-up
    assert summary["steps"] == 4 and summary["buckets"] == len(buckets)
    assert summary["bytes"] == sum(buckets)
    for words in ("forward (+ data, loss)", "exposed communication", "bus bandwidth",
                  "alpha-beta fit of the ring", "recommended bucket size: bucket_cap_mb=",
                  "predicted 4 ranks:", "8 ranks:"):
        assert words in text, (words, text)
    fit = summary["fit"]
    assert fit["alpha_s"] >= 0 and fit["beta_s_per_byte"] > 0
    assert 0 < fit["predicted"][4] <= 1 and fit["predicted"][8] <= fit["predicted"][4] + 1e-9
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 4
    pytest.importorskip("matplotlib")
    assert (tmp_path / "step.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.mpi
def test_collective_timeline_variable_records_the_whole_run(tmp_path):
    path = tmp_path / "env.json"
    run_ranks("timeline_run", 2, timeout=90, tmp_path=tmp_path, check=True,
              env={"MODE": "env", "COLLECTIVE_TIMELINE": str(path)})
    doc = json.loads(path.read_text())
    steps = {e["args"]["step"] for e in doc["traceEvents"] if e.get("tid") == 0
             and e["ph"] == "X" and e["pid"] == 1}
    assert steps == set(range(6)), steps


def test_explain_refuses_a_foreign_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"traceEvents": []}))
    with pytest.raises(SystemExit, match="not a collective timeline"):
        explain.main([str(bad)])


def test_explain_skips_the_png_without_matplotlib(tmp_path, monkeypatch, capsys):
    import sys

    doc = {"otherData": {"collective": {"size": 2}}, "traceEvents": []}
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert explain.plot(doc, {"median_step": {"window_us": [0, 1]}, "size": 2},
                        tmp_path / "x.png") is None
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()

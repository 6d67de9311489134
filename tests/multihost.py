"""Run a rank module across a virtual cluster (tools/virtual-cluster.sh) from a test.

``run_cluster("multihost_x", hosts=2, slots=2)`` runs ``tests/ranks/multihost_x.py`` on
hosts x slots ranks (each host a network namespace, TCP over veth links) through
``mpi_harness.run_mpi``, so the launcher, the timeout and the per-rank reports are the ones
every MPI test uses, and returns those results with each host's link counters (bytes received
and sent over its veth while the job ran). ``assert_crossed`` then checks that the data went
over the links: a job whose traffic silently took shared memory fails it.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mpi_harness import ROOT, MPIResult, run_mpi

VCLUSTER = ROOT / "tools" / "virtual-cluster.sh"
RANKS = Path(__file__).resolve().parent / "ranks"
NO_NAMESPACES = 77  # virtual-cluster.sh's exit status where namespaces cannot be made
ENV = {"COLLECTIVE_TUNING": "off"}  # auto with its built-in defaults: no calibration in tests


@functools.cache
def namespaces_missing() -> str:
    """'' where a virtual cluster can be made on this machine, else why not (once a session)."""
    proc = subprocess.run([str(VCLUSTER), "--hosts", "1", "--", "true"], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode == NO_NAMESPACES:
        return proc.stderr.strip() or "virtual-cluster.sh exited 77"
    assert proc.returncode == 0, f"virtual-cluster.sh failed ({proc.returncode}): {proc.stderr}"
    return ""


def require_namespaces():
    reason = namespaces_missing()
    if reason:
        pytest.skip(f"no virtual cluster on this machine: {reason}")


@dataclass
class ClusterResult(MPIResult):
    hosts: list = field(default_factory=list)
    links: dict = field(default_factory=dict)  # host -> {"rx": bytes in, "tx": bytes out}


def link_deltas(stats: dict) -> dict:
    """{host: {"rx", "tx"}}: bytes over the host's eth0 between 'before' and 'after'."""
    out = {}
    for host in stats["hosts"]:
        before, after = stats["before"][host][0]["stats64"], stats["after"][host][0]["stats64"]
        out[host] = {d: after[d]["bytes"] - before[d]["bytes"] for d in ("rx", "tx")}
    return out


def run_cluster(module: str, hosts: int, slots: int, *, tmp_path: Path, nprocs: int = 0,
                timeout: float = 60, env: dict | None = None, args=(),
                inside=(), flags=()) -> ClusterResult:
    """Run ``tests/ranks/<module>.py`` on ``nprocs`` (default hosts * slots) ranks spread over
    ``hosts`` virtual hosts, at most ``slots`` ranks each (hydra fills node0 first).
    ``inside``: a command prefix for the launcher inside the cluster (e.g. ``env -u X``);
    ``flags``: more options of tools/virtual-cluster.sh (e.g. ``["--delay", 2]``)."""
    require_namespaces()
    stats = tmp_path / f"links-{module}-{hosts}x{slots}.json"
    stats.unlink(missing_ok=True)
    wrap = [VCLUSTER, "--hosts", hosts, "--slots", slots, "--stats", stats, *flags, "--",
            *inside]
    res = run_mpi(script=RANKS / f"{module}.py", nprocs=nprocs or hosts * slots,
                  args=[*map(str, args)], timeout=timeout, env={**ENV, **(env or {})},
                  tmp_path=tmp_path, wrap=wrap)
    assert stats.exists(), f"the virtual cluster wrote no link counters\n{res.output[-3000:]}"
    data = json.loads(stats.read_text())
    return ClusterResult(**vars(res), hosts=data["hosts"], links=link_deltas(data))


def assert_crossed(res: ClusterResult, min_bytes: int):
    """Every host received and sent at least ``min_bytes`` over its link."""
    assert min_bytes > 0
    short = {h: c for h, c in res.links.items() if min(c.values()) < min_bytes}
    assert not short, (
        f"less than {min_bytes} bytes crossed the links of {sorted(short)}: {res.links}. "
        "Did the ranks talk through shared memory (UCX_TLS not tcp)?")


def assert_placement(res: ClusterResult, hosts: int, slots: int):
    """Ranks fill the hosts in order; each sees its own host's ranks as its node."""
    reports = res.by_rank()
    nprocs = hosts * slots
    assert sorted(reports) == list(range(nprocs)), res.output[-3000:]
    for rank, rep in reports.items():
        where = (rep["host"], rep["local_rank"], rep["local_size"], rep["size"])
        assert where == (f"node{rank // slots}", rank % slots, slots, nprocs), (rank, rep)
    assert len({rep["host"] for rep in reports.values()}) == hosts

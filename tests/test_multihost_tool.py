"""tools/virtual-cluster.sh itself: hosts with their own names and addresses, a private network
with no way out, the stand-in ssh, the launcher environment, link shaping, the link counters,
the exit statuses, and the trap it exists to avoid (MPI over shared memory between hosts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mpi_harness import LAUNCHER, ROOT
from multihost import (
    RANKS,
    VCLUSTER,
    assert_crossed,
    link_deltas,
    require_namespaces,
    run_cluster,
)


def cluster(*args, timeout=60, env=None, needs_namespaces=True):
    if needs_namespaces:
        require_namespaces()
    return subprocess.run([str(VCLUSTER), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def test_hosts_names_addresses_and_no_way_out():
    script = """
        set -e
        echo "hosts=$VCLUSTER_HOSTS"
        cat "$VCLUSTER_HOSTFILE"
        for h in $VCLUSTER_HOSTS; do
            "$VCLUSTER_SSH" "$h" 'echo $(hostname) $(ip -4 -br addr show dev eth0)'
        done
        echo "head-routes: $(ip -4 route | tr '\\n' ';')"
        echo "host-routes: $("$VCLUSTER_SSH" node2 ip -4 route | tr '\\n' ';')"
        echo "env: $HYDRA_LAUNCHER $HYDRA_IFACE $UCX_TLS $HYDRA_HOST_FILE"
        "$VCLUSTER_SSH" node9 true || echo "no node9: $?"
    """
    out = cluster("--hosts", 3, "--slots", 4, "--", "bash", "-c", script)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "hosts=node0 node1 node2"
    assert lines[1:4] == ["node0:4", "node1:4", "node2:4"]
    assert [(w[0], w[-1]) for w in map(str.split, lines[4:7])] == [
        ("node0", "10.77.0.10/24"), ("node1", "10.77.0.11/24"), ("node2", "10.77.0.12/24")]
    # only the private /24: no default route, so nothing can leave the sandbox
    assert lines[7] == "head-routes: 10.77.0.0/24 dev br0 proto kernel scope link src 10.77.0.1 ;"
    assert lines[8].startswith("host-routes: 10.77.0.0/24 dev eth0") and "default" not in lines[8]
    hostfile = lines[9].split()[-1]
    assert lines[9] == f"env: ssh br0 tcp {hostfile}"
    assert lines[10] == "no node9: 255" and "no host 'node9'" in out.stderr
    assert not os.path.exists(hostfile)  # removed with the cluster


@pytest.mark.mpi
def test_mpirun_launches_across_the_hosts():
    out = cluster("--hosts", 2, "--slots", 2, "--", LAUNCHER, "-n", 4, "--timeout", 30, "hostname")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(out.stdout.split()) == ["node0", "node0", "node1", "node1"]


def test_exit_status_is_the_commands_and_usage_errors():
    assert cluster("--hosts", 1, "--", "sh", "-c", "exit 5").returncode == 5
    for args, words in ((["--delay", "soon"], "--delay must be milliseconds"),
                        (["--delay", "20000"], "--delay must be milliseconds"),
                        (["--hosts", "0"], "--hosts must be"),
                        (["--rate", "fast"], "--rate 'fast'"),
                        (["--bogus"], "unknown option")):
        out = cluster(*args, "--", "true")
        assert out.returncode == 2 and words in out.stderr, (args, out.stderr)
    out = cluster("--help")
    assert out.returncode == 0 and "Usage" in out.stdout


def test_exit_77_where_namespaces_cannot_be_made(tmp_path):
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    out = cluster("--", "true", env={"PATH": f"{tmp_path}:{os.environ['PATH']}"},
                  needs_namespaces=False)
    assert out.returncode == 77, out.stderr
    assert "cannot make a virtual cluster here" in out.stderr


def test_rate_shapes_both_directions_and_counters_count_tcp(tmp_path):
    stats, tcp, n = tmp_path / "stats.json", RANKS / "multihost_tcp.py", 3_000_000
    script = (f'tc qdisc show dev v-node1; "$VCLUSTER_SSH" node1 tc qdisc show dev eth0; '
              f'"$VCLUSTER_SSH" node0 {sys.executable} {tcp} serve 5000 & '
              f'"$VCLUSTER_SSH" node1 {sys.executable} {tcp} send node0 5000 {n}; wait')
    out = cluster("--hosts", 2, "--rate", "1gbit", "--stats", stats, "--", "sh", "-c", script)
    assert out.returncode == 0, out.stdout + out.stderr
    shaped = [line for line in out.stdout.splitlines() if line.startswith("qdisc tbf")]
    # burst: 3 ms of traffic at 1 Gbit/s
    assert len(shaped) == 2 and all("rate 1Gbit burst 375000b" in q for q in shaped), out.stdout
    assert out.stdout.split()[-1] == str(n)
    data = json.loads(stats.read_text())
    assert data["hosts"] == ["node0", "node1"] and data["rate"] == "1gbit"
    links = link_deltas(data)
    assert links["node1"]["tx"] >= n and links["node0"]["rx"] >= n, links
    assert links["node0"]["tx"] < n // 10, links  # only acknowledgements the other way


@pytest.mark.mpi
@pytest.mark.slow
def test_the_link_check_catches_mpi_over_shared_memory(tmp_path):
    """Why the cluster sets UCX_TLS=tcp and every test counts bytes: without it MPICH's UCX
    sees one machine and copies between the hosts' ranks through shared memory (CMA)."""
    n = 1 << 20
    over_tcp = run_cluster("multihost_allreduce", 2, 1, tmp_path=tmp_path, args=[n, "ring"])
    assert over_tcp.returncode == 0, over_tcp.output[-3000:]
    assert_crossed(over_tcp, 4 * n)
    trapped = run_cluster("multihost_allreduce", 2, 1, tmp_path=tmp_path, args=[n, "ring"],
                          inside=["env", "-u", "UCX_TLS", "-u", "FI_PROVIDER"])
    assert trapped.returncode == 0, trapped.output[-3000:]
    assert {rep["host"] for rep in trapped.by_rank().values()} == {"node0", "node1"}
    with pytest.raises(AssertionError, match="crossed the links"):
        assert_crossed(trapped, 4 * n)


def test_delay_holds_every_frame(tmp_path):
    """--delay: the hosts are joined by the userspace hub, every frame held that long once, so
    a round trip between two hosts takes at least twice the delay (a lower bound: the hub
    runs late under load, never early); bulk TCP still flows, and the counters count it."""
    stats, tcp, n = tmp_path / "stats.json", RANKS / "multihost_tcp.py", 2_000_000
    script = (f'"$VCLUSTER_SSH" node1 {sys.executable} {tcp} serve 5000 & '
              f'"$VCLUSTER_SSH" node0 {sys.executable} {tcp} ping node1 5000 5; wait; '
              f'"$VCLUSTER_SSH" node0 {sys.executable} {tcp} serve 5001 & '
              f'"$VCLUSTER_SSH" node1 {sys.executable} {tcp} send node0 5001 {n}; wait')
    out = cluster("--hosts", 2, "--delay", 4, "--stats", stats, "--", "sh", "-c", script)
    assert out.returncode == 0, out.stdout + out.stderr
    rtt = [float(line.split()[1]) for line in out.stdout.splitlines()
           if line.startswith("rtt_ms")]
    assert len(rtt) == 1 and rtt[0] >= 8.0, out.stdout
    assert out.stdout.split()[-1] == str(n)
    links = link_deltas(json.loads(stats.read_text()))
    assert links["node1"]["tx"] >= n and links["node0"]["rx"] >= n, links


@pytest.mark.mpi
def test_mpi_allreduce_through_the_delaying_hub(tmp_path):
    n = 1 << 18
    res = run_cluster("multihost_allreduce", 2, 2, tmp_path=tmp_path, args=[n, "auto"],
                      flags=["--delay", 1], timeout=120)
    assert res.returncode == 0, res.output[-3000:]
    assert {rep["host"] for rep in res.by_rank().values()} == {"node0", "node1"}
    assert_crossed(res, 4 * n // 2)

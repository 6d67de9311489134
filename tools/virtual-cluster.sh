#!/usr/bin/env bash
# A throw-away cluster of N "hosts" on this machine: Linux network namespaces joined by a
# bridge, TCP over veth links (optionally rate-limited), each host with its own host name.
#
#   tools/virtual-cluster.sh [--hosts N] [--slots K] [--rate RATE] [--delay MS] [--stats FILE] -- CMD...
#
# CMD runs on the head node, with the launcher environment exported so that
# `./mpirun.sh -n P python script.py` inside it runs across the hosts. See --help.
set -euo pipefail

usage() {
    cat <<'EOT'
Usage: tools/virtual-cluster.sh [--hosts N] [--slots K] [--rate RATE] [--delay MS]
                                [--stats FILE] [-- CMD...]

Runs CMD (default: an interactive shell) on the head node of a fresh virtual cluster and
exits with CMD's status. Everything lives in one sandbox of Linux namespaces that the
kernel removes when CMD ends; no packet can leave it (it has no uplink).

  --hosts N      number of hosts, node0 .. node{N-1} (default 2)
  --slots K      MPI slots (ranks) per host in the hostfile (default 2)
  --rate RATE    limit each host's link to RATE in each direction (tbf), e.g. 1gbit,
                 100mbit, 10gbit (units as tc: bit, kbit, mbit, gbit, bps, kbps, mbps, gbps)
  --delay MS     hold every frame MS milliseconds (a round trip between hosts: 2 MS more):
                 the hosts are then joined by a userspace hub (tools/vcluster-hub.py) on
                 TAP devices instead of a bridge, MTU 9000; with --rate each host's
                 sending side is shaped (tbf on its eth0). Needs /dev/net/tun and python3.
  --stats FILE   write each host's link counters (ip -s -j link of its eth0) before and
                 after CMD to FILE as JSON: {"hosts": [...], "before": {host: ...}, "after": ...}
  -h, --help     this text

The head node (where CMD and mpiexec run) is the sandbox's own network namespace: bridge
br0 at 10.77.0.1/24. Host nodeI is a network namespace whose eth0 (10.77.0.(10+I)/24) is a
veth into br0; the head's end is v-nodeI. Inside CMD:

  VCLUSTER_HOSTS      "node0 node1 ..."            VCLUSTER_HOSTFILE  the hostfile (host:K)
  VCLUSTER_SSH        the stand-in ssh: `$VCLUSTER_SSH node1 hostname` runs on node1
  HYDRA_HOST_FILE, HYDRA_LAUNCHER=ssh, HYDRA_LAUNCHER_EXEC=$VCLUSTER_SSH, HYDRA_IFACE=br0
                      MPICH's mpiexec (hydra) reads these: ./mpirun.sh -n P runs across hosts
  UCX_TLS=tcp, FI_PROVIDER=tcp
                      NOTE: without them MPICH's network module sees one machine and moves the
                      data through shared memory (CMA): nothing would cross the links

Exit status: CMD's; 77 when the namespaces cannot be made here (no unshare/ip, no
permission for user namespaces, ...); 2 on a usage error.
EOT
}

die_usage() { echo "virtual-cluster.sh: $*" >&2; exit 2; }
cannot() { echo "virtual-cluster.sh: cannot make a virtual cluster here: $*" >&2; exit 77; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hosts=2 slots=2 rate="" delay="" stats=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --hosts) hosts="${2:?--hosts needs a number}"; shift 2 ;;
        --slots) slots="${2:?--slots needs a number}"; shift 2 ;;
        --rate) rate="${2:?--rate needs a rate, e.g. 1gbit}"; shift 2 ;;
        --delay) delay="${2:?--delay needs milliseconds, e.g. 2}"; shift 2 ;;
        --stats) stats="${2:?--stats needs a file}"; shift 2 ;;
        --) shift; break ;;
        -*) die_usage "unknown option '$1' (see --help)" ;;
        *) break ;;
    esac
done
[[ "$hosts" =~ ^[1-9][0-9]*$ && "$hosts" -le 200 ]] \
    || die_usage "--hosts must be an integer from 1 to 200, got '$hosts'"
[[ "$slots" =~ ^[1-9][0-9]*$ ]] || die_usage "--slots must be a positive integer, got '$slots'"
[[ -z "$delay" || ( "$delay" =~ ^[0-9]+(\.[0-9]+)?$ && ${delay%.*} -le 10000 ) ]] \
    || die_usage "--delay must be milliseconds from 0 to 10000, e.g. 2 or 0.5, got '$delay'"
burst=""
if [[ -n "$rate" ]]; then
    # bytes per second, from tc's units; tbf's bucket must hold ~3 ms of traffic, else it
    # cannot reach the rate (at 10gbit a 256 kB burst gave 4.45 Gbit/s)
    bps=$(awk -v r="$rate" 'BEGIN {
        if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
        n = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
        s["bit"] = 1 / 8; s["kbit"] = 1e3 / 8; s["mbit"] = 1e6 / 8; s["gbit"] = 1e9 / 8
        s["tbit"] = 1e12 / 8; s["bps"] = 1; s["kbps"] = 1e3; s["mbps"] = 1e6; s["gbps"] = 1e9
        if (!(u in s) || n <= 0) exit 1
        printf "%d", n * s[u] }') || die_usage "--rate '$rate': give a number and a unit, e.g. 1gbit"
    (( bps >= 1000 )) || die_usage "--rate '$rate' is below 8 kbit/s"
    burst=$(( bps * 3 / 1000 )); (( burst < 16384 )) && burst=16384
fi
(( $# > 0 )) || set -- "${SHELL:-/bin/bash}"

# -- outside: make the sandbox and run this script again inside it ---------------------------
if [[ "${VCLUSTER_INSIDE:-}" != 1 ]]; then
    for tool in unshare ip; do
        command -v "$tool" >/dev/null || cannot "'$tool' is not installed (util-linux, iproute2)"
    done
    [[ -z "$rate" ]] || command -v tc >/dev/null || cannot "--rate needs 'tc' (iproute2)"
    if [[ -n "$delay" ]]; then
        command -v python3 >/dev/null || cannot "--delay needs python3 (tools/vcluster-hub.py)"
        [[ -c /dev/net/tun ]] || cannot "--delay needs TAP devices (/dev/net/tun)"
    fi
    flags=(--net --mount --uts --pid --fork --kill-child --mount-proc)
    [[ $(id -u) -eq 0 ]] || flags=(--user --map-root-user "${flags[@]}")
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/vcluster.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    rc=0
    VCLUSTER_INSIDE=1 VCLUSTER_SCRATCH="$scratch" unshare "${flags[@]}" \
        bash "${BASH_SOURCE[0]}" --hosts "$hosts" --slots "$slots" ${rate:+--rate "$rate"} \
        ${delay:+--delay "$delay"} ${stats:+--stats "$stats"} -- "$@" || rc=$?
    if [[ ! -e "$scratch/started" ]]; then  # unshare itself failed (its message is above)
        cannot "unshare ${flags[*]} failed (exit $rc); user namespaces may be disabled"
    fi
    exit "$rc"
fi

# -- inside the sandbox (pid 1 of its own pid namespace; the head node) -----------------------
scratch=${VCLUSTER_SCRATCH:?}
: > "$scratch/started"
# the cluster's files live in a tmpfs that goes with the sandbox, even if it is killed
mount -t tmpfs -o mode=755,size=1m vcluster "$scratch" || cannot "no tmpfs for $scratch"

# private mounts: /run/netns (the namespace names) and /etc/hosts, seen only in here
# NOTE: where /run/netns does not exist, a tmpfs over all of /run (nothing is created outside)
if [[ -d /run/netns ]]; then
    mount -t tmpfs -o mode=755,size=1m vcluster /run/netns || cannot "no tmpfs for /run/netns"
else
    { mount -t tmpfs -o mode=755,size=1m vcluster /run && mkdir /run/netns; } \
        || cannot "no tmpfs for /run"
fi
net=10.77.0
{
    cat /etc/hosts 2>/dev/null || true
    echo "$net.1 head"
    for ((i = 0; i < hosts; i++)); do echo "$net.$((10 + i)) node$i"; done
} > "$scratch/hosts"
mount --bind "$scratch/hosts" /etc/hosts 2>/dev/null || true  # names are a convenience only

ip link set lo up || cannot "cannot configure the sandbox's network namespace"
names=()
for ((i = 0; i < hosts; i++)); do names+=("node$i"); done
if [[ -z "$delay" ]]; then
    ip link add br0 type bridge || cannot "cannot create a bridge"
else  # the hub's ports: br0 for the head, t-nodeI for each host (moved in below)
    python3 "$here/vcluster-hub.py" --delay "$delay" --ready "$scratch/hub-ready" --mtu 9000 \
        br0 "${names[@]/#/t-}" &
    for ((t = 0; t < 100; t++)); do
        [[ ! -e "$scratch/hub-ready" ]] || break
        kill -0 $! 2>/dev/null || cannot "the hub (tools/vcluster-hub.py) did not start"
        sleep 0.05
    done
    [[ -e "$scratch/hub-ready" ]] || cannot "the hub (tools/vcluster-hub.py) did not start"
    ip link set br0 mtu 9000
fi
ip addr add "$net.1/24" dev br0
ip link set br0 up
for ((i = 0; i < hosts; i++)); do
    h=node$i
    ip netns add "$h" || cannot "cannot create network namespace $h"
    if [[ -z "$delay" ]]; then
        ip link add "v-$h" type veth peer name eth0 netns "$h" || cannot "cannot create veth v-$h"
        ip link set "v-$h" master br0 up
    else
        ip link set "t-$h" netns "$h" || cannot "cannot move t-$h into $h"
        ip -n "$h" link set "t-$h" name eth0
        ip -n "$h" link set eth0 mtu 9000
    fi
    ip -n "$h" addr add "$net.$((10 + i))/24" dev eth0
    ip -n "$h" link set lo up
    ip -n "$h" link set eth0 up
    if [[ -n "$rate" ]]; then
        # the host's egress on eth0; without the hub also its ingress, on the head's end
        tc -n "$h" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms \
            || cannot "tc tbf on $h"
        if [[ -z "$delay" ]]; then
            tc qdisc add dev "v-$h" root tbf rate "$rate" burst "$burst" latency 50ms \
                || cannot "tc tbf on v-$h"
        fi
    fi
done
hostfile="$scratch/hostfile"
for h in "${names[@]}"; do echo "$h:$slots"; done > "$hostfile"

link_stats() {  # {"node0": <ip -s -j link show dev eth0 of node0>, ...}
    local sep="" h
    printf '{'
    for h in "${names[@]}"; do
        printf '%s"%s": %s' "$sep" "$h" "$(ip -n "$h" -s -j link show dev eth0)"
        sep=", "
    done
    printf '}'
}
[[ -z "$stats" ]] || before=$(link_stats)

export VCLUSTER_HOSTS="${names[*]}" VCLUSTER_HOSTFILE="$hostfile" VCLUSTER_SSH="$here/vcluster-ssh"
export HYDRA_HOST_FILE="$hostfile" HYDRA_LAUNCHER=ssh HYDRA_LAUNCHER_EXEC="$here/vcluster-ssh"
export HYDRA_IFACE=br0
export UCX_TLS=tcp FI_PROVIDER=tcp
unset VCLUSTER_INSIDE VCLUSTER_SCRATCH
rc=0
"$@" || rc=$?
if [[ -n "$stats" ]]; then
    printf '{"hosts": [%s], "rate": "%s", "before": %s, "after": %s}\n' \
        "$(printf '"%s",' "${names[@]}" | sed 's/,$//')" "$rate" "$before" "$(link_stats)" \
        > "$stats"
fi
exit "$rc"

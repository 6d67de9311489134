"""The multi-host allreduce table: virtual hosts (tools/virtual-cluster.sh), shaped and not.

    .venv/bin/python benchmarks/multihost.py [--setups 2x2@1gbit,2x2,2x1@1gbit,3x1@1gbit]
                                             [-b 4K -e 64M -f 4] [--jobs 3] [--json PATH]

Run it as a plain process: for every setup HOSTSxRANKS[@RATE] it starts a fresh virtual
cluster (network namespaces, TCP over veth links, RATE with tbf) and an MPI job in it
(``--worker``), ``--jobs`` times, alternating between the setups. Every job measures, from
-b to -e bytes, ``auto`` (and records its choice), each of our algorithms, and the MPI
library's own Allreduce, interleaved (float32 Sum in place; a sample is a batch of back-to-back
calls after a barrier, its time the maximum over ranks; the median of the samples). The
table gives the median over the jobs, and beside it:

- the link bound: the time the bytes a node must send and receive take at the link's rate,
  2 N (C - 1) / C for C nodes (N for 2 nodes) over RATE; for an unshaped setup over the link
  speed the start-up probe measured (TCP over veth: what the CPUs manage, not a wire);
- the cost model's prediction for each algorithm (``collective.cost_model``, fitted at
  start-up by ``auto``'s tuning) over the measurement: "pred/meas".

Each job tunes ``auto`` for its setup on its first run (COLLECTIVE_CACHE_DIR is one temporary
directory for the whole benchmark: the cache keeps a table per layout and link class, so the
later jobs of a setup load theirs). Timings on the 2-core machine move with other load: quote
the medians of several jobs, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from allreduce import fmt_size, parse_size  # noqa: E402
from timing import interleaved  # noqa: E402

OURS = ("hierarchical", "ring", "recursive_doubling")
COLUMNS = ("auto", *OURS, "mpi")
RATES = {"bit": 1 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "bps": 1,
         "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}


def rate_Bps(rate: str) -> float:
    """Bytes per second of a tc rate ("1gbit", "100mbit", ...)."""
    for unit in sorted(RATES, key=len, reverse=True):
        if rate.endswith(unit):
            return float(rate[:-len(unit)]) * RATES[unit]
    raise ValueError(f"not a tc rate: {rate!r}")


def parse_setup(text: str):
    """"2x2@1gbit" -> (2, 2, "1gbit"); "3x1" -> (3, 1, None)."""
    shape, _, rate = text.partition("@")
    hosts, _, ranks = shape.partition("x")
    return int(hosts), int(ranks), rate or None


# == the worker (runs inside the virtual cluster, under mpirun) ================================

def worker(args):
    from mpi4py import MPI

    import collective as col
    from collective.comm import context
    from collective.cost_model import CostModel

    col.init()
    ctx = context()
    comm = ctx.comm
    sizes, s = [], parse_size(args.minbytes)
    while s <= parse_size(args.maxbytes):
        sizes.append(s)
        s *= args.stepfactor
    buf_all = np.ones(sizes[-1] // 4, np.float32)

    def make(algo, buf):
        if algo == "mpi":
            return lambda: comm.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)
        return lambda: col.allreduce_(buf, op=col.Sum, algorithm=algo)

    rows = []
    for size in sizes:
        buf = buf_all[:size // 4]
        fns = {a: make(a, buf) for a in COLUMNS}
        for fn in fns.values():  # warm-up
            fn()
        comm.Barrier()
        t0 = time.perf_counter()
        fns["mpi"]()
        est = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        batch = max(1, min(100, int(3e-3 / max(est, 1e-9))))
        iters = max(3, min(args.iters, int(args.max_seconds / max(est * batch * len(fns),
                                                                   1e-9))))
        times = interleaved(comm, list(fns.values()), iters, batch)
        med = np.median(times, axis=1)
        rows.append({"bytes": size, "iters": iters, "batch": batch,
                     "seconds": dict(zip(fns, med.tolist(), strict=True)),
                     "choice": ctx.choices.get(size, "-")})
    table = ctx.tuning
    model = CostModel.from_json(table.model) if table.model else None
    for row in rows:
        row["predicted"] = {a: model.predict(a, row["bytes"]) for a in OURS} if model else {}
    if ctx.rank == 0:
        Path(args.out).write_text(json.dumps({
            "P": ctx.size, "nodes": col.cross_size(), "link_Bps": table.link_Bps,
            "model": table.model, "rows": rows}))


# == the driver ================================================================================

def launch(setup, args, cache):
    hosts, ranks, rate = parse_setup(setup)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = dict(os.environ, COLLECTIVE_CACHE_DIR=str(cache), TQDM_DISABLE="1")
        env.pop("COLLECTIVE_TUNING", None)
        cmd = [str(ROOT / "tools" / "virtual-cluster.sh"), "--hosts", str(hosts), "--slots",
               str(ranks), *(["--rate", rate] if rate else []), "--",
               "env", f"MPIR_CVAR_CH4_NETMOD={args.netmod}", str(ROOT / "mpirun.sh"),
               "-n", str(hosts * ranks), "--timeout", str(args.timeout),
               sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(out),
               "-b", args.minbytes, "-e", args.maxbytes, "-f", str(args.stepfactor),
               "--iters", str(args.iters), "--max-seconds", str(args.max_seconds)]
        print(f"# {setup}: {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=args.timeout + 60)
        if proc.returncode != 0:
            raise SystemExit(f"{setup} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
        return json.loads(out.read_text())


def summarize(setup, jobs, netmod):
    """Medians over the jobs; the link bound; the model over the measurement."""
    hosts, ranks, rate = parse_setup(setup)
    link = rate_Bps(rate) if rate else statistics.median(j["link_Bps"] for j in jobs)
    rows = []
    for i, first in enumerate(jobs[0]["rows"]):
        n = first["bytes"]
        sec = {a: statistics.median(j["rows"][i]["seconds"][a] for j in jobs) for a in COLUMNS}
        choices = sorted({j["rows"][i]["choice"] for j in jobs})
        bound = 2 * n * (hosts - 1) / hosts / link
        pred = {a: statistics.median(j["rows"][i]["predicted"].get(a) or float("nan")
                                     for j in jobs) for a in OURS}
        rows.append({"bytes": n, "seconds": sec, "choice": choices, "link_bound_s": bound,
                     "auto_over_mpi": sec["mpi"] / sec["auto"],
                     "auto_over_bound": bound / sec["auto"],
                     "pred_over_meas": {a: pred[a] / sec[a] for a in OURS}, "predicted": pred,
                     "spread": {a: [j["rows"][i]["seconds"][a] for j in jobs] for a in COLUMNS}})
    return {"setup": setup, "netmod": netmod, "hosts": hosts, "ranks_per_host": ranks,
            "rate": rate,
            "link_Bps": link, "link_measured_Bps": [j["link_Bps"] for j in jobs],
            "jobs": len(jobs), "rows": rows}


def print_table(s):
    how = f"tbf {s['rate']}" if s["rate"] else "unshaped, link = the probe's TCP rate"
    print(f"\n## {s['setup']} ({s['netmod']}): {s['hosts']} hosts x {s['ranks_per_host']} "
          f"ranks, {how} "
          f"({s['link_Bps'] / 1e6:.0f} MB/s), medians of {s['jobs']} job(s); ms per call")
    head = "".join(f"{c[:12]:>13}" for c in COLUMNS)
    print(f"{'size':>6}{head}{'link bound':>12}{'auto/mpi':>9}{'bound/auto':>11}"
          f"  {'pred/meas: hier  ring    rd':<28} auto chose")
    for r in s["rows"]:
        cells = "".join(f"{r['seconds'][c] * 1e3:>13.3f}" for c in COLUMNS)
        pm = "".join(f"{r['pred_over_meas'][a]:>6.2f}" for a in OURS)
        print(f"{fmt_size(r['bytes']):>6}{cells}{r['link_bound_s'] * 1e3:>12.3f}"
              f"{r['auto_over_mpi']:>9.2f}{r['auto_over_bound']:>11.2f}  {'':>10}{pm}  "
              f"{','.join(r['choice'])}")


def model_summary(summaries, floor=64 << 10):
    """How often the model is within 25% of the measurement, per setup (sizes >= floor)."""
    print(f"\n## the cost model over the measurement (sizes >= {fmt_size(floor)}): "
          "pred/meas of each algorithm, and the share within 25%")
    for s in summaries:
        ratios = {a: [r["pred_over_meas"][a] for r in s["rows"] if r["bytes"] >= floor]
                  for a in OURS}
        parts = []
        for a, rs in ratios.items():
            if not rs:  # no size measured that large
                continue
            ok = sum(0.75 <= x <= 1.25 for x in rs)
            parts.append(f"{a} {min(rs):.2f}-{max(rs):.2f} ({ok}/{len(rs)} within 25%)")
        print(f"  {s['setup']:>10}: " + "; ".join(parts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setups", default="2x2@1gbit,2x2,2x1@1gbit,3x1@1gbit",
                    help="comma-separated HOSTSxRANKS[@RATE] (default: the issue's table and "
                         "the model's layouts)")
    ap.add_argument("-b", "--minbytes", default="4K")
    ap.add_argument("-e", "--maxbytes", default="64M")
    ap.add_argument("-f", "--stepfactor", type=int, default=4)
    ap.add_argument("--iters", type=int, default=9, help="samples per size and column")
    ap.add_argument("--max-seconds", type=float, default=20.0,
                    help="fewer samples for a size whose samples would take longer")
    ap.add_argument("--jobs", type=int, default=3, help="jobs per setup (medians over them)")
    ap.add_argument("--netmod", default="ucx", choices=("ucx", "ofi"),
                    help="MPICH's network module (MPIR_CVAR_CH4_NETMOD; ucx is its default)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per job")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    runs: dict = {s: [] for s in setups}
    with tempfile.TemporaryDirectory(prefix="multihost-cache-") as cache:
        for _ in range(args.jobs):
            for setup in setups:
                runs[setup].append(launch(setup, args, cache))
    summaries = [summarize(s, runs[s], args.netmod) for s in setups]
    for s in summaries:
        print_table(s)
    model_summary(summaries)
    model_summary(summaries, floor=1 << 20)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"setups": summaries}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

"""The scaling study across virtual hosts (``benchmarks/scaling.py --hosts N --rate R``).

The driver starts a virtual cluster (tools/virtual-cluster.sh: N hosts, ``--ranks-per-host``
ranks each, links limited to R with tbf) and one MPI job in it, ``--jobs`` times, plus one
single-process job on this machine for the weak-scaling baseline. Model: a character GPT
(4 blocks of causal self-attention + MLP, d = 192, 4 heads, context 32, vocabulary 65: 1.8 M
float32 parameters in 54 tensors, 7 MiB of gradients), AdamW, per-rank batch 4 x 32 tokens,
DistributedOptimizer with 1 MB buckets (8 of them, so that reductions can start during
backward), one thread per rank.

Measured as ``scaling.py``'s overlap study measures it, the modes interleaved step by step
(a burst of load from other processes hits them alike), medians: the plain optimizer's step
with all ranks running (the same CPU contention, no communication), DistributedOptimizer's
step for each engine, and the same reductions alone (``synchronize()`` with no backward
running); hidden = 1 - (step - plain step) / reductions alone. The driver prints the medians
over the jobs and each job's hidden fraction. Predicted, by the cost model ``auto``
fitted at start-up (``collective.cost_model``): the reductions alone (each bucket by the
algorithm its engine runs) and the step: the plain step plus the exposed communication of the
buckets reduced one after another from the moment each is ready (gradient-ready times
recorded by hooks during a plain backward); inline (no overlap) exposes all of it.
"""

from __future__ import annotations

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
ENGINES = ("nonblocking", "thread", "inline")
VOCAB, BLOCK, WIDTH, HEADS, LAYERS, BATCH = 65, 32, 192, 4, 4, 4
CAP_MB = 1.0


def gpt(ds, nn, F):
    """The character GPT of the module docstring (seeded: the same on every rank)."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d = WIDTH
            self.ln1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ln2, self.fc, self.out = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x, mask):
            B, T, d = x.shape
            h = HEADS
            qkv = self.qkv(self.ln1(x)).reshape(B, T, 3, h, d // h).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            att = F.softmax((q @ k.transpose(-2, -1)) * (1.0 / (d // h) ** 0.5) + mask,
                            dim=-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(B, T, d))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(VOCAB, WIDTH), nn.Embedding(BLOCK, WIDTH)
            self.blocks = nn.ModuleList([Block() for _ in range(LAYERS)])
            self.ln, self.head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, VOCAB)
            self.mask = ds.tensor(np.triu(np.full((BLOCK, BLOCK), -1e9, np.float32), 1))
            self.positions = ds.tensor(np.arange(BLOCK))

        def forward(self, idx):
            x = self.tok(idx) + self.pos(self.positions)
            for block in self.blocks:
                x = block(x, self.mask)
            return self.head(self.ln(x))

    ds.manual_seed(0)
    return GPT()


# == the worker (runs under mpirun, inside the cluster or alone) ==============================

def worker(args):
    import collective as col
    import dlsys as ds
    import dlsys.nn.functional as F
    from collective import tuning
    from collective.comm import context
    from collective.cost_model import CostModel
    from dlsys import nn

    col.init()
    ctx, P = context(), col.size()
    rng = np.random.default_rng(col.rank())
    idx = ds.tensor(rng.integers(0, VOCAB, (BATCH, BLOCK)))
    tgt = ds.tensor(rng.integers(0, VOCAB, BATCH * BLOCK))

    def loss_of(model):
        return F.cross_entropy(model(idx).reshape(BATCH * BLOCK, VOCAB), tgt)

    def step(model, opt):
        opt.zero_grad()
        loss_of(model).backward()
        opt.step()

    def timed(fn) -> float:
        col.barrier()
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    setups = {}
    for mode in ("plain",) + (ENGINES if P > 1 else ()):
        model = gpt(ds, nn, F)
        opt = ds.optim.AdamW(model.parameters(), lr=1e-3)
        if mode != "plain":
            opt = col.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                                           bucket_cap_mb=CAP_MB, overlap=mode)
        setups[mode] = (model, opt)
        for _ in range(2):  # warm-up
            step(model, opt)
    # interleaved step by step (a burst of load from other processes hits every mode alike),
    # and the reductions alone (synchronize() with no backward: every bucket handed over)
    # after every round; medians of the maxima over ranks
    samples: dict = {m: [] for m in setups}
    alone: dict = {m: [] for m in setups if m != "plain"}
    for _ in range(args.rounds * args.steps):
        for mode, (model, opt) in setups.items():
            samples[mode].append(timed(lambda m=model, o=opt: step(m, o)))
            if mode != "plain":
                alone[mode].append(timed(opt.synchronize))

    def median_of_max(ts):
        return float(np.median(np.max(np.array(col.allgather_object(ts)), axis=0)))

    step_s = {m: median_of_max(ts) for m, ts in samples.items()}
    alone_s = {m: median_of_max(ts) for m, ts in alone.items()}
    out = {"P": P, "nodes": col.cross_size(), "plain_step_s": step_s["plain"],
           "params": int(sum(p.numel() for p in setups["plain"][0].parameters()))}
    # backward's timeline: when each gradient is ready (a plain backward, hooks recording)
    model, opt = setups["plain"]
    stamps: dict = {}
    hooks = [p.register_post_accumulate_grad_hook(
        lambda q: stamps.__setitem__(id(q), time.perf_counter())) for p in model.parameters()]
    opt.zero_grad()
    loss = loss_of(model)
    t0 = time.perf_counter()
    loss.backward()
    out["backward_s"] = time.perf_counter() - t0
    for h in hooks:
        h.remove()
    ready = {pid: t - t0 for pid, t in stamps.items()}
    if P > 1:
        model_fit = CostModel.from_json(ctx.tuning.model) if ctx.tuning.model else None
        for mode in ENGINES:
            dopt = setups[mode][1]
            buckets = dopt.buckets
            choose = tuning.choose_in_flight if mode == "nonblocking" else tuning.choose_own
            algos = [choose(ctx, b.nbytes) for b in buckets]
            t, comm = step_s[mode], alone_s[mode]
            row = {"step_s": t, "comm_alone_s": comm, "exposed_s": max(t - out["plain_step_s"], 0),
                   "buckets": len(buckets), "bytes": [b.nbytes for b in buckets],
                   "algorithms": sorted(set(algos))}
            row["hidden_fraction"] = min(1.0, max(0.0, 1 - row["exposed_s"] / comm))
            if model_fit is not None:
                # the bucket ready times: the last of its gradients (recorded on the twin
                # plain model: same shapes, same order)
                twin = dict(zip((id(p) for p in setups[mode][0].parameters()),
                                (id(p) for p in model.parameters()), strict=True))
                at = [max(ready[twin[id(p)]] for p in b.params) for b in buckets]
                pred = model_fit.exposed(row["bytes"], at, out["backward_s"], algos)
                if mode == "inline":
                    pred["exposed_s"] = pred["comm_s"]
                row["predicted"] = {"comm_alone_s": pred["comm_s"],
                                    "exposed_s": pred["exposed_s"],
                                    "step_s": out["plain_step_s"] + pred["exposed_s"]}
            out[mode] = row
    if col.rank() == 0:
        Path(args.out).write_text(json.dumps(out))


# == the driver ================================================================================

def launch(args, hosts, timeout):
    """One job: across ``hosts`` virtual hosts, or (hosts=0) one process on this machine."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1", TQDM_DISABLE="1")
        P = hosts * args.ranks_per_host if hosts else 1
        cmd = [str(ROOT / "mpirun.sh"), "-n", str(P), "--timeout", str(timeout),
               sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--worker", "--hosts",
               str(hosts), "--out", str(out), "--steps", str(args.steps),
               "--rounds", str(args.rounds)]
        if hosts:
            cmd = [str(ROOT / "tools" / "virtual-cluster.sh"), "--hosts", str(hosts),
                   "--slots", str(args.ranks_per_host),
                   *(["--rate", args.rate] if args.rate else []), "--",
                   "env", f"MPIR_CVAR_CH4_NETMOD={args.netmod}", *cmd]
        print(f"# {' '.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout + 60)
        if proc.returncode != 0:
            raise SystemExit(f"job failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return json.loads(out.read_text())


def driver(args):
    cache = tempfile.mkdtemp(prefix="scaling-hosts-cache-")
    os.environ["COLLECTIVE_CACHE_DIR"] = cache  # auto tunes for this cluster, once
    os.environ.pop("COLLECTIVE_TUNING", None)
    ones, runs = [], []
    for _ in range(args.jobs):  # alternating: one process, the cluster, one process, ...
        ones.append(launch(args, 0, args.timeout))
        runs.append(launch(args, args.hosts, args.timeout))
    med = statistics.median
    one = med(r["plain_step_s"] for r in ones)
    P, cores = runs[0]["P"], os.cpu_count()
    plain = med(r["plain_step_s"] for r in runs)
    print(f"\n## scaling across {args.hosts} virtual hosts x {args.ranks_per_host} ranks "
          f"({'tbf ' + args.rate if args.rate else 'unshaped'}, {args.netmod}), char GPT "
          f"{runs[0]['params'] / 1e6:.2f} M parameters, batch {BATCH}x{BLOCK} tokens per rank, "
          f"{CAP_MB} MB buckets; medians of {args.jobs} job(s)"
          + ("  OVERSUBSCRIBED" if P > cores else ""))
    print(f"one process: plain step {one * 1e3:.1f} ms; P={P}: plain step {plain * 1e3:.1f} ms "
          f"(same contention, no communication), backward "
          f"{med(r['backward_s'] for r in runs) * 1e3:.1f} ms")
    print(f"{'engine':>12} {'step':>8} {'exposed':>8} {'alone':>8} {'hidden':>7} "
          f"{'weak eff':>9} | {'pred step':>9} {'pred/meas':>9} {'pred alone':>10} "
          f"{'pred/meas':>9}  hidden per job; algorithms")
    rows = {}
    for mode in ENGINES:
        rs = [r[mode] for r in runs]
        row = {k: med(r[k] for r in rs) for k in ("step_s", "exposed_s", "comm_alone_s",
                                                     "hidden_fraction")}
        nan = float("nan")
        row["pred_step_over_meas"] = med(r.get("predicted", {}).get("step_s", nan) / r["step_s"]
                                         for r in rs)
        row["pred_alone_over_meas"] = med(r.get("predicted", {}).get("comm_alone_s", nan)
                                          / r["comm_alone_s"] for r in rs)
        row["pred_step_s"] = med(r.get("predicted", {}).get("step_s", nan) for r in rs)
        row["pred_alone_s"] = med(r.get("predicted", {}).get("comm_alone_s", nan) for r in rs)
        rows[mode] = row
        algos = sorted({a for r in rs for a in r["algorithms"]})
        per_job = " ".join(f"{r['hidden_fraction']:.0%}" for r in rs)
        print(f"{mode:>12} {row['step_s'] * 1e3:>8.1f} {row['exposed_s'] * 1e3:>8.1f} "
              f"{row['comm_alone_s'] * 1e3:>8.1f} {row['hidden_fraction']:>7.0%} "
              f"{one / row['step_s']:>9.2f} | {row['pred_step_s'] * 1e3:>9.1f} "
              f"{row['pred_step_over_meas']:>9.2f} {row['pred_alone_s'] * 1e3:>10.1f} "
              f"{row['pred_alone_over_meas']:>9.2f}  "
              f"{per_job}; {','.join(algos)}")
    print("hidden: 1 - (step - plain step) / reductions alone (medians of the steps, the "
          "engines interleaved step by step; inline cannot hide anything: its reading is the "
          "noise floor); weak eff: one process's plain step over this step (the same per-rank "
          "batch); pred/meas: per job, then the median")
    summary = {"hosts": args.hosts, "ranks_per_host": args.ranks_per_host, "rate": args.rate,
               "netmod": args.netmod, "single_process_plain_step_s": one, "plain_step_s": plain,
               "engines": rows, "jobs": runs, "single_process_jobs": ones}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.json}")
    return summary

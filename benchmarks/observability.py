"""What the observability features cost (issue 15), side by side in one job:

    ./mpirun.sh -n 2 python benchmarks/observability.py [--rounds 15] [--json out.json]

- the stall watchdog per collective call: the Monitor's enter/exit pair alone (in process),
  and small collectives (an 8-byte allreduce: the shared-memory fast path; a 64 KiB allreduce:
  the dispatch path; a barrier: the handshake path) with the Monitor and the watchdog thread
  running vs. a Monitor that tracks nothing and no thread;
- the per-step layout check: bucket 0's ring (the only reduction that carries it) with and
  without the header, at the sizes bucket 0 has (<= 1 MiB), and the Python work per step
  (hashing the step's fields);
- the timeline: the same calls and a DistributedOptimizer step with a recorder vs none;
- check_replicas (per call) and the non-finite check (per step) on an MLP's parameters.

Rounds alternate the variants (so machine noise hits them alike); a round's time is the
maximum over ranks; the table gives medians per call and the difference. Timings on a shared
machine are noisy: compare the columns, not runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import collective as col  # noqa: E402
import dlsys as ds  # noqa: E402
import dlsys.nn.functional as F  # noqa: E402
from collective import checks, stall, trace  # noqa: E402
from collective.algorithms import Ring, layout  # noqa: E402
from collective.comm import context  # noqa: E402
from dlsys import nn  # noqa: E402


class NullMonitor(stall.Monitor):
    """Tracks nothing: the cost of a collective call without the watchdog's bookkeeping."""

    def enter(self, name):
        return False

    def exit(self, token):
        pass


def per_call(ctx, fn, calls):
    """Seconds per call of ``fn`` over ``calls`` calls, the maximum over ranks."""
    col.barrier()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    dt = (time.perf_counter() - t0) / calls
    return float(ctx.comm.allreduce(dt, op=_max()))


def _max():
    from mpi4py import MPI

    return MPI.MAX


def ab(ctx, fn, variants, rounds, calls):
    """{variant: seconds per call}: ``variants`` maps a name to a setup function. The minimum
    over rounds (noise on a shared machine only ever adds time, as timeit's rule), and the
    median under ``variant + " median"``."""
    samples = {v: [] for v in variants}
    for _ in range(rounds):
        for name, setup in variants.items():
            setup()
            samples[name].append(per_call(ctx, fn, calls))
    out = {v: float(np.min(s)) for v, s in samples.items()}
    out.update({f"{v} median": float(np.median(s)) for v, s in samples.items()})
    return out


def model_and_opt():
    ds.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.01),
                                   named_parameters=model.named_parameters())
    return model, opt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    ctx = context()
    if ctx.size < 2:
        sys.exit("run it on >= 2 ranks: ./mpirun.sh -n 2 python benchmarks/observability.py")
    rows, out = [], {"size": ctx.size}

    # -- the stall watchdog ------------------------------------------------------------------
    m = stall.Monitor()
    pair = min(timeit.repeat(lambda: m.exit(m.enter("allreduce")), number=100_000, repeat=5))
    out["monitor_pair_s"] = pair / 100_000
    real, null = ctx.monitor, NullMonitor()
    small, mid = np.ones(1, np.float64), np.ones(16384, np.float32)
    watchdog = ctx.watchdog

    def watched():
        ctx.monitor = real

    def unwatched():
        ctx.monitor = null

    calls = {"allreduce 8 B": lambda: col.allreduce_(small),
             "allreduce 64 KiB": lambda: col.allreduce_(mid, algorithm="ring"),
             "barrier": col.barrier}
    for name, fn in calls.items():
        fn()
        res = ab(ctx, fn, {"on": watched, "off": unwatched}, args.rounds, args.calls)
        rows.append(("stall monitor", name, res))
    ctx.monitor = real
    # the thread itself: the same call with and without a watchdog thread running
    if watchdog is not None:
        watchdog.stop()
        cfg, current = ctx.config, [None]

        def thread_on():
            current[0] = stall.Watchdog(ctx.obs_comm, real, cfg.stall_warn_s, cfg.stall_abort_s,
                                        cfg.abort_grace_s, watchdog.talk)

        def thread_off():
            if current[0] is not None:
                current[0].stop()
                current[0] = None

        fn = calls["allreduce 8 B"]
        res = ab(ctx, fn, {"on": thread_on, "off": thread_off}, args.rounds, args.calls)
        thread_off()
        rows.append(("watchdog thread", "allreduce 8 B", res))

    # -- the timeline ------------------------------------------------------------------------
    rec = trace.Recorder("unused.json", time.perf_counter())

    def tl_on():
        rec.events.clear()
        ctx.timeline = rec

    def tl_off():
        ctx.timeline = None

    for name, fn in calls.items():
        res = ab(ctx, fn, {"on": tl_on, "off": tl_off}, args.rounds, args.calls)
        rows.append(("timeline", name, res))
    model, opt = model_and_opt()
    rng = np.random.default_rng(ctx.rank)
    x = ds.tensor(rng.standard_normal((64, 256)).astype(np.float32))
    y = ds.tensor(rng.integers(0, 10, 64))

    def train_step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    res = ab(ctx, train_step, {"on": tl_on, "off": tl_off}, args.rounds, 20)
    rows.append(("timeline", "MLP training step", res))
    ctx.timeline = None

    # -- the per-step layout check: bucket 0's ring with and without the header -------------
    comm = ctx.world.Dup()
    for nbytes in (4096, 256 << 10, 1 << 20):
        buf = np.zeros(nbytes // 4, np.float32)
        lay = layout(ctx, buf.size)
        scratch = np.empty(max(lay[0]), np.float32)
        check = checks.StepCheck(0, opt.buckets)
        count = [0]

        def ring(with_check, buf=buf, lay=lay, scratch=scratch, check=check, count=count):
            if with_check:
                count[0] += 1
                check.arm(count[0], 1)
            Ring(comm, ctx.rank, ctx.size, buf, np.add, 0, lay, scratch, 99,
                 check=check if with_check else None).wait()
            if with_check:
                check.verify(comm)

        mode = {"v": False}
        res = ab(ctx, lambda mode=mode: ring(mode["v"]),
                 {"on": lambda mode=mode: mode.update(v=True),
                  "off": lambda mode=mode: mode.update(v=False)},
                 args.rounds, max(20, args.calls // 8))
        rows.append(("layout check", f"bucket 0 ring, {nbytes >> 10} KiB", res))
    arm = min(timeit.repeat(lambda: check.arm(12345, 1), number=20_000, repeat=5)) / 20_000
    out["layout_arm_s"] = arm
    step_time = ab(ctx, train_step, {"as configured": lambda: None}, args.rounds, 20)
    out["mlp_step_s"] = step_time["as configured"]
    out["step_check_enabled"] = ctx.config.step_check

    # -- check_replicas and the non-finite check ---------------------------------------------
    named = list(model.named_parameters())
    rep = ab(ctx, lambda: col.check_replicas(named), {"on": lambda: None}, args.rounds, 5)
    fin = min(timeit.repeat(lambda: checks.nonfinite(opt.buckets), number=20, repeat=5)) / 20
    out["check_replicas_s"], out["nonfinite_s"] = rep["on"], fin
    nparams = sum(p.numpy().size for _, p in named)

    if ctx.rank == 0:
        print(f"observability overhead, {ctx.size} ranks, per call: the best of {args.rounds} "
              f"alternating rounds (medians in brackets)\n")
        print(f"  {'feature':<16} {'call':<26} {'on':>10} {'off':>10} {'added':>10}  "
              f"{'(medians: on, off)':>22}")
        for feat, name, r in rows:
            print(f"  {feat:<16} {name:<26} {r['on'] * 1e6:8.2f}us {r['off'] * 1e6:8.2f}us "
                  f"{(r['on'] - r['off']) * 1e6:+8.2f}us  ({r['on median'] * 1e6:9.2f}, "
                  f"{r['off median'] * 1e6:9.2f})")
        print(f"\n  stall Monitor enter+exit pair alone: {out['monitor_pair_s'] * 1e9:.0f} ns")
        print(f"  layout check, Python work per step (hash of the step's fields): "
              f"{arm * 1e6:.2f} us")
        print(f"  MLP ({nparams} parameters, {len(opt.buckets)} buckets) training step: "
              f"{out['mlp_step_s'] * 1e3:.2f} ms (COLLECTIVE_STEP_CHECK="
              f"{int(ctx.config.step_check)})")
        print(f"  check_replicas on it: {out['check_replicas_s'] * 1e3:.2f} ms per call; "
              f"non-finite check: {fin * 1e3:.3f} ms per step")
    out["rows"] = [dict(feature=f, call=n, **{k.replace(" ", "_") + "_s": v
                                                for k, v in r.items()}) for f, n, r in rows]
    if args.json and ctx.rank == 0:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

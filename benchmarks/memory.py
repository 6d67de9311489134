"""Activation memory and step time with gradient checkpointing (Chen et al. 2016), one thread.

    .venv/bin/python benchmarks/memory.py [--layers 8 16 32] [--iters 5] [--json out.json]

Model: a GPT-like stack (token + position embeddings, N pre-LN transformer blocks: LayerNorm,
causal nn.MultiheadAttention (4 heads), residual, LayerNorm, MLP 4d with GELU, residual; final
LayerNorm and a vocabulary head), d=128, context 64, batch 16, vocabulary 65. For each depth N:
no checkpointing, ``ds.utils.checkpoint_sequential`` with round(sqrt(N)) segments (the last
segment, with the remainder of N // segments, runs without checkpointing, as in PyTorch), and
with N segments (every block checkpointed but the last).

Peak memory: ``ds.cpu().memory_stats()`` (tracemalloc) over forward + backward, above the
bytes live before the step (weights, optimizer state, the batch), so it counts activations, the
graph and the weight gradients. Step time: forward + backward + AdamW step, median of --iters
steps per mode with tracing off, the modes interleaved step by step so a noisy neighbour slows
them alike; wall and CPU (process) time. The last column is the step time with tracing on
(median of 3: the memory counter's cost).
"""

from __future__ import annotations

import os

# NOTE: thread pools are sized when numpy / numba load: set them before any import.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dlsys as ds  # noqa: E402
import dlsys.nn.functional as F  # noqa: E402
from dlsys import nn  # noqa: E402
from dlsys.backend import cpu_memory_stats  # noqa: E402
from dlsys.utils import checkpoint_sequential  # noqa: E402

D, HEADS, CONTEXT, BATCH, VOCAB = 128, 4, 64, 16, 65


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.register_buffer("mask", ds.tensor(np.triu(np.ones((CONTEXT, CONTEXT), bool), 1)),
                             persistent=False)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask, need_weights=False, is_causal=True)[0]
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(CONTEXT, D)
        self.blocks = nn.Sequential(*[Block(D, HEADS) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, VOCAB)

    def forward(self, idx, segments=0):
        x = self.tok(idx) + self.pos(ds.arange(idx.shape[1]))
        x = checkpoint_sequential(self.blocks, segments, x) if segments else self.blocks(x)
        return self.head(self.ln(x))


def make_step(layers, segments, seed=0):
    ds.manual_seed(seed)
    model = GPT(layers)
    opt = ds.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    idx = ds.tensor(rng.integers(0, VOCAB, (BATCH, CONTEXT)))
    tgt = ds.tensor(rng.integers(0, VOCAB, (BATCH * CONTEXT,)))

    def fwd_bwd():
        opt.zero_grad()
        loss = F.cross_entropy(model(idx, segments).reshape(-1, VOCAB), tgt)
        loss.backward()
        return loss

    def step():
        fwd_bwd()
        opt.step()

    return fwd_bwd, step, sum(p.numel() * p.dtype.itemsize for p in model.parameters())


def peak_bytes(fwd_bwd):
    dev = ds.cpu()
    gc.collect()
    dev.reset_peak_memory_stats()
    base = dev.memory_allocated()
    fwd_bwd()
    return dev.max_memory_allocated() - base


def timed(fn):
    gc.collect()
    w, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w) * 1e3, (time.process_time() - c) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    rows = []
    for n in args.layers:
        k = round(math.sqrt(n))
        modes = {"none": 0, f"sqrt: {k} segments": k, f"every block: {n}": n}
        steps = {name: make_step(n, segs) for name, segs in modes.items()}
        peaks = {name: peak_bytes(s[0]) for name, s in steps.items()}  # also the warm-up
        traced = {name: statistics.median(timed(s[1])[0] for _ in range(3))
                  for name, s in steps.items()}
        cpu_memory_stats.stop()
        for s in steps.values():
            s[1]()
        times = {name: ([], []) for name in steps}
        for _ in range(args.iters):
            for name, s in steps.items():
                w, c = timed(s[1])
                times[name][0].append(w)
                times[name][1].append(c)
        base = next(iter(modes))
        for name in modes:
            wall = statistics.median(times[name][0])
            cpu = statistics.median(times[name][1])
            rows.append({
                "layers": n, "mode": name, "params_mib": steps[name][2] / 2**20,
                "peak_mib": peaks[name] / 2**20, "peak_ratio": peaks[name] / peaks[base],
                "wall_ms": wall, "cpu_ms": cpu,
                "time_ratio": wall / statistics.median(times[base][0]),
                "cpu_ratio": cpu / statistics.median(times[base][1]),
                "traced_ms": traced[name]})
        del steps
    print(f"GPT-like stack: d={D}, {HEADS} heads, context {CONTEXT}, batch {BATCH}, "
          f"vocabulary {VOCAB}; one thread; {args.iters} steps per mode, medians")
    head = (f"{'layers':>6} {'mode':<20} {'params MiB':>10} {'peak MiB':>9} {'x none':>7} "
            f"{'wall ms':>8} {'x none':>7} {'cpu ms':>8} {'x none':>7} {'traced ms':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['layers']:>6} {r['mode']:<20} {r['params_mib']:>10.1f} {r['peak_mib']:>9.1f} "
              f"{r['peak_ratio']:>7.2f} {r['wall_ms']:>8.0f} {r['time_ratio']:>7.2f} "
              f"{r['cpu_ms']:>8.0f} {r['cpu_ratio']:>7.2f} {r['traced_ms']:>9.0f}")
    if args.json:
        meta = {"d": D, "heads": HEADS, "context": CONTEXT, "batch": BATCH, "vocab": VOCAB,
                "iters": args.iters, "threads": os.environ.get("OMP_NUM_THREADS"),
                "loadavg": os.getloadavg()}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))


if __name__ == "__main__":
    main()

"""nn-op benchmark: conv2d, pooling, scaled_dot_product_attention and the fused activations and
norms (GELU, LayerNorm, RMSNorm, softmax, BatchNorm), dlsys vs PyTorch CPU side by side, one
thread, forward and forward+backward (median ms, interleaved samples).

    .venv/bin/python benchmarks/nn_ops.py [--only conv] [--repeat 15] [--json PATH]
    .venv/bin/python benchmarks/nn_ops.py --block 256,512,1024,4096   # conv block-size sweep

The conv cases are ResNet-20's layer shapes at batch 64 (3x3 convs with 16/32/64 channels at
32/16/8, the stride-2 convs and 1x1 shortcuts between stages), a depthwise and a grouped conv
(against a loop of dense convs over the groups, the "reasonable loop" they must beat); the
attention case is the GPT of examples/train_gpt.py (B=16, H=4, T=64, D=32, causal).
Ratio = dlsys / torch (< 1: dlsys is faster). --block times dlsys's conv at several
COLS_PER_BLOCK values (dlsys.backend.cpu_kernels_conv) instead.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"  # NOTE: before numpy / numba / torch are imported

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import dlsys as ds  # noqa: E402
import dlsys.nn.functional as F  # noqa: E402
from dlsys.backend import cpu_kernels_conv as KC  # noqa: E402

# (name, x shape, w shape, stride, padding, groups)
CONVS = [
    ("resnet 16ch 32x32", (64, 16, 32, 32), (16, 16, 3, 3), 1, 1, 1),
    ("resnet 16->32 s2", (64, 16, 32, 32), (32, 16, 3, 3), 2, 1, 1),
    ("resnet 32ch 16x16", (64, 32, 16, 16), (32, 32, 3, 3), 1, 1, 1),
    ("resnet 32->64 s2", (64, 32, 16, 16), (64, 32, 3, 3), 2, 1, 1),
    ("resnet 64ch 8x8", (64, 64, 8, 8), (64, 64, 3, 3), 1, 1, 1),
    ("resnet stem 3->16", (64, 3, 32, 32), (16, 3, 3, 3), 1, 1, 1),
    ("shortcut 1x1 s2", (64, 16, 32, 32), (32, 16, 1, 1), 2, 0, 1),
    ("depthwise 32ch 16x16", (64, 32, 16, 16), (32, 1, 3, 3), 1, 1, 32),
    ("grouped g4 64ch 8x8", (64, 64, 8, 8), (64, 16, 3, 3), 1, 1, 4),
]
POOLS = [
    ("max_pool 2 (LeNet)", (128, 6, 28, 28), lambda F, x: F.max_pool2d(x, 2)),
    ("max_pool 3 s2 p1", (64, 16, 32, 32), lambda F, x: F.max_pool2d(x, 3, 2, 1)),
    ("avg_pool 3 s2 p1", (64, 16, 32, 32), lambda F, x: F.avg_pool2d(x, 3, 2, 1)),
    ("adaptive_avg 1 (ResNet)", (64, 64, 8, 8), lambda F, x: F.adaptive_avg_pool2d(x, 1)),
]


def _inner(fn):
    fn()
    fn()  # warm-up: compile / load Numba's cache, fault pages in
    t0 = time.perf_counter()
    fn()
    return max(1, int(0.01 / max(time.perf_counter() - t0, 1e-7)))


def measure(fns, repeat):
    """Median seconds per call of each function; samples interleave the functions so that a
    noisy neighbour slows all of them alike."""
    inner = [_inner(f) for f in fns]
    samples = [[] for _ in fns]
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                f()
            samples[i].append((time.perf_counter() - t0) / inner[i])
    return [statistics.median(s) for s in samples]


def _arrays(rng, *shapes):
    return [rng.standard_normal(sh).astype(np.float32) for sh in shapes]


def _dlsys(make, arrays):
    """(forward, forward + backward) of make(F, *tensors) in dlsys."""
    ts = [ds.tensor(a, requires_grad=True) for a in arrays]
    with ds.no_grad():
        shape = make(F, *ts).shape
    g = ds.tensor(np.random.default_rng(1).standard_normal(shape).astype(np.float32))

    def fwd():
        with ds.no_grad():
            make(F, *ts)

    def fb():
        make(F, *ts).backward(g)

    return fwd, fb


def _torch(torch, make, arrays):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    with torch.no_grad():
        shape = make(torch.nn.functional, *ts).shape
    g = torch.tensor(np.random.default_rng(1).standard_normal(tuple(shape)).astype(np.float32))

    def fwd():
        with torch.no_grad():
            make(torch.nn.functional, *ts)

    def fb():
        make(torch.nn.functional, *ts).backward(g)

    return fwd, fb


def _pair(torch, make, arrays):
    return _dlsys(make, arrays) + _torch(torch, make, arrays)


def _conv(s, p, g):
    def conv(F, x, w):
        return F.conv2d(x, w, None, s, p, 1, g)
    return conv


def _looped(s, p, g):
    """The grouped conv as a loop of dense convs over the groups (what it must beat)."""
    def looped(F, x, w):
        c, o = x.shape[1] // g, w.shape[0] // g
        parts = [F.conv2d(x[:, i * c:(i + 1) * c], w[i * o:(i + 1) * o], None, s, p)
                 for i in range(g)]
        return _cat(F, parts)
    return looped


def _cat(F, parts):
    if F.__name__.startswith("dlsys"):
        return ds.concatenate(parts, 1)
    return sys.modules["torch"].cat(parts, 1)


def _attn(F, q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def cases(torch, rng, only):
    out = []
    for name, xs, ws, s, p, g in CONVS:
        arrays = _arrays(rng, xs, ws)
        out.append((name, _pair(torch, _conv(s, p, g), arrays)))
        if g > 1:
            out.append((name + " (loop)", _pair(torch, _looped(s, p, g), arrays)))
    for name, xs, fn in POOLS:
        out.append((name, _pair(torch, fn, _arrays(rng, xs))))
    q = (16, 4, 64, 32)
    out.append(("sdpa GPT 16x4x64x32 causal", _pair(torch, _attn, _arrays(rng, q, q, q))))
    for name, shapes, fn in FUSED:
        out.append((name, _pair(torch, fn, _arrays(rng, *shapes))))
    return [c for c in out if not only or only in c[0]]


def _batch_norm(F, x, w, b):
    if F.__name__.startswith("dlsys"):
        from dlsys.ops.norm import batch_norm_train

        return batch_norm_train(x, w, b)[0]
    return F.batch_norm(x, None, None, w, b, training=True)


# the fused activation / normalisation ops at the GPT's (16, 64, d) and ResNet-20's shapes
FUSED = [
    ("gelu GPT 16x64x512", [(16, 64, 512)], lambda F, x: F.gelu(x)),
    ("gelu tanh GPT 16x64x512", [(16, 64, 512)], lambda F, x: F.gelu(x, approximate="tanh")),
    ("layer_norm GPT 16x64x128", [(16, 64, 128), (128,), (128,)],
     lambda F, x, w, b: F.layer_norm(x, (128,), w, b)),
    ("rms_norm GPT 16x64x128", [(16, 64, 128), (128,)],
     lambda F, x, w: F.rms_norm(x, (128,), w, 1e-6)),
    ("softmax 1024x65", [(1024, 65)], lambda F, x: F.softmax(x, dim=-1)),
    ("log_softmax 1024x65", [(1024, 65)], lambda F, x: F.log_softmax(x, dim=-1)),
    ("batch_norm 64x16x32x32", [(64, 16, 32, 32), (16,), (16,)], _batch_norm),
    ("batch_norm 64x64x8x8", [(64, 64, 8, 8), (64,), (64,)], _batch_norm),
]


def _at_block(b, f):
    def run():
        KC.COLS_PER_BLOCK = b
        f()
    return run


def block_sweep(sizes, repeat, rng):
    """dlsys's conv at several COLS_PER_BLOCK values (one thread, median ms)."""
    print(f"{'conv':<22} " + " ".join(f"{'fwd ' + str(b):>10} {'f+b ' + str(b):>10}"
                                      for b in sizes))
    for name, xs, ws, s, p, g in CONVS:
        fwd, fb = _dlsys(_conv(s, p, g), _arrays(rng, xs, ws))
        fns = [_at_block(b, f) for b in sizes for f in (fwd, fb)]
        ts = measure(fns, repeat)
        print(f"{name:<22} " + " ".join(f"{t * 1e3:>10.3f}" for t in ts), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--only", default=None, help="run cases whose name contains this")
    ap.add_argument("--block", default=None, help="comma-separated COLS_PER_BLOCK values")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.block:
        block_sweep([int(b) for b in args.block.split(",")], args.repeat, rng)
        return []
    import torch

    torch.set_num_threads(1)
    rows = []
    print("dlsys vs torch, float32, 1 thread, median ms of interleaved samples")
    print(f"{'case':<28} {'dlsys fwd':>10} {'torch fwd':>10} {'ratio':>6}   {'dlsys f+b':>10} "
          f"{'torch f+b':>10} {'ratio':>6}")
    for name, fns in cases(torch, rng, args.only):
        df, dfb, tf, tfb = (t * 1e3 for t in measure(list(fns), args.repeat))
        rows.append(dict(case=name, dlsys_fwd_ms=df, torch_fwd_ms=tf, fwd_ratio=df / tf,
                         dlsys_fb_ms=dfb, torch_fb_ms=tfb, fb_ratio=dfb / tfb))
        print(f"{name:<28} {df:>10.3f} {tf:>10.3f} {df / tf:>6.2f}   {dfb:>10.3f} {tfb:>10.3f} "
              f"{dfb / tfb:>6.2f}", flush=True)
    if args.json:
        meta = dict(numpy=np.__version__, torch=torch.__version__, threads=1,
                    repeat=args.repeat, loadavg=os.getloadavg())
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    return rows


if __name__ == "__main__":
    main()

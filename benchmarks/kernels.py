"""CPU kernel benchmark: each Numba kernel against its numpy reference (median times).

    .venv/bin/python benchmarks/kernels.py [--json PATH] [--repeat 15] [--only NAME] [--dtype f32]

Prints a table (kernel, shape, numpy ms, numba ms, ratio = numpy / numba; > 1 means Numba is
faster) and writes it as JSON with --json. The first call of each kernel (compilation, or
loading from Numba's cache) is excluded. One thread (BLAS, OpenMP, Numba) unless the
environment already sets one, to match the training-step benchmark.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # NOTE: before numpy/numba are imported

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlsys.backend import cpu_kernels as K  # noqa: E402
from dlsys.backend import cpu_kernels_attention as KA  # noqa: E402
from dlsys.backend import cpu_kernels_conv as KC  # noqa: E402
from dlsys.backend import cpu_kernels_nn as KN  # noqa: E402
from dlsys.backend import cpu_kernels_norm as KNo  # noqa: E402
from dlsys.backend import cpu_kernels_optim as KO  # noqa: E402
from dlsys.backend import cpu_kernels_pool as KP  # noqa: E402


def _inner(fn):
    fn()  # warm-up: compile / load the cache, fault pages in
    t0 = time.perf_counter()
    fn()
    return max(1, int(2e-3 / max(time.perf_counter() - t0, 1e-7)))  # samples of >= ~2 ms


def _sample(fn, inner):
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def _time_pair(ref, fast, repeat):
    """Median ms of each; samples alternate between the two so that both see the same load
    (the machine is shared), which keeps their ratio meaningful."""
    n_ref, n_fast = _inner(ref), _inner(fast)
    s_ref, s_fast = [], []
    for _ in range(repeat):
        s_ref.append(_sample(ref, n_ref))
        s_fast.append(_sample(fast, n_fast))
    return statistics.median(s_ref) * 1e3, statistics.median(s_fast) * 1e3


def cases(dt, rng):
    def r(*shape):
        return rng.standard_normal(shape).astype(dt)

    out = []
    for shape in [(128, 10), (512, 100), (256, 1000)]:
        lg = r(*shape)
        tg = rng.integers(0, shape[1], shape[0])
        _, probs = KN.cross_entropy_ref(lg, tg)
        out += [
            ("cross_entropy", shape, lambda lg=lg, tg=tg: KN.cross_entropy_ref(lg, tg),
             lambda lg=lg, tg=tg: KN.cross_entropy_fast(lg, tg)),
            ("cross_entropy_backward", shape,
             lambda p=probs, tg=tg: KN.cross_entropy_backward_ref(p, tg, 1.0),
             lambda p=probs, tg=tg: KN.cross_entropy_backward_fast(p, tg, 1.0)),
            ("softmax", shape, lambda x=lg: KN.softmax_ref(x), lambda x=lg: KN.softmax_fast(x)),
            ("log_softmax", shape, lambda x=lg: KN.log_softmax_ref(x),
             lambda x=lg: KN.log_softmax_fast(x)),
        ]
    # convolutions: LeNet's conv1 5x5 pad 2 and conv2 5x5, ResNet's 3x3 (gemm route),
    # a depthwise 3x3 (direct route); the reference is im2col (numpy windows) + matmul
    for xs, ws, p, g in [((128, 1, 28, 28), (6, 1, 5, 5), 2, 1), ((128, 6, 14, 14),
                                                                 (16, 6, 5, 5), 0, 1),
                         ((64, 16, 32, 32), (16, 16, 3, 3), 1, 1),
                         ((64, 32, 16, 16), (32, 1, 3, 3), 1, 32)]:
        x, w = r(*xs), r(*ws)
        geom = ((1, 1), (p, p, p, p), (1, 1), g)
        gr = r(*KC.conv2d_ref(x, w, *geom).shape)
        tag = f"{xs} k{ws[2]} g{g}"
        out += [
            ("conv2d", tag, lambda x=x, w=w, geom=geom: KC.conv2d_ref(x, w, *geom),
             lambda x=x, w=w, geom=geom: KC.conv2d_fast(x, w, *geom)),
            ("conv2d_backward_input", tag,
             lambda g=gr, w=w, s=xs, geom=geom: KC.conv2d_backward_input_ref(g, w, s, *geom),
             lambda g=gr, w=w, s=xs, geom=geom: KC.conv2d_backward_input_fast(g, w, s, *geom)),
            ("conv2d_backward_weight", tag,
             lambda x=x, g=gr, s=ws, geom=geom: KC.conv2d_backward_weight_ref(x, g, s, *geom),
             lambda x=x, g=gr, s=ws, geom=geom: KC.conv2d_backward_weight_fast(x, g, s, *geom)),
        ]
    for xs, geom in [((128, 6, 28, 28), (2, 2, 2, 2)), ((128, 16, 10, 10), (2, 2, 2, 2)),
                     ((64, 16, 32, 32), (3, 3, 2, 2, 1, 1))]:
        x = r(*xs)
        o, am = KP.max_pool2d_ref(x, *geom)
        g = r(*o.shape)
        out += [
            ("max_pool2d", (xs, geom), lambda x=x, ge=geom: KP.max_pool2d_ref(x, *ge),
             lambda x=x, ge=geom: KP.max_pool2d_fast(x, *ge)),
            ("max_pool2d_backward", (xs, geom),
             lambda g=g, a=am, s=xs: KP.max_pool2d_backward_ref(g, a, s),
             lambda g=g, a=am, s=xs: KP.max_pool2d_backward_fast(g, a, s)),
            ("avg_pool2d", (xs, geom), lambda x=x, ge=geom: KP.avg_pool2d_ref(x, *ge),
             lambda x=x, ge=geom: KP.avg_pool2d_fast(x, *ge)),
            ("avg_pool2d_backward", (xs, geom),
             lambda g=g, s=xs, ge=geom: KP.avg_pool2d_backward_ref(g, s, *ge),
             lambda g=g, s=xs, ge=geom: KP.avg_pool2d_backward_fast(g, s, *ge)),
        ]
    # attention at the GPT's shape (B*H=64, T=64, D=32), causal
    qkv = (r(64, 64, 32), r(64, 64, 32), r(64, 64, 32))
    pa = KA.attention_ref(*qkv, None, 0.18, True, None)[1]
    ga = r(64, 64, 32)
    out += [
        ("attention", "(64, 64, 32) causal",
         lambda t=qkv: KA.attention_ref(*t, None, 0.18, True, None),
         lambda t=qkv: KA.attention_fast(*t, None, 0.18, True, None)),
        ("attention_backward", "(64, 64, 32) causal",
         lambda t=qkv: KA.attention_backward_ref(*t, pa, None, ga, 0.18),
         lambda t=qkv: KA.attention_backward_fast(*t, pa, None, ga, 0.18)),
    ]
    n = 784 * 256
    p, g, b, m, v = r(n), r(n), r(n), np.zeros(n, dt), np.zeros(n, dt)
    out += [
        ("sgd momentum+wd", (n,),
         lambda: KO.sgd_ref(p, g, b, 1e-3, 0.9, 1e-4, False, 0.0, False),
         lambda: KO.sgd_fast(p, g, b, 1e-3, 0.9, 1e-4, False, 0.0, False)),
        ("sgd plain", (n,), lambda: KO.sgd_ref(p, g, None, 1e-3, 0.0, 0.0, False, 0.0, False),
         lambda: KO.sgd_fast(p, g, None, 1e-3, 0.0, 0.0, False, 0.0, False)),
        ("adamw", (n,), lambda: KO.adam_ref(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3, True),
         lambda: KO.adam_fast(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3, True)),
    ]
    for shape in [(128 * 28 * 28, 6), (128 * 10 * 10, 16), (128, 256)]:  # bias gradients
        a, o = r(*shape), np.empty(shape[1], dt)
        out.append(("sum_leading", shape, lambda a=a: K.sum_leading_ref(a),
                    lambda a=a, o=o: K.sum_leading_nb(a, o)))
    p2, g2, m2, v2 = r(1024), r(1024), np.zeros(1024, dt), np.zeros(1024, dt)
    out.append(("adamw", (1024,),
                lambda: KO.adam_ref(p2, g2, m2, v2, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3, True),
                lambda: KO.adam_fast(p2, g2, m2, v2, 1e-3, 0.9, 0.999, 1e-8, 1e-2, 3, True)))
    emb = np.zeros((1000, 64), dt)
    idx = rng.integers(0, 1000, 4096)
    vals = r(4096, 64)
    out.append(("index_add", "(1000, 64) <- 4096 rows", lambda: K.index_add_ref(emb, idx, vals),
                lambda: K.index_add_fast(emb, idx, vals)))
    for shape in [(128, 256), (1024, 1024)]:
        x, y, gr = r(*shape), r(*shape), r(*shape)
        for op in ("gelu", "gelu_grad", "sigmoid"):
            out.append((op, shape, lambda op=op, x=x: K.UNARY_REF[op](x),
                        lambda op=op, x=x: K.unary_nb(op, x)))
        for op in ("relu", "tanh", "sigmoid", "gelu"):
            out.append((f"{op}_backward", shape,
                        lambda op=op, x=x, y=y, gr=gr: K.unary_backward_ref(op, x, y, gr),
                        lambda op=op, x=x, y=y, gr=gr: K.unary_backward_nb(op, x, y, gr)))
    out += _fused_cases(r)
    return out


def _fused_cases(r):
    """GELU (tanh), the norms and the softmax backward at the GPT's and ResNet-20's shapes."""
    out = []
    x = r(1024, 512)
    for op in ("gelu_tanh", "gelu_tanh_grad"):
        out.append((op, x.shape, lambda op=op: K.UNARY_REF[op](x), lambda op=op: K.unary_nb(op, x)))
    out.append(("gelu_tanh_backward", x.shape,
                lambda: K.unary_backward_ref("gelu_tanh", x, None, x),
                lambda: K.unary_backward_nb("gelu_tanh", x, None, x)))
    h, w, b, g = r(1024, 128), r(128), r(128), r(1024, 128)
    _, mu, rs = KNo.layer_norm_ref(h, w, b, 1e-5)
    _, rr = KNo.rms_norm_ref(h, w, 1e-6)
    out += [
        ("layer_norm", h.shape, lambda: KNo.layer_norm_ref(h, w, b, 1e-5),
         lambda: KNo.layer_norm_fast(h, w, b, 1e-5)),
        ("layer_norm_backward", h.shape, lambda: KNo.layer_norm_backward_ref(g, h, w, mu, rs),
         lambda: KNo.layer_norm_backward_fast(g, h, w, mu, rs)),
        ("rms_norm", h.shape, lambda: KNo.rms_norm_ref(h, w, 1e-6),
         lambda: KNo.rms_norm_fast(h, w, 1e-6)),
        ("rms_norm_backward", h.shape, lambda: KNo.rms_norm_backward_ref(g, h, w, rr),
         lambda: KNo.rms_norm_backward_fast(g, h, w, rr)),
    ]
    for shape in [(64, 16, 1024), (64, 64, 64)]:  # ResNet-20's first and last stage
        xb, gb = r(*shape), r(*shape)
        wb, bb = r(shape[1]), r(shape[1])
        _, mb, _, rb = KNo.batch_norm_ref(xb, wb, bb, 1e-5)
        out += [
            ("batch_norm", shape, lambda xb=xb, wb=wb, bb=bb: KNo.batch_norm_ref(xb, wb, bb, 1e-5),
             lambda xb=xb, wb=wb, bb=bb: KNo.batch_norm_fast(xb, wb, bb, 1e-5)),
            ("batch_norm_backward", shape,
             lambda xb=xb, gb=gb, wb=wb, mb=mb, rb=rb:
                 KNo.batch_norm_backward_ref(gb, xb, wb, mb, rb),
             lambda xb=xb, gb=gb, wb=wb, mb=mb, rb=rb:
                 KNo.batch_norm_backward_fast(gb, xb, wb, mb, rb)),
        ]
    lg = r(1024, 65)  # the GPT's logits
    p = KN.softmax_ref(lg)
    out += [
        ("softmax_backward", lg.shape, lambda: KNo.softmax_backward_ref(p, lg),
         lambda: KNo.softmax_backward_fast(p, lg)),
        ("log_softmax_backward", lg.shape, lambda: KNo.log_softmax_backward_ref(p, lg),
         lambda: KNo.softmax_backward_fast(p, lg, True)),
    ]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--only", default=None, help="run kernels whose name contains this")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    args = ap.parse_args()
    dt = np.float32 if args.dtype == "f32" else np.float64
    rows = []
    print(f"{'kernel':<24} {'shape':<34} {'numpy ms':>10} {'numba ms':>10} {'ratio':>7}")
    for name, shape, ref, fast in cases(dt, np.random.default_rng(0)):
        if args.only and args.only not in name:
            continue
        t_ref, t_nb = _time_pair(ref, fast, args.repeat)
        rows.append(dict(kernel=name, shape=str(shape), numpy_ms=t_ref, numba_ms=t_nb,
                         ratio=t_ref / t_nb))
        print(f"{name:<24} {str(shape):<34} {t_ref:>10.4f} {t_nb:>10.4f} {t_ref / t_nb:>7.2f}",
              flush=True)
    if args.json:
        meta = dict(dtype=args.dtype, repeat=args.repeat, numpy=np.__version__,
                    load_avg=os.getloadavg()[0],
                    python=platform.python_version(), machine=platform.machine(),
                    threads=os.environ.get("NUMBA_NUM_THREADS"))
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))


if __name__ == "__main__":
    main()

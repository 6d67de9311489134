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
from dlsys.backend import cpu_kernels_nn as KN  # noqa: E402
from dlsys.backend import cpu_kernels_optim as KO  # noqa: E402


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
    # LeNet-style convolutions: conv1 5x5 pad 2 on 1x28x28, conv2 5x5 on 6x14x14
    for xs, k, p in [((128, 1, 28, 28), 5, 2), ((128, 6, 14, 14), 5, 0), ((32, 16, 16, 16), 3, 1)]:
        x = r(*xs)
        cols = KN.im2col_ref(x, k, k, 1, 1, p, p).copy()
        tag = f"{xs} k{k} p{p}"
        out += [
            ("im2col", tag, lambda x=x, k=k, p=p: KN.im2col_ref(x, k, k, 1, 1, p, p),
             lambda x=x, k=k, p=p: KN.im2col_fast(x, k, k, 1, 1, p, p)),
            ("col2im", tag, lambda c=cols, xs=xs, k=k, p=p: KN.col2im_ref(c, xs, k, k, 1, 1, p, p),
             lambda c=cols, xs=xs, k=k, p=p: KN.col2im_fast(c, xs, k, k, 1, 1, p, p)),
        ]
    for xs in [(128, 6, 28, 28), (128, 16, 10, 10)]:
        x = r(*xs)
        o, am = KN.max_pool2d_ref(x, 2, 2, 2, 2)
        g = r(*o.shape)
        out += [
            ("max_pool2d", xs, lambda x=x: KN.max_pool2d_ref(x, 2, 2, 2, 2),
             lambda x=x: KN.max_pool2d_fast(x, 2, 2, 2, 2)),
            ("max_pool2d_backward", xs, lambda g=g, a=am, s=xs: KN.max_pool2d_backward_ref(g, a, s),
             lambda g=g, a=am, s=xs: KN.max_pool2d_backward_fast(g, a, s)),
            ("avg_pool2d", xs, lambda x=x: KN.avg_pool2d_ref(x, 2, 2, 2, 2),
             lambda x=x: KN.avg_pool2d_fast(x, 2, 2, 2, 2)),
            ("avg_pool2d_backward", xs,
             lambda g=g, s=xs: KN.avg_pool2d_backward_ref(g, s, 2, 2, 2, 2),
             lambda g=g, s=xs: KN.avg_pool2d_backward_fast(g, s, 2, 2, 2, 2)),
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
    print(f"{'kernel':<24} {'shape':<26} {'numpy ms':>10} {'numba ms':>10} {'ratio':>7}")
    for name, shape, ref, fast in cases(dt, np.random.default_rng(0)):
        if args.only and args.only not in name:
            continue
        t_ref, t_nb = _time_pair(ref, fast, args.repeat)
        rows.append(dict(kernel=name, shape=str(shape), numpy_ms=t_ref, numba_ms=t_nb,
                         ratio=t_ref / t_nb))
        print(f"{name:<24} {str(shape):<26} {t_ref:>10.4f} {t_nb:>10.4f} {t_ref / t_nb:>7.2f}",
              flush=True)
    if args.json:
        meta = dict(dtype=args.dtype, repeat=args.repeat, numpy=np.__version__,
                    load_avg=os.getloadavg()[0],
                    python=platform.python_version(), machine=platform.machine(),
                    threads=os.environ.get("NUMBA_NUM_THREADS"))
        Path(args.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))


if __name__ == "__main__":
    main()

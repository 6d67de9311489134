"""CUDA backend benchmark (needs a real GPU): matmul GFLOP/s vs cuBLAS (through CuPy),
elementwise GB/s vs the device's copy bandwidth, MNIST MLP training step vs PyTorch.

    python benchmarks/cuda.py                 # full run, prints a table
    python benchmarks/cuda.py --quick --json out.json

Targets (DESIGN.md): Numba CUDA matmul >= 0.5x cuBLAS float32; elementwise >= 0.7x of the
device's copy bandwidth. Exits with a clear message (status 2) when no GPU is present or the
Numba CUDA simulator is on (simulated timings mean nothing). CuPy and PyTorch are optional:
their columns are left out when they are not installed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# NOTE: `python benchmarks/cuda.py` puts benchmarks/ first on sys.path, where this file would
# shadow the `cuda` package of cuda-bindings (numba-cuda imports cuda.bindings): drop it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))  # run from a checkout


INNER = 10  # calls per timed sample (see _time)


def _need_gpu(smoke=False):
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0") and not smoke:
        print("benchmarks/cuda.py: NUMBA_ENABLE_CUDASIM is set; the simulator's timings are "
              "meaningless. Unset it and run on a machine with an NVIDIA GPU (--smoke only "
              "checks that this script runs).", file=sys.stderr)
        sys.exit(2)
    try:
        from numba import cuda
    except Exception as e:  # numba-cuda missing or broken
        print(f"benchmarks/cuda.py: numba-cuda does not import ({e}); install "
              "`dlsys-collective[cuda]`.", file=sys.stderr)
        sys.exit(2)
    if not cuda.is_available():
        print("benchmarks/cuda.py: no CUDA GPU is available (numba.cuda.is_available() is "
              "False); nothing to measure.", file=sys.stderr)
        sys.exit(2)
    return cuda


def _time(fn, sync, repeat, warmup=2, inner=INNER):
    """Median seconds per fn() call: ``repeat`` samples of ``inner`` back-to-back calls, the
    device synchronised before and after each sample.

    NOTE: back-to-back launches let the host queue the next call while the device runs this
    one (as in a training loop, which never waits per kernel), so large kernels are timed by
    the device and tiny ones by the host's launch overhead. Every library gets the same."""
    for _ in range(warmup):
        fn()
    sync()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        ts.append((time.perf_counter() - t0) / inner)
    return float(np.median(ts))


def _try_cupy():
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:
        return None


def _try_torch():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except Exception:
        return None


def _square_operands(n):
    """Two float32 n x n standard-normal matrices, the same in every benchmark for a given n."""
    rng = np.random.default_rng(n)
    return (rng.standard_normal((n, n), dtype=np.float32),
            rng.standard_normal((n, n), dtype=np.float32))


def bench_matmul(dev, cuda, cupy, sizes, repeat):
    rows = []
    for n in sizes:
        a, b = _square_operands(n)
        da, db = dev.from_numpy(a), dev.from_numpy(b)
        flops = 2.0 * n ** 3
        t = _time(lambda da=da, db=db: dev.matmul(da, db), cuda.synchronize, repeat)
        row = dict(n=n, dlsys_gflops=flops / t / 1e9)
        if n <= 1024:  # NOTE: correctness spot check against the host (float32 tolerance)
            err = np.abs(dev.to_numpy(dev.matmul(da, db)) - a @ b).max()
            row["max_abs_err"] = float(err)
        if cupy is not None:
            ca, cb = cupy.asarray(a), cupy.asarray(b)
            tc = _time(lambda ca=ca, cb=cb: ca @ cb, cupy.cuda.Device().synchronize, repeat)
            row["cublas_gflops"] = flops / tc / 1e9
            row["ratio"] = row["dlsys_gflops"] / row["cublas_gflops"]
        rows.append(row)
    return rows


def bench_elementwise(dev, cuda, cupy, sizes, repeat):
    rows = []
    for n in sizes:
        x = dev.full((n,), 1.0, np.float32)
        y = dev.full((n,), 2.0, np.float32)
        dst = dev.empty((n,), np.float32)
        # NOTE: copy bandwidth = bytes read + written by a device-to-device memcpy. Numba's
        # copy_to_device carries per-call overhead; CuPy's raw cudaMemcpy (when installed) is
        # the device's real copy bandwidth, and the baseline the target is measured against.
        t_numba_copy = _time(lambda dst=dst, x=x: dst.copy_to_device(x), cuda.synchronize, repeat)
        t_add = _time(lambda x=x, y=y: dev.binary("add", x, y), cuda.synchronize, repeat)
        t_relu = _time(lambda x=x: dev.unary("relu", x), cuda.synchronize, repeat)
        t_axpy = _time(lambda x=x: dev.scalar("mul", x, 3.0), cuda.synchronize, repeat)
        row = dict(n=n, numba_copy_gbs=2 * 4 * n / t_numba_copy / 1e9,
                   add_gbs=3 * 4 * n / t_add / 1e9, relu_gbs=2 * 4 * n / t_relu / 1e9,
                   scalar_mul_gbs=2 * 4 * n / t_axpy / 1e9)
        copy_bw = row["numba_copy_gbs"]
        if cupy is not None:
            cx, cy, cd = (cupy.ones(n, cupy.float32) for _ in range(3))
            d2d = cupy.cuda.runtime.memcpyDeviceToDevice
            memcpy = functools.partial(cupy.cuda.runtime.memcpy, cd.data.ptr, cx.data.ptr, 4 * n,
                                       d2d)
            t_memcpy = _time(memcpy, cupy.cuda.Device().synchronize, repeat)
            row["memcpy_gbs"] = copy_bw = max(copy_bw, 2 * 4 * n / t_memcpy / 1e9)
            tc = _time(lambda cx=cx, cy=cy: cx + cy, cupy.cuda.Device().synchronize, repeat)
            row["cupy_add_gbs"] = 3 * 4 * n / tc / 1e9
        row["add_vs_copy"] = row["add_gbs"] / copy_bw
        rows.append(row)
    return rows


def bench_matmul_configs(cuda, cupy, sizes, repeat):
    """GFLOP/s of every candidate tile configuration (what matmul_config chooses from)."""
    from dlsys.backend.cuda.matmul import launch_matmul

    configs = [(64, 64, 32, 4, 4), (64, 64, 16, 4, 4), (64, 64, 8, 4, 4), (32, 32, 16, 2, 2),
               (32, 64, 16, 2, 4), (128, 64, 16, 8, 4), (128, 128, 8, 8, 8),
               (128, 128, 16, 8, 8)]
    rows = []
    for n in sizes:
        a, b = _square_operands(n)
        da, db = cuda.to_device(a.reshape(-1)), cuda.to_device(b.reshape(-1))
        dc = cuda.device_array(n * n, np.float32)
        row = dict(n=n)
        for cfg in configs:
            run = functools.partial(launch_matmul, da, db, dc, 1, n, n, n, np.float32(0),
                                    config=cfg)
            t = _time(run, cuda.synchronize, repeat)
            row["x".join(map(str, cfg))] = 2.0 * n ** 3 / t / 1e9
        if cupy is not None:
            ca, cb = cupy.asarray(a), cupy.asarray(b)
            tc = _time(lambda ca=ca, cb=cb: ca @ cb, cupy.cuda.Device().synchronize, repeat)
            row["cublas"] = 2.0 * n ** 3 / tc / 1e9
        rows.append(row)
    return rows


def bench_mlp(cuda, torch, batch, repeat):
    import dlsys as ds
    from dlsys import nn, optim

    rng = np.random.default_rng(0)
    x_np = rng.random((batch, 784), dtype=np.float32)
    y_np = rng.integers(0, 10, batch)
    ds.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10)).to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x, y = ds.tensor(x_np, device="cuda"), ds.tensor(y_np, device="cuda")

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    row = dict(batch=batch, dlsys_ms=1e3 * _time(step, cuda.synchronize, repeat))
    if torch is not None:
        tm = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                 torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                 torch.nn.Linear(256, 10)).cuda()
        topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
        tx, ty = torch.from_numpy(x_np).cuda(), torch.from_numpy(y_np).cuda()
        tloss = torch.nn.CrossEntropyLoss()

        def tstep():
            topt.zero_grad()
            loss = tloss(tm(tx), ty)
            loss.backward()
            topt.step()

        row["torch_ms"] = 1e3 * _time(tstep, torch.cuda.synchronize, repeat)
        row["ratio"] = row["dlsys_ms"] / row["torch_ms"]
    return row


def _table(title, rows):
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print(f"\n{title}")
    print("  ".join(f"{k:>14}" for k in keys))
    for r in rows:
        print("  ".join(f"{r[k]:>14.4g}" if isinstance(r.get(k), float) else f"{r.get(k, ''):>14}"
                        for k in keys))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--sweep", action="store_true",
                   help="also time every matmul tile configuration (bm x bn x bk x tm x tn)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, no MLP, simulator allowed: checks the script, not speed")
    args = p.parse_args(argv)
    cuda = _need_gpu(args.smoke)
    from dlsys.backend.cuda import select_device_for_local_rank

    select_device_for_local_rank()
    import dlsys as ds

    dev = ds.cuda()
    cupy, torch = _try_cupy(), _try_torch()
    repeat = args.repeat or (5 if args.quick else 20)
    mm_sizes = [256, 1024, 2048] if args.quick else [256, 512, 1024, 2048, 4096]
    ew_sizes = [1 << 20, 1 << 24] if args.quick else [1 << 16, 1 << 20, 1 << 24, 1 << 26]
    if args.smoke:
        mm_sizes, ew_sizes, repeat = [8, 20], [64], 1
    gpu = cuda.get_current_device()
    name = getattr(gpu, "name", "simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    print(f"device: {name}; cupy: {cupy is not None}; torch: {torch is not None}")
    res = dict(device=name, matmul=bench_matmul(dev, cuda, cupy, mm_sizes, repeat),
               elementwise=bench_elementwise(dev, cuda, cupy, ew_sizes, repeat),
               mlp=[] if args.smoke else [bench_mlp(cuda, torch, args.batch_size, repeat)])
    if args.sweep:
        res["matmul_configs"] = bench_matmul_configs(cuda, cupy, mm_sizes, repeat)
    _table("matmul float32 (n x n @ n x n), GFLOP/s; target ratio >= 0.5", res["matmul"])
    _table("matmul tile configurations, GFLOP/s", res.get("matmul_configs"))
    _table("elementwise float32, GB/s; target add_vs_copy >= 0.7 (copy: device memcpy)",
           res["elementwise"])
    _table("MNIST MLP 784-256-256-10 train step (SGD momentum), ms", res["mlp"])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()

"""Training-step benchmark: forward + backward + SGD step, dlsys vs PyTorch CPU, one thread.

    .venv/bin/python benchmarks/train_step.py [--iters 50] [--batch 128] [--json out.json]

Models: the MNIST MLP 784-256-256-10 and a LeNet-style CNN (conv 1->6 5x5, relu, maxpool 2,
conv 6->16 5x5, relu, maxpool 2, flatten, 256-120-84-10). Prints a table of median step times
and the ratio dlsys / torch (torch is optional: without it only dlsys is timed).
"""

from __future__ import annotations

import os

# NOTE: thread pools are sized when numpy / numba / torch load: set them before any import.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

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


def dlsys_model(name):
    nn = ds.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256),
                             nn.ReLU(), nn.Linear(256, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120),
                         nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def torch_model(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256),
                             nn.ReLU(), nn.Linear(256, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120),
                         nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def _time(step, iters, warmup):
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def bench_dlsys(name, x, y, iters, warmup):
    ds.manual_seed(0)
    model = dlsys_model(name)
    opt = ds.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = ds.tensor(x), ds.tensor(y)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()

    return _time(step, iters, warmup)


def bench_torch(torch, name, x, y, iters, warmup):
    torch.manual_seed(0)
    model = torch_model(torch, name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()

    return _time(step, iters, warmup)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)

    torch = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            print("torch not importable: timing dlsys only", file=sys.stderr)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.batch).astype(np.int64)

    rows = []
    for name in args.models.split(","):
        # NOTE: alternate the frameworks in rounds so a noisy neighbour hits both alike
        d_ms, t_ms = [], []
        for _ in range(3):
            d_ms.append(bench_dlsys(name, x, y, args.iters, args.warmup))
            if torch is not None:
                t_ms.append(bench_torch(torch, name, x, y, args.iters, args.warmup))
        d = min(d_ms)
        t = min(t_ms) if t_ms else None
        rows.append({"model": name, "batch": args.batch, "dlsys_ms": round(d, 3),
                     "torch_ms": None if t is None else round(t, 3),
                     "ratio": None if t is None else round(d / t, 3)})

    print(f"train step (forward + backward + SGD momentum), batch {args.batch}, 1 thread, "
          f"median of {args.iters} steps (best of 3 rounds)")
    print(f"{'model':<6} {'dlsys ms':>10} {'torch ms':>10} {'dlsys/torch':>12}")
    for r in rows:
        tm = "-" if r["torch_ms"] is None else f"{r['torch_ms']:.3f}"
        ra = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"{r['model']:<6} {r['dlsys_ms']:>10.3f} {tm:>10} {ra:>12}")
    if args.json:
        meta = {"numpy": np.__version__, "torch": getattr(torch, "__version__", None),
                "threads": 1, "iters": args.iters}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()

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


def build_model(nn, name):
    """The same model from either library's ``nn`` (dlsys.nn or torch.nn: same names)."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256),
                             nn.ReLU(), nn.Linear(256, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120),
                         nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def dlsys_step(name, x, y):
    ds.manual_seed(0)
    model = build_model(ds.nn, name)
    opt = ds.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = ds.tensor(x), ds.tensor(y)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()

    return step


def torch_step(torch, name, x, y):
    torch.manual_seed(0)
    model = build_model(torch.nn, name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()

    return step


def measure(steps, iters, warmup):
    """Median wall and CPU (process) time per step, in ms, for each step function.

    NOTE: the steps are interleaved one by one, so a noisy neighbour on a shared machine slows
    all frameworks alike; CPU time (time.process_time) is reported beside wall time because
    it does not count the time this process waits for a core."""
    for f in steps:
        for _ in range(warmup):
            f()
    wall = [[] for _ in steps]
    cpu = [[] for _ in steps]
    for _ in range(iters):
        for i, f in enumerate(steps):
            w0, c0 = time.perf_counter(), time.process_time()
            f()
            cpu[i].append(time.process_time() - c0)
            wall[i].append(time.perf_counter() - w0)
    return ([statistics.median(w) * 1e3 for w in wall],
            [statistics.median(c) * 1e3 for c in cpu])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=100)
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
        steps = [dlsys_step(name, x, y)]
        if torch is not None:
            steps.append(torch_step(torch, name, x, y))
        wall, cpu = measure(steps, args.iters, args.warmup)
        row = {"model": name, "batch": args.batch, "dlsys_ms": round(wall[0], 3),
               "dlsys_cpu_ms": round(cpu[0], 3), "torch_ms": None, "torch_cpu_ms": None,
               "ratio": None, "cpu_ratio": None}
        if torch is not None:
            row.update(torch_ms=round(wall[1], 3), torch_cpu_ms=round(cpu[1], 3),
                       ratio=round(wall[0] / wall[1], 3), cpu_ratio=round(cpu[0] / cpu[1], 3))
        rows.append(row)

    print(f"train step (forward + backward + SGD momentum), batch {args.batch}, 1 thread, "
          f"median of {args.iters} interleaved steps; wall and CPU time in ms")
    print(f"{'model':<6} {'dlsys':>9} {'torch':>9} {'ratio':>7}   {'dlsys cpu':>9} "
          f"{'torch cpu':>9} {'ratio':>7}")

    def fmt(v, spec, suffix=""):
        return "-" if v is None else format(v, spec) + suffix

    for r in rows:
        print(f"{r['model']:<6} {r['dlsys_ms']:>9.3f} {fmt(r['torch_ms'], '.3f'):>9} "
              f"{fmt(r['ratio'], '.2f', 'x'):>7}   {r['dlsys_cpu_ms']:>9.3f} "
              f"{fmt(r['torch_cpu_ms'], '.3f'):>9} {fmt(r['cpu_ratio'], '.2f', 'x'):>7}")
    if args.json:
        meta = {"numpy": np.__version__, "torch": getattr(torch, "__version__", None),
                "threads": 1, "iters": args.iters, "loadavg": os.getloadavg()}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()

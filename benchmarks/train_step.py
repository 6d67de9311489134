"""Training-step benchmark: forward + backward + optimizer step, dlsys vs PyTorch on the CPU.

    .venv/bin/python benchmarks/train_step.py [--models mlp,cnn,gpt,resnet20] [--threads 1,2]
                                              [--iters 30] [--json out.json]

Models (``benchmarks/models.py``, one definition for both libraries): the MNIST MLP and LeNet
(batch 128, SGD momentum), the char-level GPT (4 layers, 4 heads, d=128, context 64, batch 16,
AdamW) and ResNet-20 (batch 64 of 3x32x32, SGD momentum, weight decay). Both libraries start
from the same weights (torch's initialisation, loaded into dlsys) and the same batch; their
steps are interleaved one by one. Each thread count runs in a child process of its own,
because numpy's BLAS and Numba size their thread pools when they load: OMP/OPENBLAS/MKL/
NUMBA_NUM_THREADS are set before any import there, and torch.set_num_threads likewise.
Prints median wall and CPU time per step and the ratio dlsys / torch for each model and
thread count (torch is optional: without it only dlsys is timed).
"""

from __future__ import annotations

import os
import sys

_CHILD = os.environ.get("TRAIN_STEP_THREADS")
if _CHILD:
    # NOTE: thread pools are sized when numpy / numba / torch load: set them before any import.
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_v] = _CHILD

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

ITERS = {"mlp": 100, "cnn": 60, "gpt": 40, "resnet20": 15}  # about 1-4 s per library each


def _optimizer(lib, name, params):
    if name == "gpt":
        return lib.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
    if name == "resnet20":
        return lib.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    return lib.optim.SGD(params, lr=0.01, momentum=0.9)


def _loss(lib, name, out, y):
    if name == "gpt":
        return lib.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    return lib.nn.functional.cross_entropy(out, y)


def make_step(lib, name, model, x, y):
    """One training step of ``model`` on the batch (x, y) as a closure."""
    opt = _optimizer(lib, name, model.parameters())
    xt, yt = lib.tensor(x), lib.tensor(y)

    def step():
        opt.zero_grad()
        loss = _loss(lib, name, model(xt), yt)
        loss.backward()
        opt.step()

    return step


def models_for(name, torch):
    """(dlsys model, torch model or None) with the same weights (torch's initialisation)."""
    import dlsys as ds

    ds.manual_seed(0)
    dmodel = models.build(ds, name)
    if torch is None:
        return dmodel, None
    torch.manual_seed(0)
    tmodel = models.build(torch, name)
    state = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
    own = set(dmodel.state_dict())
    missing, _ = dmodel.load_state_dict({k: v for k, v in state.items() if k in own},
                                        strict=False)
    if missing:
        raise RuntimeError(f"{name}: torch's state_dict lacks {missing}")
    return dmodel, tmodel


def measure(steps, iters, warmup):
    """Median wall and CPU (process) time per step, in ms, for each step function.

    NOTE: the steps are interleaved one by one, so a noisy neighbour on a shared machine slows
    all frameworks alike; CPU time (time.process_time) is reported beside wall time because
    it does not count the time this process waits for a core (with 2 threads it counts both)."""
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


def run_child(args, threads):
    """Time every model at ``threads`` threads in this process (set up by the parent)."""
    import numba
    import numpy as np

    import dlsys as ds

    numba.set_num_threads(threads)
    torch = None
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            print("torch not importable: timing dlsys only", file=sys.stderr)
    rows = []
    for name in args.models.split(","):
        x, y = models.batch(name, np.random.default_rng(0), args.batch)
        dmodel, tmodel = models_for(name, torch)
        steps = [make_step(ds, name, dmodel, x, y)]
        if torch is not None:
            steps.append(make_step(torch, name, tmodel, x, y))
        iters = args.iters or ITERS[name]
        wall, cpu = measure(steps, iters, args.warmup)
        row = {"model": name, "threads": threads, "batch": len(x), "iters": iters,
               "dlsys_ms": round(wall[0], 3), "dlsys_cpu_ms": round(cpu[0], 3),
               "torch_ms": None, "torch_cpu_ms": None, "ratio": None, "cpu_ratio": None}
        if torch is not None:
            row.update(torch_ms=round(wall[1], 3), torch_cpu_ms=round(cpu[1], 3),
                       ratio=round(wall[0] / wall[1], 3), cpu_ratio=round(cpu[0] / cpu[1], 3))
        rows.append(row)
    return rows


def _fmt(v, spec, suffix=""):
    return "-" if v is None else format(v, spec) + suffix


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,cnn,gpt,resnet20")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--iters", type=int, default=0, help="timed steps (0: a default per model)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=None, help="batch size (default per model)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)

    if _CHILD:
        print(json.dumps(run_child(args, int(_CHILD))))
        return None
    rows = []
    for n in (int(t) for t in args.threads.split(",")):
        env = {**os.environ, "TRAIN_STEP_THREADS": str(n)}
        child = [a for a in (argv if argv is not None else sys.argv[1:])]
        out = subprocess.run([sys.executable, __file__, *child], env=env, check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])

    print("train step (forward + backward + optimizer step), median of interleaved steps; "
          f"wall and CPU time in ms; load average {os.getloadavg()[0]:.2f}")
    print(f"{'model':<9} {'thr':>3} {'batch':>5} {'dlsys':>9} {'torch':>9} {'ratio':>7}   "
          f"{'dlsys cpu':>9} {'torch cpu':>9} {'ratio':>7}")
    for r in rows:
        print(f"{r['model']:<9} {r['threads']:>3} {r['batch']:>5} {r['dlsys_ms']:>9.3f} "
              f"{_fmt(r['torch_ms'], '.3f'):>9} {_fmt(r['ratio'], '.2f', 'x'):>7}   "
              f"{r['dlsys_cpu_ms']:>9.3f} {_fmt(r['torch_cpu_ms'], '.3f'):>9} "
              f"{_fmt(r['cpu_ratio'], '.2f', 'x'):>7}")
    if args.json:
        import numpy as np

        meta = {"numpy": np.__version__, "loadavg": os.getloadavg()}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()

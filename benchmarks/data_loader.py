"""DataLoader throughput: a Dataset with numpy augmentation, read with 0 and N worker processes.

    .venv/bin/python benchmarks/data_loader.py [--workers 0 2] [--n 10000] [--batch-size 128]
                                               [--repeat 5] [--consume-ms 0] [--json PATH]

The dataset holds CIFAR-shaped uint8 images (3x32x32) in memory; each sample is converted to
float32, randomly cropped (padding 4), randomly flipped and normalized, as a CIFAR training
pipeline does. Each configuration keeps its workers across epochs (persistent_workers); the
first epoch (worker start-up) is timed apart, as "start s". Epochs of the configurations
alternate, so all see the same load on a shared machine; the table gives median samples/s, the
ratio to the first configuration, and the CPU time (main process + workers, from /proc) per
sample, which other jobs on the machine do not change. ``--consume-ms`` busies the main
process per batch, as a training step would, to show loading overlapped with compute. One
BLAS/OpenMP thread per process.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # NOTE: before numpy is imported (workers inherit it)

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlsys.data import DataLoader, Dataset  # noqa: E402
from dlsys.data import transforms as T  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class AugmentedImages(Dataset):
    """uint8 (N, 3, 32, 32) images -> float32, random crop with padding 4, flip, normalize."""

    def __init__(self, n: int, seed: int = 0):
        r = np.random.default_rng(seed)
        self.images = r.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        self.labels = r.integers(0, 10, n)
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(),
                                    T.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i].astype(np.float32) * np.float32(1 / 255)
        return self.transform(img), int(self.labels[i])


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms * 1e-3
    while time.perf_counter() < end:
        pass


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _epoch(loader, consume_ms: float) -> tuple[float, float]:
    """(wall s, CPU s of the main process and the workers) of one epoch; the busy loop of
    --consume-ms is not counted as loading CPU."""
    pids = [os.getpid()] + [p.pid for p in mp.active_children()
                            if p.name.startswith("DataLoader-worker")]
    c0, t0, busy = sum(map(_cpu_s, pids)), time.perf_counter(), 0.0
    for _ in loader:
        if consume_ms:
            b0 = time.process_time()
            _busy(consume_ms)
            busy += time.process_time() - b0
    return time.perf_counter() - t0, sum(map(_cpu_s, pids)) - c0 - busy


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--consume-ms", type=float, default=0.0)
    ap.add_argument("--context", default=None, help="start method (default: forkserver)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    data = AugmentedImages(args.n)
    loaders, start = {}, {}
    for w in args.workers:
        kw = dict(num_workers=w, persistent_workers=True,
                  multiprocessing_context=args.context) if w else {}
        loaders[w] = DataLoader(data, batch_size=args.batch_size, shuffle=True, seed=0, **kw)
        t0 = time.perf_counter()
        next(iter(loaders[w]))  # NOTE: starts the workers; the epoch left early is dropped
        start[w] = time.perf_counter() - t0
        _epoch(loaders[w], args.consume_ms)  # warm-up epoch
    times = {w: [] for w in args.workers}
    cpus = {w: [] for w in args.workers}
    for _ in range(args.repeat):
        for w in args.workers:
            wall, cpu = _epoch(loaders[w], args.consume_ms)
            times[w].append(wall)
            cpus[w].append(cpu)

    base = statistics.median(times[args.workers[0]])
    rows = []
    print(f"DataLoader, {args.n} augmented 3x32x32 samples, batch {args.batch_size}, "
          f"consume {args.consume_ms:g} ms/batch, {os.cpu_count()} cpus, median of "
          f"{args.repeat} epochs")
    print(f"{'workers':>8} {'samples/s':>10} {'epoch s':>8} {'start s':>8} "
          f"{'vs ' + str(args.workers[0]):>8} {'cpu us/sample':>14}")
    for w in args.workers:
        t = statistics.median(times[w])
        cpu_us = statistics.median(cpus[w]) / args.n * 1e6
        rows.append({"num_workers": w, "samples_per_s": args.n / t, "epoch_s": t,
                     "start_s": start[w], "ratio": base / t, "cpu_us_per_sample": cpu_us,
                     "epochs_s": times[w]})
        print(f"{w:>8} {args.n / t:>10.0f} {t:>8.3f} {start[w]:>8.2f} {base / t:>8.2f} "
              f"{cpu_us:>14.1f}")
    if args.json:
        out = {"benchmark": "data_loader", "n": args.n, "batch_size": args.batch_size,
               "consume_ms": args.consume_ms, "context": args.context or "forkserver",
               "cpus": os.cpu_count(), "python": platform.python_version(), "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

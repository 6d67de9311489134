"""SyncBatchNorm on P ranks against plain BatchNorm in one process over all ranks' samples.

Every rank makes the same global data (seeded), takes its rows (uneven per-rank batch sizes),
and runs STEPS steps of forward, backward and an SGD update of weight and bias through
col.SyncBatchNorm; on the side, every rank runs plain BatchNorm over the concatenation of all
ranks' rows (one process over P*b samples) as the reference. Reports the largest relative
differences of the outputs, input gradients, summed weight/bias gradients, running statistics
and the weights after the steps, a digest of the running statistics (bitwise identity across
ranks), and a central-difference check of the input and weight gradients of the sum of all
ranks' losses (float64).
"""

import hashlib
import sys

import numpy as np

import collective as col
import dlsys as ds
from ranks.report import report

STEPS = 4
LR = 0.1


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / (1e-3 + np.abs(b)))) if a.size else 0.0


def bn_class(ndim):
    return ds.nn.BatchNorm1d if ndim in (2, 3) else ds.nn.BatchNorm2d


def sizes_for(P):
    return [3, 5, 1, 4][:P] if P > 1 else [4]


def equivalence(ndim, dtype, momentum):
    P, r = col.size(), col.rank()
    C = 3
    sizes = sizes_for(P)
    rng = np.random.default_rng(7 + ndim)
    tail = {2: (), 3: (4,), 4: (3, 2)}[ndim]
    xs = [(rng.standard_normal((n, C) + tail) * 2 + 1.5).astype(dtype) for n in sizes]
    gs = [rng.standard_normal((n, C) + tail).astype(dtype) for n in sizes]
    lo = sum(sizes[:r])

    sync = col.SyncBatchNorm(C, momentum=momentum, dtype=dtype)
    plain = bn_class(ndim)(C, momentum=momentum, dtype=dtype)
    w0 = rng.standard_normal(C).astype(dtype)
    for m in (sync, plain):
        m.weight.data = ds.tensor(w0.copy())
    err = dict(y=0.0, gx=0.0, gw=0.0, gb=0.0, rm=0.0, rv=0.0, w=0.0)
    for step in range(STEPS):
        x_all = np.concatenate([x * (1 + 0.1 * step) for x in xs])
        x_loc = ds.tensor(x_all[lo:lo + sizes[r]], requires_grad=True)
        x_ref = ds.tensor(x_all, requires_grad=True)
        y = sync(x_loc)
        y_ref = plain(x_ref)
        (y * ds.tensor(gs[r])).sum().backward()
        (y_ref * ds.tensor(np.concatenate(gs))).sum().backward()
        err["y"] = max(err["y"], rel(y.numpy(), y_ref.numpy()[lo:lo + sizes[r]]))
        err["gx"] = max(err["gx"], rel(x_loc.grad.numpy(), x_ref.grad.numpy()[lo:lo + sizes[r]]))
        # each rank's weight gradient is its share: their sum is the one-process gradient
        err["gw"] = max(err["gw"], rel(col.allreduce(sync.weight.grad.numpy(), op=col.Sum),
                                       plain.weight.grad.numpy()))
        err["gb"] = max(err["gb"], rel(col.allreduce(sync.bias.grad.numpy(), op=col.Sum),
                                       plain.bias.grad.numpy()))
        with ds.no_grad():
            for m, scale in ((sync, 1.0), (plain, 1.0 / P)):
                for p in (m.weight, m.bias):
                    if m is sync:
                        g = col.allreduce(p.grad.numpy(), op=col.Average)
                    else:
                        g = p.grad.numpy() * scale
                    p.data = ds.tensor(p.numpy() - LR * g)
                    p.grad = None
        err["rm"] = max(err["rm"], rel(sync.running_mean.numpy(), plain.running_mean.numpy()))
        err["rv"] = max(err["rv"], rel(sync.running_var.numpy(), plain.running_var.numpy()))
        err["w"] = max(err["w"], rel(sync.weight.numpy(), plain.weight.numpy()))
    stats = np.concatenate([sync.running_mean.numpy(), sync.running_var.numpy()])
    # eval mode: the running statistics, no communication
    sync.eval()
    plain.eval()
    x_eval = ds.tensor(xs[r])
    err["eval"] = rel(sync(x_eval).numpy(), plain(x_eval).numpy())
    return err, hashlib.sha256(stats.tobytes()).hexdigest(), int(sync.num_batches_tracked.item())


def total_loss_gradcheck():
    """Central differences of L = sum over ranks of sum(y_r * g_r), one rank's element at a
    time (every rank runs every evaluation: each is a collective call)."""
    P, r = col.size(), col.rank()
    rng = np.random.default_rng(11)
    C = 2
    sizes = sizes_for(P)
    xs = [rng.standard_normal((n, C, 2)) for n in sizes]
    gs = [rng.standard_normal((n, C, 2)) for n in sizes]
    w = ds.tensor(rng.standard_normal(C), requires_grad=True)
    b = ds.tensor(rng.standard_normal(C), requires_grad=True)
    x = ds.tensor(xs[r].copy(), requires_grad=True)
    g = ds.tensor(gs[r])
    from collective.sync_batchnorm import sync_batch_norm

    def total():
        with ds.no_grad():
            y, *_ = sync_batch_norm(x, w, b)
            return float(col.allreduce(np.array([float((y * g).sum().item())]), op=col.Sum)[0])

    y, *_ = sync_batch_norm(x, w, b)
    (y * g).sum().backward()
    ana_x = x.grad.numpy().copy()
    ana_w = col.allreduce(w.grad.numpy(), op=col.Sum)
    eps = 1e-6
    err = 0.0
    for owner in range(P):
        for idx in np.ndindex((sizes[owner], C, 2)):
            data = x.numpy()
            if r == owner:
                old = data[idx]
                data[idx] = old + eps
            fp = total()
            if r == owner:
                data[idx] = old - eps
            fm = total()
            if r == owner:
                data[idx] = old
                num = (fp - fm) / (2 * eps)
                err = max(err, abs(ana_x[idx] - num) / (1 + abs(num)))
    wd = w.numpy()
    for c in range(C):
        old = wd[c]
        wd[c] = old + eps
        fp = total()
        wd[c] = old - eps
        fm = total()
        wd[c] = old
        num = (fp - fm) / (2 * eps)
        err = max(err, abs(ana_w[c] - num) / (1 + abs(num)))
    return err


def main():
    col.init()
    out = {}
    for ndim in (2, 3, 4):
        for dtype in ("float64", "float32"):
            for momentum in (0.1, None):
                err, digest, tracked = equivalence(ndim, np.dtype(dtype), momentum)
                out[f"{ndim}d_{dtype}_{momentum}"] = dict(err=err, digest=digest,
                                                          tracked=tracked)
    out["gradcheck"] = total_loss_gradcheck()
    report(results=out, sizes=sizes_for(col.size()))


if __name__ == "__main__":
    sys.exit(main())

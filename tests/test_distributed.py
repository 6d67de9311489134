"""DistributedOptimizer, buckets, broadcast helpers: DESIGN.md guarantees 1-4.

The MPI checks are batched into a few jobs (one per world size, plus the failure cases), each
rank computing the single-process reference itself, so the suite stays fast on 2 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
from distributed_common import COMMON
from mpi_harness import run_mpi

from collective.buckets import assign_buckets
from collective.compression import Compression

# -- no MPI -------------------------------------------------------------------------------------


def test_assign_buckets_reverse_order_and_cap():
    f32 = "f4"
    specs = [(f32, 400), (f32, 400), (f32, 400), (f32, 400), (f32, 400)]
    # reverse registration order, at most 1000 bytes each
    assert assign_buckets(specs, 1000) == [[4, 3], [2, 1], [0]]
    # a huge cap: one bucket; a tiny cap: one parameter per bucket
    assert assign_buckets(specs, 10**9) == [[4, 3, 2, 1, 0]]
    assert assign_buckets(specs, 1) == [[4], [3], [2], [1], [0]]


def test_assign_buckets_one_dtype_per_bucket():
    specs = [("f4", 8), ("f8", 8), ("f4", 8), ("f8", 8)]
    buckets = assign_buckets(specs, 1000)
    assert buckets == [[3, 1], [2, 0]]
    for b in buckets:
        assert len({specs[i][0] for i in b}) == 1
    with pytest.raises(ValueError, match="positive"):
        assign_buckets(specs, 0)


def test_compression_numpy_roundtrip():
    x = np.linspace(-3, 3, 11, dtype=np.float32)
    wire, ctx = Compression.fp16.compress(x)
    assert wire.dtype == np.float16
    back = Compression.fp16.decompress(wire, ctx)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=1e-3)
    out = np.empty_like(x)
    Compression.fp16.decompress(wire, ctx, out=out)
    np.testing.assert_array_equal(out, back)
    same, ctx = Compression.none.compress(x)
    assert same is x and Compression.none.decompress(same, ctx) is x
    ints = np.arange(4)
    assert Compression.fp16.compress(ints)[0] is ints  # integers are never cast


# -- MPI jobs -------------------------------------------------------------------------------------

EQUIVALENCE = COMMON + r'''
out = {}
for opt_name in ("sgd", "adam"):
    for dtype in ("float64", "float32"):
        ref = train(opt_name, dtype, False)[0]
        got, agree, _, _ = train(opt_name, dtype, True, check_replicas=True)
        out[f"{opt_name}_{dtype}_err"] = rel_err(got, ref)
        out[f"{opt_name}_{dtype}_agree"] = agree

# determinism: the same run twice is bitwise identical
first = train("adam", "float32", True)[0]
second = train("adam", "float32", True)[0]
out["deterministic"] = digest(first) == digest(second)

# k = 2 backward passes per step == one pass over twice the samples
ref = train("sgd", "float64", False, k=2)[0]
got, agree, _, _ = train("sgd", "float64", True, k=2, check_replicas=True)
out["accum_err"], out["accum_agree"] = rel_err(got, ref), agree

# fp16 compression is close to fp32, and replicas still agree bitwise
plain = train("sgd", "float32", True)[0]
got, agree, _, _ = train("sgd", "float32", True, compression=col.Compression.fp16,
                         check_replicas=True)
out["fp16_err"], out["fp16_agree"] = rel_err(got, plain), agree

# tiny and huge bucket caps: one bucket per parameter / one bucket; same result
ref = train("sgd", "float64", False)[0]
for name, cap in (("tiny", 1e-7), ("huge", 1e5)):
    got, agree, opt, model = train("sgd", "float64", True, bucket_cap_mb=cap,
                                   check_replicas=True)
    out[f"{name}_err"], out[f"{name}_agree"] = rel_err(got, ref), agree
    out[f"{name}_buckets"] = len(opt.buckets)
out["n_params"] = len(list(model.parameters()))

# every overlap engine gives the same result (auto = non-blocking MPI on the CPU)
for mech in ("thread", "inline", "nonblocking"):
    got, agree, _, _ = train("sgd", "float64", True, overlap=mech, bucket_cap_mb=1e-4,
                             check_replicas=True)
    fp16, agree16, _, _ = train("sgd", "float32", True, overlap=mech, bucket_cap_mb=1e-4,
                                compression=col.Compression.fp16, check_replicas=True)
    out[f"{mech}_err"], out[f"{mech}_agree"] = rel_err(got, ref), agree and agree16
    out[f"{mech}_fp16_err"] = rel_err(fp16, plain)

# grads are views into the buckets; the wrapper IS the optimizer
model = model_for("float32", 1)
inner = ds.optim.SGD(model.parameters(), lr=0.1)
opt = col.DistributedOptimizer(inner, named_parameters=model.named_parameters(),
                               bucket_cap_mb=1e-4)
def views_ok():
    flats = {id(p): b.flat.numpy() for b in opt.buckets for p in b.params}
    return all(p.grad is not None and np.shares_memory(p.grad.numpy(), flats[id(p)])
               for p in model.parameters())
out["views_at_start"] = views_ok()
for t in range(3):
    opt.zero_grad()
    F.cross_entropy(model(ds.tensor(X[BATCHES[R][t]], dtype=np.float32)),
                    ds.tensor(Y[BATCHES[R][t]])).backward()
    opt.step()
out["views_after_steps"] = views_ok()
model.zero_grad()  # the module's zero_grad sets .grad to None: the hooks re-attach the views
F.cross_entropy(model(ds.tensor(X[BATCHES[R][3]], dtype=np.float32)),
                ds.tensor(Y[BATCHES[R][3]])).backward()
opt.step()
out["views_after_module_zero_grad"] = views_ok()
out["isinstance"] = isinstance(opt, ds.optim.SGD)
out["same_state"] = opt.param_groups is inner.param_groups and opt.state is inner.state

# zero_grad between backward and step is an error
opt.zero_grad()
F.cross_entropy(model(ds.tensor(X[BATCHES[R][4]], dtype=np.float32)),
                ds.tensor(Y[BATCHES[R][4]])).backward()
try:
    opt.zero_grad()
    out["zero_grad_error"] = ""
except RuntimeError as exc:
    out["zero_grad_error"] = str(exc)
# synchronize + clipping + skip_synchronize
opt.synchronize()
ds.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
with opt.skip_synchronize():
    opt.step()
out["clip_agree"] = len(set(col.allgather_object(digest(params_of(model))))) == 1

# op=Sum gives P times the average
model = model_for("float64", 1)
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.0), op=col.Sum,
                               bucket_cap_mb=1e-4)
F.cross_entropy(model(ds.tensor(X[BATCHES[R][0]], dtype=np.float64)),
                ds.tensor(Y[BATCHES[R][0]])).backward()
opt.synchronize()
summed = [np.array(p.grad.numpy()) for p in model.parameters()]
model = model_for("float64", 1)  # a fresh copy: a backward on `model` would start reductions
local = F.cross_entropy(model(ds.tensor(X[np.concatenate([BATCHES[r][0] for r in range(P)])],
                                        dtype=np.float64)),
                        ds.tensor(Y[np.concatenate([BATCHES[r][0] for r in range(P)])]))
local.backward()
out["sum_err"] = rel_err(summed, [P * np.array(p.grad.numpy()) for p in model.parameters()])

# a parameter without a gradient on some ranks is reduced as zeros (no hang, replicas agree)
class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(N_IN, N_OUT)
        self.extra = nn.Linear(N_IN, N_OUT)

    def forward(self, x, use_extra):
        out = self.body(x)
        return out + self.extra(x) if use_extra else out

ds.manual_seed(3)
model = TwoHeads().to(np.float64)
before = np.array(model.extra.weight.numpy())
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.5),
                               named_parameters=model.named_parameters())
for t in range(2):
    opt.zero_grad()
    x = ds.tensor(X[BATCHES[R][t]], dtype=np.float64)
    F.cross_entropy(model(x, use_extra=(R == 0)), ds.tensor(Y[BATCHES[R][t]])).backward()
    opt.step()
out["unused_agree"] = len(set(col.allgather_object(digest(params_of(model))))) == 1
out["unused_moved"] = not np.array_equal(before, model.extra.weight.numpy())

# a second DistributedOptimizer on the same parameters takes them over (with a warning)
import warnings
model = model_for("float64", 2)
first = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                 named_parameters=model.named_parameters())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    second = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                      named_parameters=model.named_parameters())
for t in range(2):
    second.zero_grad()
    F.cross_entropy(model(ds.tensor(X[BATCHES[R][t]], dtype=np.float64)),
                    ds.tensor(Y[BATCHES[R][t]])).backward()
    second.step()
out["takeover_warned"] = any("second DistributedOptimizer" in str(w.message) for w in caught)
out["takeover_ok"] = (not first._dist.dirty
                      and len(set(col.allgather_object(digest(params_of(model))))) == 1)

# broadcast_optimizer_state: rank 0 has momentum and 'step' state, the others none yet
model = model_for("float32", 7)
opt = ds.optim.Adam(model.parameters(), lr=0.01)
if R == 0:
    for t in range(2):
        opt.zero_grad()
        F.cross_entropy(model(ds.tensor(X[BATCHES[0][t]], dtype=np.float32)),
                        ds.tensor(Y[BATCHES[0][t]])).backward()
        opt.step()
col.broadcast_parameters(model.named_parameters(), root=0)
col.broadcast_optimizer_state(opt, root=0)
def flat_state(o):
    sd = o.state_dict()
    leaves = []
    def walk(v):
        if isinstance(v, dict):
            for key in sorted(v, key=str):
                leaves.append(str(key))
                walk(v[key])
        elif isinstance(v, (list, tuple)):
            for w in v:
                walk(w)
        else:
            leaves.append(repr(np.asarray(v).tolist()))
    walk(sd)
    return hashlib.sha1("|".join(leaves).encode()).hexdigest()
out["opt_state_agree"] = len(set(col.allgather_object(flat_state(opt)))) == 1
out["opt_state_nonempty"] = len(opt.state_dict()["state"]) > 0
report(**out)
'''


def _check_equivalence(res, nprocs):
    assert res.returncode == 0, res.output
    reports = res.by_rank()
    assert sorted(reports) == list(range(nprocs)), res.output
    for r, out in reports.items():
        for opt_name in ("sgd", "adam"):
            assert out[f"{opt_name}_float64_err"] < 1e-10, (r, opt_name, out)
            assert out[f"{opt_name}_float32_err"] < 1e-5, (r, opt_name, out)
            assert out[f"{opt_name}_float64_agree"] and out[f"{opt_name}_float32_agree"], out
        assert out["deterministic"], out
        assert out["accum_err"] < 1e-10 and out["accum_agree"], out
        assert out["fp16_err"] < 2e-2 and out["fp16_agree"], out
        for name in ("tiny", "huge"):
            assert out[f"{name}_err"] < 1e-10 and out[f"{name}_agree"], out
        assert out["tiny_buckets"] == out["n_params"] and out["huge_buckets"] == 1, out
        for mech in ("thread", "inline", "nonblocking"):
            assert out[f"{mech}_err"] < 1e-10 and out[f"{mech}_agree"], (mech, out)
            assert out[f"{mech}_fp16_err"] < 2e-2, (mech, out)
        assert out["views_at_start"] and out["views_after_steps"], out
        assert out["views_after_module_zero_grad"], out
        assert out["isinstance"] and out["same_state"], out
        assert "zero_grad" in out["zero_grad_error"], out
        assert out["clip_agree"], out
        assert out["sum_err"] < 1e-10, out
        assert out["unused_agree"] and out["unused_moved"], out
        assert out["opt_state_agree"] and out["opt_state_nonempty"], out
        assert out["takeover_warned"] and out["takeover_ok"], out


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_distributed_guarantees(nprocs, tmp_path):
    res = run_mpi(EQUIVALENCE, nprocs, timeout=240, tmp_path=tmp_path)
    _check_equivalence(res, nprocs)


CUDA = COMMON + r'''
# CUDA parameters: buckets on the device, reduced by the communication thread (the simulator
# runs the kernels on the host; a real GPU runs the same code)
def run(device, **kw):
    ds.manual_seed(1)
    model = nn.Sequential(nn.Linear(N_IN, 8), nn.Tanh(), nn.Linear(8, N_OUT)).to(device)
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                                   named_parameters=model.named_parameters(),
                                   bucket_cap_mb=1e-4, **kw)
    for t in range(3):
        opt.zero_grad()
        x = ds.tensor(X[BATCHES[R][t]], dtype=np.float32, device=device)
        F.cross_entropy(model(x), ds.tensor(Y[BATCHES[R][t]], device=device)).backward()
        opt.step()
    return [np.array(p.numpy()) for p in model.parameters()], opt._dist.overlap
out = {}
cpu, _ = run("cpu")
for name, kw in (("none", {}), ("fp16", {"compression": col.Compression.fp16})):
    got, engine = run("cuda", **kw)
    out[name + "_err"] = rel_err(got, cpu)
    out[name + "_agree"] = len(set(col.allgather_object(digest(got)))) == 1
    out["engine"] = engine
report(**out)
'''


@pytest.mark.mpi
def test_distributed_cuda_simulator(tmp_path):
    res = run_mpi(CUDA, 2, timeout=120, tmp_path=tmp_path, env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert res.returncode == 0, res.output
    for out in res.by_rank().values():
        assert out["engine"] == "thread", out
        assert out["none_err"] < 1e-5 and out["none_agree"], out
        assert out["fp16_err"] < 2e-2 and out["fp16_agree"], out

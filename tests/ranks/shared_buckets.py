"""DistributedOptimizer with its buckets in the node's shared window (overlap="shared", the
default on one node) against one process and against the rings (``overlap="nonblocking"``):
plain, fp16 compression, two backward passes per step, gradient_predivide_factor, and a join
with uneven batches. Reported per case: where the buckets lived, the error against the
single-process run, whether the replicas agreed after every step, and whether the parameters
are bitwise the rings' ones."""

from __future__ import annotations

import numpy as np

import collective as col
import dlsys as ds
from ranks.report import report
from ranks.training import BATCHES, STEPS, R, digest, loss_of, model_for, rel_err, train

CASES = {
    "plain": dict(opt="sgd", dtype="float64", k=1, kw={}),
    "adam32": dict(opt="adam", dtype="float32", k=1, kw={}),
    "fp16": dict(opt="sgd", dtype="float32", k=1, kw={"compression": col.Compression.fp16}),
    "accumulate": dict(opt="sgd", dtype="float64", k=2, kw={}),
    "predivide": dict(opt="sgd", dtype="float64", k=1, kw={"gradient_predivide_factor": 2.0}),
    "sum": dict(opt="sgd", dtype="float64", k=1, kw={"op": col.Sum}),
}

out = {}
for name, c in CASES.items():
    ref = train(c["opt"], c["dtype"], False, k=c["k"])[0] if name != "sum" else None
    got, agree, opt, _ = train(c["opt"], c["dtype"], True, k=c["k"], check_replicas=True,
                               overlap="auto", **c["kw"])
    rings = train(c["opt"], c["dtype"], True, k=c["k"], overlap="nonblocking", **c["kw"])[0]
    out[name] = {"shared": [b.shared for b in opt.buckets], "engine": opt._overlap,
                 "err": rel_err(got, ref) if ref is not None else 0.0, "agree": agree,
                 "as_rings": digest(got) == digest(rings)}

# join: rank 0 has one batch fewer; the others' last step is reduced with its zeros
model = model_for("float64", 1)
col.broadcast_parameters(model.state_dict(), root=0)
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
with col.join(opt):
    for t in range(STEPS - (1 if R == 0 else 0)):
        opt.zero_grad()
        loss_of(model, BATCHES[R][t]).backward()
        opt.step()
last = col.allgather_object(digest([np.array(p.numpy()) for p in model.parameters()]))
out["join"] = {"shared": [b.shared for b in opt.buckets], "agree": len(set(last)) == 1}
report(**out)

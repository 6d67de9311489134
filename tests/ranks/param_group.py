"""add_param_group on a DistributedOptimizer: the new parameters get buckets and hooks, so the
replicas keep agreeing and match one process; a group added behind its back is an error."""

from __future__ import annotations

import numpy as np

import collective as col
import dlsys as ds
from ranks.report import report
from ranks.training import BATCHES, STEPS, P, R, digest, loss_of, model_for, params_of, rel_err


def run(distributed):
    model = model_for("float64", 1)
    layers = [m for m in model.children() if list(m.parameters())]
    opt = ds.optim.SGD(list(layers[0].parameters()), lr=0.1, momentum=0.9)
    if distributed:
        opt = col.DistributedOptimizer(opt, named_parameters=model.named_parameters())
    for t in range(STEPS):
        if t == 2:  # unfreeze the other layers (fine-tuning)
            opt.add_param_group({"params": [p for m in layers[1:] for p in m.parameters()],
                                 "lr": 0.05})
        opt.zero_grad()
        model.zero_grad()  # the layers not yet optimized accumulate nothing across steps
        idx = BATCHES[R][t] if distributed else np.concatenate([BATCHES[r][t] for r in range(P)])
        loss_of(model, idx).backward()
        opt.step()
    return model, opt


reference, _ = run(False)
model, opt = run(True)
got = params_of(model)
out = {"err": rel_err(got, params_of(reference)),
       "agree": len(set(col.allgather_object(digest(got)))) == 1,
       "buckets_cover": sum(len(b.params) for b in opt.buckets) == len(got)}

# a group added to the wrapped optimizer directly would leave its parameters unreduced
inner = ds.optim.SGD(list(model_for("float64", 2)[0].parameters()), lr=0.1)
extra = model_for("float64", 3)
dist = col.DistributedOptimizer(inner)
inner.add_param_group({"params": list(extra.parameters())})
try:
    dist.step()
    out["direct_error"] = ""
except RuntimeError as exc:
    out["direct_error"] = str(exc)
report(**out)

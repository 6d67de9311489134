"""Training where rank 1 fails at step 3: it raises (or, with EXIT_INSTEAD=1, exits)."""

from __future__ import annotations

import os
import sys

import collective as col
import dlsys as ds
from ranks.training import BATCHES, R, loss_of, model_for

EXIT = os.environ.get("EXIT_INSTEAD") == "1"
model = model_for("float32", 1)
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
for t in range(10):
    opt.zero_grad()
    if t == 3 and R == 1:
        if EXIT:
            print("rank 1 calls sys.exit(3) at step 3", flush=True)
            sys.exit(3)
        raise RuntimeError("injected failure on rank 1 at step 3")
    loss_of(model, BATCHES[R][t], "float32").backward()
    opt.step()

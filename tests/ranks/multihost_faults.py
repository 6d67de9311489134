"""Guarantee 4 across hosts: the last rank (on the last host) fails at step 3 of training with
DistributedOptimizer, by ``MULTIHOST_FAULT``: "exception" (an uncaught RuntimeError) or
"sigkill" (the kernel kills it: no Python, no MPI_Abort). The job must end on every host.

Before training every rank reports where it runs and ``crossed``, the bytes of one big allreduce
(each host's link must carry at least that many in each direction).
"""

from __future__ import annotations

import os
import signal

import numpy as np
from multihost_common import placement, report

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn

col.init()
P, R = col.size(), col.rank()
FAULT = os.environ["MULTIHOST_FAULT"]
assert FAULT in ("exception", "sigkill"), FAULT

big = col.allreduce(np.full(1 << 20, R, np.float32), op=col.Sum)
assert np.all(big == P * (P - 1) / 2)
report(crossed=big.nbytes, **placement())

rng = np.random.default_rng(R)
ds.manual_seed(0)
model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 3))
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
for step in range(10):
    opt.zero_grad()
    if step == 3 and R == P - 1:
        print(f"rank {R} on {placement()['host']}: injecting {FAULT} at step {step}",
              flush=True)
        if FAULT == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected failure on rank {R} at step {step}")
    x = ds.tensor(rng.standard_normal((4, 6)).astype(np.float32))
    F.cross_entropy(model(x), ds.tensor(rng.integers(0, 3, 4))).backward()
    opt.step()
print("training ended on a rank: the fault did not stop the job", flush=True)

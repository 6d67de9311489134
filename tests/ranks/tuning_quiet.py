"""When does ``auto`` measure? Every call of collective.tuning.measure is recorded with the
phase of the program it happened in: start-up, building the optimizer, or a training step
(backward + step, with reductions in flight: the measurement must never happen there)."""

from __future__ import annotations

import numpy as np

import collective.tuning as tuning
from ranks.report import report

phase = "import"
measured = []
_measure = tuning.measure


def recording_measure(ctx, *args, **kwargs):
    measured.append(phase)
    return _measure(ctx, *args, **kwargs)


tuning.measure = recording_measure

import collective as col  # noqa: E402
import dlsys as ds  # noqa: E402
import dlsys.nn.functional as F  # noqa: E402
from dlsys import nn  # noqa: E402

phase = "init"
col.init()
phase = "optimizer"
ds.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 4))
opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                               named_parameters=model.named_parameters())
rng = np.random.default_rng(col.rank())
for _ in range(2):
    opt.zero_grad()
    phase = "step"
    x = ds.tensor(rng.standard_normal((8, 20)), dtype=ds.float32)
    y = ds.tensor(rng.integers(0, 4, 8))
    F.cross_entropy(model(x), y).backward()
    opt.step()
    phase = "between steps"
col.allreduce(np.ones(10))
report(measured=measured)

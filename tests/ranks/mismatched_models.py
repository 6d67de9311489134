"""Ranks with different models: DistributedOptimizer and broadcast_parameters raise on every
rank, naming the rank and the difference, well within 30 s."""

from __future__ import annotations

import time

import collective as col
import dlsys as ds
from dlsys import nn
from ranks.report import report
from ranks.training import N_IN, N_OUT, R

t0 = time.monotonic()
hidden = 8 if R == 0 else 9  # rank 1 has a different model
ds.manual_seed(0)
model = nn.Sequential(nn.Linear(N_IN, hidden), nn.Tanh(), nn.Linear(hidden, N_OUT))
errors = {}
try:
    col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                             named_parameters=model.named_parameters())
except ValueError as exc:
    errors["optimizer"] = str(exc)
try:
    col.broadcast_parameters(model.state_dict(), root=0)
except ValueError as exc:
    errors["broadcast"] = str(exc)
try:
    col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                             named_parameters=[("w", p) for p in model.parameters()])
except ValueError as exc:
    errors["duplicate"] = str(exc)
report(errors=errors, seconds=time.monotonic() - t0)

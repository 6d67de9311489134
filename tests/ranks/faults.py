"""Training with DistributedOptimizer where one rank stops taking part at step 3, by
``FAULT``: "stuck" (the last rank spins in pure Python, never calling MPI again), "stopped"
(it stops itself with SIGSTOP: its watchdog cannot answer either) or "sigkill" (the kernel
kills it). The job must end, with the stall report (stuck, stopped) or the launcher's message
naming the rank (sigkill)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn

FAULT = os.environ["FAULT"]
col.init()
P, R = col.size(), col.rank()


def spin_forever():
    x = 0
    while True:
        x += 1  # the stuck line


def main():
    rng = np.random.default_rng(R)
    ds.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = col.DistributedOptimizer(ds.optim.SGD(model.parameters(), lr=0.1),
                                   named_parameters=model.named_parameters())
    for step in range(1000):
        if step == 3 and R == P - 1:
            print(f"rank {R}: injecting {FAULT} at step {step}", flush=True)
            if FAULT == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif FAULT == "stopped":
                os.kill(os.getpid(), signal.SIGSTOP)
            spin_forever()
        opt.zero_grad()
        x = ds.tensor(rng.standard_normal((4, 6)).astype(np.float32))
        loss = F.cross_entropy(model(x), ds.tensor(rng.integers(0, 3, 4)))
        loss.backward()
        opt.step()
        col.allreduce(np.array([loss.item()]), op=col.Average)
        time.sleep(0.01)
    print("training ended: the fault did not stop the job", flush=True)


main()

"""Exact resume: ``MODE=full`` trains 2 epochs (dropout, shuffling, a random augmentation, Adam,
a scheduler, per-rank RNG streams) and saves a checkpoint in the middle of epoch 1 (at global
step ``STOP``) and one at the end of epoch 0; ``MODE=resume`` starts from other weights and
seeds, loads the mid-epoch checkpoint and trains to the end. Each reports its final weights'
digest, which must be bitwise the full run's."""

from __future__ import annotations

import os

import numpy as np

import collective as col
import dlsys as ds
import dlsys.nn.functional as F
from dlsys import nn
from dlsys.data import DataLoader, Dataset, DistributedSampler, sample_generator
from ranks.report import report
from ranks.training import digest

col.init()
P, R = col.size(), col.rank()
MODE, CKPT, STOP = os.environ["MODE"], os.environ["CKPT"], int(os.environ.get("STOP", "17"))
EPOCHS = 2


class Noisy(Dataset):
    """Random augmentation: noise drawn from the batch's generator (dlsys.data.rng)."""

    def __init__(self, n):
        rng = np.random.default_rng(7)
        self.x = rng.standard_normal((n, 6)).astype(np.float32)
        self.y = rng.integers(0, 3, n)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = sample_generator().standard_normal(6).astype(np.float32)
        return self.x[i] + 0.1 * noise, self.y[i]


def build(seed):
    ds.manual_seed(seed + R)  # per-rank streams: dropout differs between ranks
    np.random.seed(seed + R)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    col.broadcast_parameters(model.state_dict(), root=0)
    base = ds.optim.Adam(model.parameters(), lr=1e-2)
    opt = col.DistributedOptimizer(base, named_parameters=model.named_parameters())
    sched = ds.optim.lr_scheduler.StepLR(base, step_size=5, gamma=0.5)
    data = Noisy(96)
    loader = DataLoader(data, batch_size=4, sampler=DistributedSampler(data, P, R, seed=3))
    return model, opt, sched, loader


def train(model, opt, sched, loader, epoch0, step):
    for epoch in range(epoch0, EPOCHS):
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            opt.zero_grad()
            # numpy's legacy global RNG is used too (its state is checkpointed)
            scale = 1.0 + 0.01 * np.random.rand()
            (F.cross_entropy(model(x), y) * scale).backward()
            opt.step()
            sched.step()
            step += 1
            if MODE == "full" and step == STOP:
                col.save_checkpoint(CKPT, model=model, optimizer=opt, scheduler=sched,
                                    sampler=loader, step=step, epoch=epoch, note="mid-epoch")
        if MODE == "full" and epoch == 0:
            col.save_checkpoint(CKPT + ".epoch0", model=model, optimizer=opt, scheduler=sched,
                                sampler=loader, step=step, epoch=epoch + 1)
    return step


if MODE == "full":
    model, opt, sched, loader = build(100)
    step = train(model, opt, sched, loader, 0, 0)
    extra = {}
else:
    model, opt, sched, loader = build(555)  # other weights and seeds: all must be restored
    state = col.load_checkpoint(CKPT, model=model, optimizer=opt, scheduler=sched,
                                sampler=loader)
    extra = {"loaded": {k: v for k, v in state.items()}, "step_count": opt.step_count}
    step = train(model, opt, sched, loader, state["epoch"], state["step"])
report(digest=digest([p.numpy() for p in model.parameters()]), steps=step,
       lr=opt.param_groups[0]["lr"], **extra)

"""The recipe of examples/train_resnet.py in PyTorch, for the side-by-side test-accuracy curve.

    .venv/bin/python benchmarks/resnet_torch_reference.py --world-size 2 --json torch_resnet.json

One process trains on the global batch of a ``--world-size`` P run of train_resnet.py (batch
P * ``--batch-size``; with SyncBatchNorm the P ranks' statistics are those of that global batch,
so one process with plain BatchNorm over it is the same model): ResNet-20 with option-A
shortcuts and Kaiming fan-out init, Fashion-MNIST zero-padded to 32x32 and normalised by the
training set's mean and std, random crops (padding 4) and horizontal flips, SGD with Nesterov
momentum 0.9, weight decay 5e-4 on conv and linear weights only, lr 0.1 per 128 samples, one
epoch of linear warmup then cosine to 0, per step. The sample order and the augmentation draws
are torch's/numpy's own, not the dlsys run's (the curves are compared, not the steps). It
prints one line per epoch in train_resnet.py's format. Needs torch (in .venv; never imported by
the package).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

# NOTE: the recipe's data and schedule come from the example itself, so both runs share them
# by construction; only the model is written again, in torch
from train_resnet import load_data, lr_factor  # noqa: E402


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def shortcut(self, x):
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, n=3, in_channels=1, num_classes=10, widths=(16, 32, 64)):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.adaptive_avg_pool2d(self.blocks(x), 1)
        return self.fc(x.flatten(1))


def augment(images, rng):
    """Random 32x32 crops of the images zero-padded by 4, each flipped with probability 1/2."""
    n = len(images)
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    dy, dx = rng.integers(0, 9, n), rng.integers(0, 9, n)
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        out[i] = crop[:, :, ::-1] if rng.random() < 0.5 else crop
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--world-size", type=int, default=2, help="P of the dlsys run this one matches")
    a("--batch-size", type=int, default=64, help="per rank (the step's batch is P times it)")
    a("--epochs", type=int, default=10)
    a("--momentum", type=float, default=0.9)
    a("--weight-decay", type=float, default=5e-4)
    a("--seed", type=int, default=0)
    a("--threads", type=int, default=1)
    a("--limit", type=int, default=None, help="first samples of each split only (smoke runs)")
    a("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    xtr, ytr, xte, yte, mean, std = load_data(args.limit)
    xte_t = torch.from_numpy(((xte - np.float32(mean)) / np.float32(std)).astype(np.float32))
    yte_t = torch.from_numpy(yte.astype(np.int64))

    batch = args.world_size * args.batch_size
    steps_per_epoch = len(ytr) // batch
    total, warmup = args.epochs * steps_per_epoch, steps_per_epoch
    model = ResNet()
    decay = [q for q in model.parameters() if q.ndim > 1]
    no_decay = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.1 * batch / 128, momentum=args.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))

    @torch.no_grad()
    def evaluate():
        model.eval()
        loss, correct = 0.0, 0
        for lo in range(0, len(yte_t), 500):
            logits = model(xte_t[lo:lo + 500])
            loss += F.cross_entropy(logits, yte_t[lo:lo + 500], reduction="sum").item()
            correct += int((logits.argmax(1) == yte_t[lo:lo + 500]).sum())
        model.train()
        return loss / len(yte_t), correct / len(yte_t)

    print(f"torch {torch.__version__}, {args.threads} thread(s): ResNet-20 on Fashion-MNIST "
          f"32x32, {args.epochs} epochs of {steps_per_epoch} steps, batch {batch}", flush=True)
    history, t_start = [], time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0, total_loss, seen = time.perf_counter(), 0.0, 0
        order = rng.permutation(len(ytr))
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            x = torch.from_numpy((augment(xtr[idx], rng) - np.float32(mean)) / np.float32(std))
            y = torch.from_numpy(ytr[idx].astype(np.int64))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(y)
            seen += len(y)
        secs = time.perf_counter() - t0
        test_loss, acc = evaluate()
        history.append(dict(epoch=epoch, step=epoch * steps_per_epoch,
                            train_loss=total_loss / seen, test_loss=test_loss,
                            test_accuracy=acc, epoch_time_s=secs, images_per_s=seen / secs))
        print(f"epoch {epoch}/{args.epochs}  step {epoch * steps_per_epoch}  train loss "
              f"{total_loss / seen:.4f}  test loss {test_loss:.4f}  test acc {100 * acc:.2f}%  "
              f"{secs:.0f} s  {seen / secs:,.0f} images/s", flush=True)
    wall = time.perf_counter() - t_start
    print(f"done: {total} steps in {wall:.0f} s, test accuracy "
          f"{100 * history[-1]['test_accuracy']:.2f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), wall_s=wall,
                                                   history=history), indent=2))


if __name__ == "__main__":
    main()

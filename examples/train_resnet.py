"""Train ResNet-20 on Fashion-MNIST (padded to 32x32) with dlsys (one process or P ranks).

    python -m dlsys.data fetch fashion-mnist                 # once: the data into the cache
    ./mpirun.sh -n 2 python examples/train_resnet.py         # the default recipe, 2 ranks
    ./mpirun.sh -n 2 python examples/train_resnet.py --resume checkpoints/resnet20.ds

ResNet-20 as He et al. define it for CIFAR-10 (arXiv:1512.03385, section 4.2): a 3x3 conv to 16
channels, three stages of three basic blocks (two 3x3 convs with BatchNorm and ReLU) at 16, 32
and 64 channels, the second and third starting with stride 2 and a parameter-free shortcut
(subsample, zero-pad the new channels: option A), global average pooling and a linear layer;
0.27 M parameters. (No CIFAR-10 can be had offline from a package registry here: the PyPI
packages named after it download it at run time; Fashion-MNIST comes from Debian's package.)
Augmentation through the DataLoader: random crops of the 32x32 image padded by 4 and
horizontal flips. SGD with Nesterov momentum 0.9 and weight decay 5e-4 (not on BatchNorm
parameters and biases), linear warmup over the first epoch then cosine to 0, per step; the
learning rate scales with the global batch (0.1 per 128 samples). With P > 1 ranks every
BatchNorm becomes a col.SyncBatchNorm (statistics of the global batch; running statistics
identical on every rank) and DistributedOptimizer averages the gradients.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import dlsys as ds  # noqa: E402
from dlsys import nn, optim  # noqa: E402
from dlsys.data import DataLoader, Dataset, DistributedSampler, TensorDataset  # noqa: E402
from dlsys.data import transforms as T  # noqa: E402
from dlsys.nn import functional as F  # noqa: E402


# -- model ---------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def shortcut(self, x):
        """Option A: identity; at a stage change every other pixel, zeros for new channels."""
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth 6 n + 2 (n = 3: ResNet-20)."""

    def __init__(self, n: int = 3, in_channels: int = 1, num_classes: int = 10,
                 widths=(16, 32, 64)):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        blocks, cin = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(cin, w, 2 if stage > 0 and i == 0 else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.pool(self.blocks(x))
        return self.fc(x.flatten(1))


def param_groups(model, weight_decay: float):
    """Weight decay on conv and linear weights only (not BatchNorm parameters, biases)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


# -- data ----------------------------------------------------------------------------------------
class Augmented(Dataset):
    """(transform(images[i]), labels[i]): the transforms draw from the DataLoader's per-batch
    generator, so augmentation is reproducible from the loader's seed."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def load_data(limit: int | None = None):
    """Fashion-MNIST images zero-padded to 32x32 (float32 in [0, 1]), labels, and the training
    set's mean and std; ``limit`` keeps the first samples of each split (smoke runs)."""
    (xtr, ytr), (xte, yte) = ds.data.fashion_mnist("train"), ds.data.fashion_mnist("test")
    if limit is not None:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[:limit], yte[:limit]
    pad = ((0, 0), (0, 0), (2, 2), (2, 2))
    xtr, xte = np.pad(xtr, pad), np.pad(xte, pad)
    return xtr, ytr, xte, yte, float(xtr.mean(dtype=np.float64)), float(xtr.std(dtype=np.float64))


def make_loaders(batch_size, seed, rank, world, device, limit=None, augment=True):
    xtr, ytr, xte, yte, mean, std = load_data(limit)
    norm = T.Normalize((mean,), (std,))
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), norm]) \
        if augment else norm
    train_set = Augmented(xtr, ytr, train_tf)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=seed,
                                 drop_last=True)
    train = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True,
                       seed=seed + rank, device=device)
    part = np.array_split(np.arange(len(yte)), world)[rank]  # each rank tests its share
    xte = ((xte[part] - np.float32(mean)) / np.float32(std)).astype(np.float32)
    test = DataLoader(TensorDataset(xte, yte[part]), batch_size=500, device=device)
    return train, test, sampler


def evaluate(model, loader, col, world):
    """(loss, accuracy) over every rank's share of the test set."""
    model.eval()
    total, correct, count = 0.0, 0, 0
    with ds.no_grad():
        for x, y in loader:
            logits = model(x)
            total += float(F.cross_entropy(logits, y, reduction="sum").item())
            correct += int((np.asarray(logits).argmax(1) == np.asarray(y)).sum())
            count += len(y)
    model.train()
    if world > 1:
        total, correct, count = col.allreduce(np.array([total, correct, count], np.float64),
                                              op=col.Sum)
    return total / count, correct / count


def check_replicas(col, model):
    """Raise unless every rank holds bitwise the same parameters and buffers (running
    statistics included); returns their sha256."""
    h = hashlib.sha256()
    for _, t in sorted(model.state_dict().items()):
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    digests = col.allgather_object(h.hexdigest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"the replicas differ: parameter digests per rank {digests}")
    return digests[0]


# -- checkpoints: col.save_checkpoint (rank 0 writes once, with every rank's RNG and loader) ---
def save_checkpoint(path, col, model, optimizer, scheduler, loader, epoch, step, args):
    """Every rank calls it (the loaders' states differ: each rank augments with its own
    generator; col.save_checkpoint keeps every rank's)."""
    if col.rank() == 0:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    col.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler,
                        sampler=loader, step=step, epoch=epoch, args=json.dumps(vars(args)))


def resume(path, col, model, optimizer, scheduler, loader, log):
    """Every piece restored on every rank (col.load_checkpoint); returns (epoch done, step)."""
    extra = col.load_checkpoint(path, model, optimizer, scheduler, sampler=loader)
    log.info(f"resumed from {path}: epoch {extra['epoch']} done, step {extra['step']}")
    return int(extra["epoch"]), int(extra["step"])


def setup_logging(rank: int, world: int) -> logging.Logger:
    log = logging.getLogger("train_resnet")
    handler = logging.StreamHandler(sys.stdout if rank == 0 else sys.stderr)
    handler.setFormatter(logging.Formatter((f"[rank {rank}/{world}] " if rank else "")
                                           + "%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    return log


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--epochs", type=int, default=10)
    a("--batch-size", type=int, default=64, help="images per rank per step")
    a("--lr", type=float, default=None, help="peak learning rate (default 0.1 x global/128)")
    a("--momentum", type=float, default=0.9)
    a("--weight-decay", type=float, default=5e-4)
    a("--warmup-epochs", type=float, default=1.0)
    a("--no-augment", action="store_true")
    a("--no-sync-bn", action="store_true", help="plain BatchNorm (local statistics) at P > 1")
    a("--seed", type=int, default=0)
    a("--device", default="cpu")
    a("--limit", type=int, default=None, help="first samples of each split only (smoke runs)")
    a("--max-steps", type=int, default=None, help="stop after this many steps in all")
    a("--checkpoint", default="checkpoints/resnet20.ds",
      help="written by rank 0 after every epoch and at the end ('' for none)")
    a("--resume", default=None, metavar="PATH")
    a("--json", default=None)
    a("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if os.environ.get("TQDM_DISABLE"):
        args.no_progress = True
    return args


def main(argv=None):
    from tqdm import tqdm

    import collective as col

    args = parse_args(argv)
    col.init()
    rank, world = col.rank(), col.size()
    log = setup_logging(rank, world)
    if args.device == "cuda":
        # NOTE: one GPU per rank, chosen from the local rank before any CUDA context exists
        from dlsys.backend.cuda import select_device_for_local_rank

        select_device_for_local_rank(col.local_rank())
    ds.manual_seed(args.seed)
    try:
        train, test, sampler = make_loaders(args.batch_size, args.seed, rank, world,
                                            args.device, args.limit, not args.no_augment)
    except FileNotFoundError as e:
        sys.exit(str(e))
    model = ResNet()
    if world > 1 and not args.no_sync_bn:
        model = col.convert_sync_batchnorm(model)
    model.to(args.device)
    lr = args.lr if args.lr is not None else 0.1 * args.batch_size * world / 128
    optimizer = optim.SGD(param_groups(model, args.weight_decay), lr=lr,
                          momentum=args.momentum, nesterov=True)
    steps_per_epoch = len(train)
    total = args.epochs * steps_per_epoch
    warmup = max(1, round(args.warmup_epochs * steps_per_epoch))
    scheduler = optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    col.broadcast_parameters(model.state_dict(), root=0)
    epoch, step = 0, 0
    if args.resume:
        epoch, step = resume(args.resume, col, model, optimizer, scheduler, train, log)
        if 0 < sampler.state_dict()["position"] < len(sampler):
            epoch -= 1  # the checkpoint is inside an epoch: finish it first
    if world > 1:
        optimizer = col.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    loss_fn = nn.CrossEntropyLoss()
    n_params = sum(p.numel() for p in model.parameters())
    bn = "SyncBatchNorm" if world > 1 and not args.no_sync_bn else "BatchNorm"
    log.info(f"ResNet-20 ({n_params:,} parameters, {bn}) on Fashion-MNIST 32x32: "
             f"{args.epochs} epochs of {steps_per_epoch} steps, batch {args.batch_size} x "
             f"{world} rank(s), SGD lr {lr:g} (Nesterov {args.momentum}, wd "
             f"{args.weight_decay}), device {args.device}")
    history = []
    t_start = time.perf_counter()
    done = False
    while epoch < args.epochs and not done:
        epoch += 1
        sampler.set_epoch(epoch)
        t0, seen, total_loss = time.perf_counter(), 0, 0.0
        bar = tqdm(train, desc=f"epoch {epoch}/{args.epochs}", leave=False, unit="step",
                   disable=args.no_progress or rank != 0, dynamic_ncols=True)
        for x, y in bar:
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            total_loss += float(loss.item()) * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}")
            if args.max_steps is not None and step >= args.max_steps:
                done = True
                break
        bar.close()
        secs = time.perf_counter() - t0
        train_loss, seen_all = total_loss / max(seen, 1), seen * world
        if world > 1:
            train_loss = float(col.allreduce(np.array([train_loss]), op=col.Average)[0])
            secs = float(col.allreduce(np.array([secs]), op=col.Max)[0])
        if world > 1 and args.no_sync_bn:
            # NOTE: local BatchNorm statistics differ across ranks: evaluate and save rank 0's
            # on every rank (what PyTorch DDP's broadcast_buffers does at each forward)
            col.broadcast_parameters(list(model.named_buffers()), root=0)
        test_loss, acc = evaluate(model, test, col, world)
        digest = check_replicas(col, model) if world > 1 else None
        row = dict(epoch=epoch, step=step, train_loss=train_loss, test_loss=test_loss,
                   test_accuracy=acc, epoch_time_s=secs, images_per_s=seen_all / secs,
                   replicas_digest=digest)
        history.append(row)
        log.info(f"epoch {epoch}/{args.epochs}  step {step}  train loss {train_loss:.4f}  test "
                 f"loss {test_loss:.4f}  test acc {100 * acc:.2f}%  {secs:.0f} s  "
                 f"{seen_all / secs:,.0f} images/s")
        if args.checkpoint:
            save_checkpoint(args.checkpoint, col, model, optimizer, scheduler, train, epoch, step,
                            args)
    wall = time.perf_counter() - t_start
    log.info(f"done: {step} steps in {wall:.0f} s")
    if args.json and rank == 0:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), world_size=world,
                                                   wall_s=wall, history=history), indent=2))
    col.barrier()  # the others wait for rank 0's writing instead of taking it for a hang
    return history


if __name__ == "__main__":
    main()

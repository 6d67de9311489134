"""Train a character-level GPT on Shakespeare with dlsys (one process or P ranks).

    python -m dlsys.data fetch shakespeare                    # once: the text into the cache
    ./mpirun.sh -n 2 python examples/train_gpt.py             # the default recipe, 2 ranks
    python examples/train_gpt.py --max-iters 200 --eval-interval 50
    ./mpirun.sh -n 2 python examples/train_gpt.py --resume checkpoints/gpt.ds

The model: token and position embeddings, ``--n-layer`` pre-LayerNorm blocks of causal
multi-head self-attention (F.scaled_dot_product_attention) and a GELU MLP, a final LayerNorm,
and the head tied to the token embedding (GPT-2's layout, as in nanoGPT). AdamW (no weight decay
on biases, norms and embeddings), linear warmup then cosine decay to lr/10, gradient clipping.
Data parallel: every rank reads its own random windows of the training text (a
DistributedSampler over every window start, deterministic for a seed) and DistributedOptimizer
averages the gradients, so the ranks stay identical; the val loss is averaged over the ranks,
each evaluating its share of a fixed set of val windows. Rank 0 prints lines
``step N: train loss X, val loss Y, lr Z, T s`` (the format of
benchmarks/gpt_torch_reference.py), checkpoints, and samples text at the end.
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
from dlsys.data import DataLoader, Dataset, DistributedSampler  # noqa: E402
from dlsys.nn import functional as F  # noqa: E402


# -- model ---------------------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        if d % n_head:
            raise ValueError(f"n_embd ({d}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, d: int, n_head: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_head)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer over ``vocab_size`` characters with ``block_size`` positions."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int):
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        # GPT-2's init: N(0, 0.02), zero biases, residual projections scaled by 1/sqrt(2 L)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("proj.weight",
                                                                        "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        B, T = idx.shape
        if T > self.block_size:
            raise ValueError(f"GPT: sequence of {T} tokens, the context is {self.block_size}")
        x = self.tok_emb(idx) + self.pos_emb(ds.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.tok_emb.weight)  # the head tied to the embedding

    @ds.no_grad()
    def generate(self, idx, n: int, temperature: float = 1.0, top_k: int | None = None):
        """``idx`` (B, T) continued by ``n`` tokens sampled at ``temperature`` from the ``top_k``
        most likely (all when None)."""
        self.eval()
        for _ in range(n):
            logits = self(idx[:, -self.block_size:])[:, -1, :] / temperature
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = ds.multinomial(F.softmax(logits, -1), 1)
            idx = ds.cat([idx, nxt], dim=1)
        return idx


def param_groups(model, weight_decay: float):
    """AdamW groups: decay for the matrices of the Linear layers only; none for biases,
    LayerNorm weights and the (tied) embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_matrix = p.ndim == 2 and not name.startswith(("tok_emb", "pos_emb"))
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(step: int, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# -- data ----------------------------------------------------------------------------------------
class CharWindows(Dataset):
    """Item i: (ids[i : i + T], ids[i + 1 : i + T + 1]), input and next-character targets."""

    def __init__(self, ids: np.ndarray, block_size: int):
        self.ids, self.T = ids, block_size

    def __len__(self):
        return len(self.ids) - self.T

    def __getitem__(self, i):
        w = self.ids[i:i + self.T + 1]
        return w[:-1], w[1:]


def val_windows(n_val: int, block_size: int, count: int, seed: int) -> np.ndarray:
    """The fixed start positions of the val windows every evaluation uses."""
    return np.random.default_rng(seed + 1).integers(0, n_val - block_size, count)


def evaluate(model, ids, starts, block_size, batch_size, device, col, rank, world):
    """Mean loss over the val windows at ``starts``; each rank evaluates its share, then the
    sums are reduced, so every rank gets the same number."""
    mine = np.array_split(starts, world)[rank]
    model.eval()
    total, count = 0.0, 0
    with ds.no_grad():
        for lo in range(0, len(mine), batch_size):
            s = mine[lo:lo + batch_size]
            w = np.stack([ids[i:i + block_size + 1] for i in s])
            x = ds.tensor(w[:, :-1], device=device)
            y = ds.tensor(w[:, 1:], device=device)
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            total += float(loss.item()) * len(s)
            count += len(s)
    model.train()
    if world > 1:
        total, count = col.allreduce(np.array([total, count], np.float64), op=col.Sum)
    return total / count


def check_replicas(col, model):
    """Raise unless every rank holds bitwise the same parameters and buffers (a sha256 of
    their bytes, compared across ranks)."""
    h = hashlib.sha256()
    for _, t in sorted(model.state_dict().items()):
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    digests = col.allgather_object(h.hexdigest())
    if len(set(digests)) != 1:
        raise RuntimeError(f"the replicas differ: parameter digests per rank {digests}")
    return digests[0]


# -- checkpoints: col.save_checkpoint (rank 0 writes once, with every rank's RNG and loader) ---
def save_checkpoint(path, col, model, optimizer, scheduler, loader, step, runs, args, tokenizer):
    """Every rank calls it. ``runs``: every rank's running train loss."""
    if col.rank() == 0:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    col.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler,
                        sampler=loader, step=step, running_loss=json.dumps(runs),
                        vocab=tokenizer.vocab, args=json.dumps(vars(args)))


def resume(path, col, model, optimizer, scheduler, loader, log):
    """Every piece restored on every rank (col.load_checkpoint: rank 0 reads, broadcasts;
    mid-epoch, only at the world size that wrote it); returns (step, the running loss)."""
    extra = col.load_checkpoint(path, model, optimizer, scheduler, sampler=loader)
    log.info(f"resumed from {path} at step {extra['step']}")
    return int(extra["step"]), json.loads(extra["running_loss"])[col.rank()]


# -- the run ---------------------------------------------------------------------------------------
def setup_logging(rank: int, world: int) -> logging.Logger:
    log = logging.getLogger("train_gpt")
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
    a("--n-layer", type=int, default=4)
    a("--n-head", type=int, default=4)
    a("--n-embd", type=int, default=128)
    a("--block-size", type=int, default=64, help="context length")
    a("--batch-size", type=int, default=12, help="sequences per rank per step")
    a("--max-iters", type=int, default=1500, help="steps of the schedule (and of the run)")
    a("--max-steps", type=int, default=None,
      help="stop (and checkpoint) after this many steps in all, as an interrupted run would")
    a("--lr", type=float, default=2e-3, help="peak learning rate")
    a("--warmup-iters", type=int, default=100)
    a("--weight-decay", type=float, default=0.1)
    a("--grad-clip", type=float, default=1.0, help="max gradient norm (0: none)")
    a("--eval-interval", type=int, default=250)
    a("--eval-windows", type=int, default=384, help="val windows per evaluation (all ranks)")
    a("--sample-chars", type=int, default=500, help="characters sampled at the end (0: none)")
    a("--temperature", type=float, default=0.8)
    a("--top-k", type=int, default=40)
    a("--seed", type=int, default=1337)
    a("--device", default="cpu")
    a("--dtype", choices=["float32", "float64"], default="float32")
    a("--checkpoint", default="checkpoints/gpt.ds",
      help="written by rank 0 at every evaluation and at the end ('' for none)")
    a("--resume", default=None, metavar="PATH")
    a("--json", default=None, help="write the curve (and the args) to this file")
    a("--no-progress", action="store_true", help="no tqdm bar")
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
        train_text, val_text = ds.data.shakespeare("train"), ds.data.shakespeare("val")
    except FileNotFoundError as e:
        sys.exit(str(e))
    tok = ds.data.CharTokenizer(train_text)
    train_ids, val_ids = tok.encode(train_text), tok.encode(val_text)

    windows = CharWindows(train_ids, args.block_size)
    # NOTE: a "pass" is every window start once (4.5 M windows): runs end long before one
    sampler = DistributedSampler(windows, num_replicas=world, rank=rank, seed=args.seed)
    loader = DataLoader(windows, batch_size=args.batch_size, sampler=sampler, drop_last=True,
                        device=args.device)
    starts = val_windows(len(val_ids), args.block_size, args.eval_windows, args.seed)

    model = GPT(tok.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd)
    model.to(dtype=np.dtype(args.dtype)).to(args.device)
    optimizer = optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr,
                            betas=(0.9, 0.99))
    scheduler = optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, args.warmup_iters, args.max_iters))
    col.broadcast_parameters(model.state_dict(), root=0)
    step, running = 0, None
    if args.resume:
        step, running = resume(args.resume, col, model, optimizer, scheduler, loader, log)
    if world > 1:
        optimizer = col.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    log.info(f"GPT {args.n_layer} layers, {args.n_head} heads, d={args.n_embd}, context "
             f"{args.block_size}, {n_params:,} parameters, vocab {tok.vocab_size}; batch "
             f"{args.batch_size} x {world} rank(s), {args.max_iters} steps, lr {args.lr}, "
             f"device {args.device}")

    history = []
    t0 = time.perf_counter()
    bar = tqdm(total=args.max_iters, initial=step, disable=args.no_progress or rank != 0,
               dynamic_ncols=True, unit="step")
    epoch = sampler.state_dict()["epoch"]
    stop = args.max_iters if args.max_steps is None else min(args.max_steps, args.max_iters)

    def report(step):
        # every rank's running (exponential) mean of its losses: the mean is the train loss
        runs = col.allgather_object(running) if world > 1 else [running]
        train_loss = None if running is None else float(np.mean(runs))
        val = evaluate(model, val_ids, starts, args.block_size, 4 * args.batch_size, args.device,
                       col, rank, world)
        digest = check_replicas(col, model) if world > 1 else None
        row = dict(step=step, train_loss=train_loss, val_loss=val,
                   lr=optimizer.param_groups[0]["lr"], time_s=time.perf_counter() - t0,
                   replicas_digest=digest)
        history.append(row)
        tl = "nan" if train_loss is None else f"{train_loss:.4f}"
        if rank == 0:
            bar.write(f"step {step}: train loss {tl}, val loss {val:.4f}, lr {row['lr']:.2e}, "
                      f"{row['time_s']:.0f} s")
        if args.checkpoint:
            save_checkpoint(args.checkpoint, col, model, optimizer, scheduler, loader, step, runs,
                            args, tok)

    if step == 0:
        report(0)
    while step < stop:
        sampler.set_epoch(epoch)
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            if args.grad_clip > 0:
                if world > 1:
                    optimizer.synchronize()  # clip the averaged gradients
                nn.utils.clip_grad_norm_(params, args.grad_clip)
                if world > 1:
                    with optimizer.skip_synchronize():
                        optimizer.step()
                else:
                    optimizer.step()
            else:
                optimizer.step()
            scheduler.step()
            step += 1
            lv = float(loss.item())
            running = lv if running is None else 0.9 * running + 0.1 * lv
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}")
            if step % args.eval_interval == 0 or step == stop:
                report(step)
            if step >= stop:
                break
        else:
            epoch += 1
    bar.close()
    wall = time.perf_counter() - t0
    log.info(f"done: {step} steps in {wall:.0f} s, val loss {history[-1]['val_loss']:.4f}")
    if args.sample_chars and rank == 0:
        start = ds.tensor(tok.encode("\n").reshape(1, 1), device=args.device)
        out = model.generate(start, args.sample_chars, args.temperature, args.top_k)
        log.info("--- sample (temperature %s, top-k %s) ---\n%s", args.temperature, args.top_k,
                 tok.decode(out.numpy()[0]))
    if args.json and rank == 0:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), world_size=world,
                                                   wall_s=wall, history=history), indent=2))
    col.barrier()  # NOTE: the others wait for rank 0's sampling instead of taking it for a hang
    return history


if __name__ == "__main__":
    main()

"""The recipe of examples/train_gpt.py in PyTorch, for the side-by-side val-loss curve.

    .venv/bin/python benchmarks/gpt_torch_reference.py --world-size 2 --json torch_gpt.json

One process trains on the global batch of a ``--world-size`` P run of train_gpt.py: batch
P * ``--batch-size`` from the same window permutation (DistributedSampler's: every rank's
windows of a step together are positions [s P b, (s + 1) P b) of the permutation of epoch 0),
so it sees the same sequences per step as the dlsys run, with the same model (GPT-2 layout, tied
head, GPT-2 init), AdamW groups, warmup + cosine, clipping and val windows. It prints lines in
train_gpt.py's format (``step N: train loss X, val loss Y, lr Z, T s``); the train loss is the
same exponential running mean. Needs torch (in .venv; never imported by the package).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dlsys as ds  # noqa: E402  (the data only)


class CausalSelfAttention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_head)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.ndim == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("proj.weight",
                                                                        "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T))
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.tok_emb.weight)


def lr_factor(step, warmup, total, min_ratio=0.1):
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--world-size", type=int, default=2, help="P of the dlsys run this one matches")
    a("--n-layer", type=int, default=4)
    a("--n-head", type=int, default=4)
    a("--n-embd", type=int, default=128)
    a("--block-size", type=int, default=64)
    a("--batch-size", type=int, default=12, help="per rank (the step's batch is P times it)")
    a("--max-iters", type=int, default=1500)
    a("--lr", type=float, default=2e-3)
    a("--warmup-iters", type=int, default=100)
    a("--weight-decay", type=float, default=0.1)
    a("--grad-clip", type=float, default=1.0)
    a("--eval-interval", type=int, default=250)
    a("--eval-windows", type=int, default=384)
    a("--seed", type=int, default=1337)
    a("--threads", type=int, default=1)
    a("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train_text, val_text = ds.data.shakespeare("train"), ds.data.shakespeare("val")
    tok = ds.data.CharTokenizer(train_text)
    train_ids = torch.from_numpy(tok.encode(train_text))
    val_ids = torch.from_numpy(tok.encode(val_text))
    T, P, b = args.block_size, args.world_size, args.batch_size
    n_windows = len(train_ids) - T
    order = np.random.default_rng(args.seed).permutation(n_windows)  # DistributedSampler's epoch 0
    starts_val = np.random.default_rng(args.seed + 1).integers(0, len(val_ids) - T,
                                                               args.eval_windows)

    def windows(ids, starts):
        w = torch.stack([ids[i:i + T + 1] for i in starts])
        return w[:, :-1], w[:, 1:]

    model = GPT(tok.vocab_size, T, args.n_layer, args.n_head, args.n_embd)
    decay = [q for n, q in model.named_parameters()
             if q.ndim == 2 and not n.startswith(("tok_emb", "pos_emb"))]
    no_decay = [q for n, q in model.named_parameters()
                if not (q.ndim == 2 and not n.startswith(("tok_emb", "pos_emb")))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr,
                            betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, args.warmup_iters, args.max_iters))

    @torch.no_grad()
    def evaluate():
        model.eval()
        total = 0.0
        for lo in range(0, len(starts_val), 4 * b):
            x, y = windows(val_ids, starts_val[lo:lo + 4 * b])
            total += F.cross_entropy(model(x).reshape(-1, tok.vocab_size), y.reshape(-1)).item() \
                * len(x)
        model.train()
        return total / len(starts_val)

    history, running = [], None
    t0 = time.perf_counter()

    def report(step, train_loss):
        val = evaluate()
        row = dict(step=step, train_loss=train_loss, val_loss=val, lr=opt.param_groups[0]["lr"],
                   time_s=time.perf_counter() - t0)
        history.append(row)
        tl = "nan" if train_loss is None else f"{train_loss:.4f}"
        print(f"step {step}: train loss {tl}, val loss {val:.4f}, lr {row['lr']:.2e}, "
              f"{row['time_s']:.0f} s", flush=True)

    print(f"torch {torch.__version__}, {args.threads} thread(s): GPT {args.n_layer} layers, "
          f"d={args.n_embd}, context {T}, batch {P} x {b}, {args.max_iters} steps, "
          f"lr {args.lr}", flush=True)
    report(0, None)
    for step in range(1, args.max_iters + 1):
        x, y = windows(train_ids, order[(step - 1) * P * b:step * P * b])
        loss = F.cross_entropy(model(x).reshape(-1, tok.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        sched.step()
        lv = loss.item()
        running = lv if running is None else 0.9 * running + 0.1 * lv
        if step % args.eval_interval == 0 or step == args.max_iters:
            report(step, running)
    wall = time.perf_counter() - t0
    print(f"done: {args.max_iters} steps in {wall:.0f} s, val loss {history[-1]['val_loss']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), wall_s=wall,
                                                   history=history), indent=2))


if __name__ == "__main__":
    main()

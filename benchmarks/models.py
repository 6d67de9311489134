"""The benchmark models, written once against PyTorch's API so that either library builds them:
``build(lib, name)`` with ``lib`` the ``torch`` or the ``dlsys`` module (same names).

- ``mlp``: the MNIST MLP 784-256-256-10.
- ``cnn``: LeNet-style (conv 1->6 5x5, relu, maxpool 2, conv 6->16 5x5, relu, maxpool 2,
  flatten, 256-120-84-10).
- ``gpt``: a char-level GPT (token and position embeddings, pre-LayerNorm blocks of causal
  multi-head attention through ``scaled_dot_product_attention(is_causal=True)`` and a GELU MLP
  of 4d, final LayerNorm, head tied to the token embedding); 4 layers, 4 heads, d=128,
  context 64, vocabulary 65 (tiny-shakespeare's).
- ``resnet20``: He et al.'s CIFAR ResNet-20 (3x3 convs, BatchNorm2d, 3 stages of 3 basic
  blocks of 16/32/64 channels, stride-2 stage entries with the option-A shortcut: subsample
  and zero-pad the channels, global average pooling, linear 64-10); 0.27 M parameters.

Nothing here imports either library: the caller passes it in.
"""

from __future__ import annotations

GPT_CONFIG = {"vocab": 65, "layers": 4, "heads": 4, "d": 128, "context": 64}


def build(lib, name, **kw):
    """The model ``name`` ("mlp", "cnn", "gpt", "resnet20") from ``lib`` (torch or dlsys)."""
    nn = lib.nn
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256),
                             nn.ReLU(), nn.Linear(256, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120),
                             nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if name == "gpt":
        return _gpt(lib, **{**GPT_CONFIG, **kw})
    if name == "resnet20":
        return _resnet(lib, depth=20, **kw)
    raise ValueError(f"unknown model {name!r}: expected mlp, cnn, gpt or resnet20")


def _gpt(lib, vocab, layers, heads, d, context):
    nn, F = lib.nn, lib.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.fc = nn.Linear(d, 4 * d)
            self.out = nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
            q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Embedding(context, d)
            self.blocks = nn.ModuleList([Block() for _ in range(layers)])
            self.ln_f = nn.LayerNorm(d)
            for e in (self.tok, self.pos):  # NOTE: GPT-2's init; N(0, 1) logits would be huge
                nn.init.normal_(e.weight, std=0.02)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(lib.arange(idx.shape[1]))
            for blk in self.blocks:
                x = blk(x)
            return F.linear(self.ln_f(x), self.tok.weight)  # NOTE: the tied head

    return GPT()


def _resnet(lib, depth, in_channels=3, classes=10):
    nn, F = lib.nn, lib.nn.functional

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.stride, self.pad = stride, cout - cin

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            s = x
            if self.stride != 1 or self.pad:  # option A: subsample, zero-pad the channels
                s = F.pad(x[:, :, ::self.stride, ::self.stride],
                          (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
            return F.relu(y + s)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            n = (depth - 2) // 6
            self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(16)
            blocks, cin = [], 16
            for i, cout in enumerate((16, 32, 64)):
                for j in range(n):
                    blocks.append(BasicBlock(cin, cout, 2 if i and not j else 1))
                    cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, classes)

        def forward(self, x):
            x = self.blocks(F.relu(self.bn(self.conv(x))))
            return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    return ResNet()


def batch(name, rng, batch_size=None):
    """(inputs, targets) as numpy arrays for one training step of model ``name``; the GPT's
    targets are the next characters, (B, T)."""
    import numpy as np

    if name == "gpt":
        b, t = batch_size or 16, GPT_CONFIG["context"]
        seq = rng.integers(0, GPT_CONFIG["vocab"], (b, t + 1)).astype(np.int64)
        return seq[:, :-1].copy(), seq[:, 1:].copy()
    if name == "resnet20":
        b = batch_size or 64
        return (rng.standard_normal((b, 3, 32, 32), dtype=np.float32),
                rng.integers(0, 10, b).astype(np.int64))
    b = batch_size or 128
    return (rng.random((b, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, b).astype(np.int64))

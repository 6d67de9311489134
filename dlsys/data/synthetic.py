"""Synthetic stand-ins for tests and benchmarks (never for reported accuracies)."""

from __future__ import annotations

import numpy as np

_SPLIT_STREAM = {"train": 1, "test": 2}


def synthetic_classification(n: int, shape=(1, 28, 28), num_classes: int = 10, seed: int = 0,
                             split: str = "train", noise: float = 0.3):
    """A learnable fake dataset: ``(images, labels)``, images float32 ``(n, *shape)`` in [0, 1],
    labels int64 ``(n,)``. Each class is a fixed random template (drawn from ``seed``) plus
    noise, so even a linear model separates the classes. "train" and "test" share templates
    and draw their samples from independent streams; the same arguments give the same data."""
    if split not in _SPLIT_STREAM:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    templates = np.random.default_rng(seed).random((num_classes, *shape))
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
    labels = rng.integers(0, num_classes, size=n)
    images = templates[labels] * (1.0 - noise) + rng.random((n, *shape)) * noise
    return images.astype(np.float32), labels.astype(np.int64)


def synthetic_mnist(split: str = "train", n: int | None = None, seed: int = 0):
    """Synthetic data shaped like :func:`dlsys.data.mnist`: 10 classes, (N, 1, 28, 28);
    N defaults to 6000 for "train" and 1000 for "test"."""
    if n is None:
        n = 6000 if split == "train" else 1000
    return synthetic_classification(n, seed=seed, split=split)

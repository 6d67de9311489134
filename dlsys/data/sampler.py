"""Samplers: iterables of dataset indices (which samples, in which order)."""

from __future__ import annotations

import math

import numpy as np


class Sampler:
    """Base class: ``iter(sampler)`` yields dataset indices; ``len(sampler)`` counts them."""

    def __iter__(self):
        return iter(self.indices().tolist())

    def indices(self) -> np.ndarray:
        """All indices of one pass as an int64 array (lets the DataLoader slice batches)."""
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def indices(self):
        return np.arange(len(self.data_source), dtype=np.int64)

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation per pass.

    With ``seed`` the sampler owns a generator seeded once, so the sequence of epochs is
    reproducible and each epoch differs (like a seeded ``torch.Generator``); without it the
    permutation is drawn from dlsys's global RNG (``ds.manual_seed``).
    """

    def __init__(self, data_source, seed: int | None = None):
        self.data_source = data_source
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def indices(self):
        rng = self._rng if self._rng is not None else _global_rng()
        return rng.permutation(len(self.data_source)).astype(np.int64, copy=False)

    def __len__(self):
        return len(self.data_source)


def _global_rng() -> np.random.Generator:
    """dlsys's global generator (``ds.manual_seed`` reseeds it); fetched on every use because
    manual_seed replaces the generator object."""
    from dlsys import random as ds_random

    return ds_random.generator()


class DistributedSampler(Sampler):
    """The shard of a dataset one of ``num_replicas`` data-parallel ranks reads (as PyTorch).

    Every rank draws the same permutation for a given ``seed`` and epoch (``set_epoch``).
    Without ``drop_last`` the index list is padded by wrapping around to a multiple of
    ``num_replicas``, so every rank gets ``ceil(N / num_replicas)`` samples (a few repeat);
    with ``drop_last`` the tail is dropped and the shards are disjoint, ``N // num_replicas``
    each. Rank ``r`` takes positions ``r, r + P, r + 2P, ...`` of that list.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        if int(num_replicas) < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= int(rank) < int(num_replicas):
            raise ValueError(f"rank must be in [0, {int(num_replicas) - 1}], got {rank}")
        self.dataset = dataset
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Call at the start of each epoch (on every rank) to get that epoch's shuffle."""
        self.epoch = int(epoch)

    def indices(self):
        n = len(self.dataset)
        if self.shuffle:
            idx = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            idx = np.arange(n)
        if not self.drop_last:
            pad = self.total_size - n
            if pad > 0:
                idx = np.concatenate([idx, np.resize(idx, pad)])  # np.resize wraps around
        else:
            idx = idx[:self.total_size]
        return idx[self.rank:self.total_size:self.num_replicas].astype(np.int64, copy=False)

    def __len__(self):
        return self.num_samples

"""DataLoader: batches of a dataset as dlsys Tensors."""

from __future__ import annotations

import numpy as np

from dlsys.backend import as_device
from dlsys.tensor import Tensor

from .dataset import TensorDataset
from .sampler import RandomSampler, Sampler, SequentialSampler


def _to_tensor(array: np.ndarray, device=None):
    """Wrap one host batch array as a Tensor on ``device`` (no extra copy on the CPU)."""
    dev = as_device(device)
    return Tensor.from_array(dev.from_numpy(np.ascontiguousarray(array)), device=dev)


def default_collate(samples):
    """Stack a list of samples (tuples of arrays/numbers, or single arrays) field by field."""
    first = samples[0]
    if isinstance(first, (tuple, list)):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if hasattr(first, "numpy") and not isinstance(first, np.ndarray):
        samples = [s.numpy() for s in samples]
    if isinstance(first, float):  # Python floats -> float32, as ds.tensor does
        return np.asarray(samples, dtype=np.float32)
    if isinstance(first, (bool, int)):
        return np.asarray(samples, dtype=np.bool_ if isinstance(first, bool) else np.int64)
    return np.stack([np.asarray(s) for s in samples])  # arrays keep their dtype


class DataLoader:
    """Iterates over a dataset in batches of Tensors: a tuple with one Tensor per field.

    ``shuffle=True`` draws a new permutation every epoch, from a generator seeded with
    ``seed`` when given (reproducible) or from dlsys's global RNG. ``sampler`` (e.g. a
    DistributedSampler) replaces the shuffle/sequential order. A TensorDataset is gathered
    with one fancy index per array and batch (no per-sample Python loop); other datasets
    are read sample by sample and stacked. ``device`` puts the batches on that device.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, sampler=None,
                 drop_last: bool = False, seed: int | None = None, device=None,
                 collate_fn=None):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("sampler and shuffle=True are mutually exclusive (the sampler "
                             "decides the order; DistributedSampler shuffles itself)")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.device = device
        self.collate_fn = collate_fn or default_collate
        if sampler is None:
            sampler = RandomSampler(dataset, seed=seed) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler

    def __len__(self):
        n = len(self.sampler)
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def _epoch_indices(self) -> np.ndarray:
        if isinstance(self.sampler, Sampler):
            return np.asarray(self.sampler.indices(), dtype=np.int64)
        return np.fromiter(iter(self.sampler), dtype=np.int64)

    def _gather(self, idx: np.ndarray):
        if isinstance(self.dataset, TensorDataset):
            return self.dataset.gather(idx)
        return self.collate_fn([self.dataset[int(i)] for i in idx])

    def __iter__(self):
        indices = self._epoch_indices()
        for b in range(len(self)):
            batch = self._gather(indices[b * self.batch_size:(b + 1) * self.batch_size])
            if isinstance(batch, tuple):
                yield tuple(_to_tensor(a, self.device) for a in batch)
            else:  # a dataset of single arrays gives single Tensors, as in PyTorch
                yield _to_tensor(batch, self.device)

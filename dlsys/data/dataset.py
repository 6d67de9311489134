"""Datasets: map-style containers of samples indexed by an int, and their combinations."""

from __future__ import annotations

import bisect
import math
import numbers
import warnings

import numpy as np

from .rng import global_generator


def _as_numpy(a):
    """A host numpy view of a numpy array or a dlsys Tensor (CUDA tensors are copied)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "numpy"):
        return a.numpy()
    return np.asarray(a)


class Dataset:
    """A map-style dataset: ``len(ds)`` samples, ``ds[i]`` returns sample ``i``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Samples are the rows of equally long arrays: ``ds[i] == (a[i], b[i], ...)``.

    Accepts numpy arrays or dlsys Tensors (kept as host numpy arrays, so a
    :class:`~dlsys.data.DataLoader` gathers a whole batch with one fancy index per array).
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = tuple(_as_numpy(a) for a in arrays)
        n = len(self.arrays[0])
        for i, a in enumerate(self.arrays):
            if a.ndim == 0 or len(a) != n:
                shapes = [tuple(x.shape) for x in self.arrays]
                raise ValueError(
                    f"TensorDataset arrays must share their first dimension; got shapes {shapes} "
                    f"(array {i} differs)")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def gather(self, indices: np.ndarray):
        """The batch of samples ``indices`` as one array per field (the DataLoader fast path:
        what the default collate makes of those samples, without a per-sample loop)."""
        return [a[indices] for a in self.arrays]


class Subset(Dataset):
    """The samples ``indices`` of ``dataset``, in that order: ``Subset(d, idx)[i] == d[idx[i]]``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return [self.dataset[self.indices[i]] for i in idx]
        return self.dataset[self.indices[idx]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """The samples of several datasets one after the other (``cumulative_sizes[k]`` is the
    number of samples in the first k + 1)."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        self.cumulative_sizes = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if idx < 0:
            if -idx > n:
                raise ValueError(f"absolute value of index {idx} exceeds the dataset length {n}")
            idx += n
        if idx >= n:
            raise IndexError(f"index {idx} is out of range for a ConcatDataset of {n} samples")
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]


def random_split(dataset, lengths, generator=None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random Subsets of the given ``lengths`` (counts
    summing to ``len(dataset)``, or fractions summing to 1, as PyTorch: each fraction is
    floored and the remainder goes round-robin to the first splits).

    ``generator`` is a ``numpy.random.Generator`` or an int seed; default: dlsys's global RNG
    (``ds.manual_seed``). The same seed gives the same split.
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral)
                       for x in lengths) and math.isclose(sum(lengths), 1):
        counts = []
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"fraction at index {i} is not between 0 and 1: {frac}")
            counts.append(int(math.floor(n * frac)))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, c in enumerate(counts):
            if c == 0:
                warnings.warn(f"length of split at index {i} is 0; this split will be empty",
                              stacklevel=2)
        lengths = counts
    if any(not isinstance(x, numbers.Integral) or x < 0 for x in lengths):
        raise ValueError(f"lengths must be non-negative ints or fractions summing to 1, got "
                         f"{lengths}")
    if sum(lengths) != n:
        raise ValueError(f"sum of input lengths {sum(lengths)} does not equal the length of the "
                         f"input dataset ({n})")
    if generator is None:
        rng = global_generator()
    elif isinstance(generator, np.random.Generator):
        rng = generator
    elif isinstance(generator, numbers.Integral):
        rng = np.random.default_rng(int(generator))
    else:
        raise TypeError(f"generator must be a numpy.random.Generator, an int seed or None, got "
                        f"{type(generator).__name__}")
    perm = rng.permutation(n).tolist()
    out, offset = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[offset:offset + length]))
        offset += length
    return out

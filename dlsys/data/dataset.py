"""Datasets: map-style containers of samples indexed by an int."""

from __future__ import annotations

import numpy as np


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
        """The batch of samples ``indices`` as one array per field (the DataLoader fast path)."""
        return tuple(a[indices] for a in self.arrays)

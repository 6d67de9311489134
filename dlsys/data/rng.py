"""The random stream data transforms draw from: one generator per batch.

While a DataLoader builds batch ``b`` of an epoch (in the main process or in any worker), the
transforms draw from a generator seeded with ``(base_seed, b)``; ``base_seed`` is drawn once
per epoch from the loader's ``seed`` (or from dlsys's global RNG). So a batch's augmentation
depends only on the seed, the epoch and the batch, never on ``num_workers`` or on which worker
built it, and a resumed epoch redraws exactly what the uninterrupted one drew. Outside a
DataLoader the transforms draw from dlsys's global generator (``ds.manual_seed``).
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

__all__ = ["sample_generator", "batch_generator", "global_generator"]

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("dlsys_data_generator", default=None)


def global_generator() -> np.random.Generator:
    """dlsys's global generator (``ds.manual_seed`` reseeds it); fetched on every use because
    manual_seed replaces the generator object."""
    from dlsys import random as ds_random

    return ds_random.generator()


def sample_generator() -> np.random.Generator:
    """The generator for random data transforms: the current batch's inside a DataLoader,
    dlsys's global one outside. Draw from it, don't keep it."""
    g = _CURRENT.get()
    return global_generator() if g is None else g


@contextlib.contextmanager
def batch_generator(base_seed: int, batch: int):
    """Make ``sample_generator()`` return the generator of batch ``batch`` of the epoch whose
    base seed is ``base_seed`` while the block runs."""
    token = _CURRENT.set(np.random.default_rng([int(batch), int(base_seed)]))
    try:
        yield
    finally:
        _CURRENT.reset(token)

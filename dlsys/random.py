"""The global random number generator (a numpy Generator): same seed => bitwise-same runs.

randn/rand, nn.init, dropout and DataLoader shuffles without a seed all draw from it. Numbers are
drawn on the host, so every device and dtype sees the same stream for the same seed.
"""

from __future__ import annotations

import copy

import numpy as np

__all__ = ["manual_seed", "seed", "get_rng_state", "set_rng_state", "generator"]

_GEN = np.random.default_rng(0)


def generator() -> np.random.Generator:
    """The global generator (draw from it, don't keep it: manual_seed replaces it)."""
    return _GEN


def manual_seed(s: int) -> np.random.Generator:
    global _GEN
    _GEN = np.random.default_rng(int(s))
    return _GEN


def seed() -> int:
    """Seed the global generator from the OS entropy; returns the seed used."""
    s = int(np.random.SeedSequence().entropy % (2**63))
    manual_seed(s)
    return s


def get_rng_state() -> dict:
    """A deep copy of the generator's state (a dict that set_rng_state accepts)."""
    return copy.deepcopy(_GEN.bit_generator.state)


def set_rng_state(state: dict) -> None:
    global _GEN
    g = np.random.default_rng()
    g.bit_generator.state = copy.deepcopy(state)
    _GEN = g

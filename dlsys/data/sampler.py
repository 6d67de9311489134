"""Samplers: iterables of dataset indices (which samples, in which order), resumable mid-pass.

A pass is one iteration over the sampler (an epoch). ``position`` counts the indices of the
current pass already consumed; ``state_dict()`` records it (with whatever the pass's order
depends on), and after ``load_state_dict()`` the next pass resumes there: iterating yields
exactly the rest of that pass. A consumer that reads ahead (the DataLoader's workers) sets
``position`` itself to what it has handed on, so a checkpoint never counts prefetched batches.
"""

from __future__ import annotations

import math

import numpy as np

from .rng import global_generator

_SEED_BOUND = 2**63  # pass seeds are drawn in [0, 2**63), as torch draws its int64 seeds


class Sampler:
    """Base class: ``iter(sampler)`` yields dataset indices; ``len(sampler)`` counts them.

    Subclasses implement ``_order()`` (all indices of a new pass, in order) or, like PyTorch
    samplers, ``__iter__``. Either way the DataLoader drives them through :meth:`indices`.
    """

    position = 0  # indices of the current pass consumed so far (0 between passes)
    _resume = False  # True after load_state_dict until the resumed pass starts

    def indices(self) -> np.ndarray:
        """Start a pass (or resume the loaded one) and return ALL its indices as int64; the
        caller consumes them from ``position`` on and advances ``position`` as it does."""
        resume, self._resume = self._resume, False
        if not resume:
            self.position = 0
        return self._order(resume)

    def _order(self, resume: bool) -> np.ndarray:
        if type(self).__iter__ is Sampler.__iter__:
            raise NotImplementedError(f"{type(self).__name__} must implement _order or __iter__")
        return np.fromiter(iter(self), dtype=np.int64)

    def __iter__(self):
        idx = self.indices()
        for k in range(self.position, len(idx)):
            self.position = k + 1
            yield int(idx[k])
        self.position = 0  # the pass is over: the next one starts afresh

    def __len__(self):
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The position inside the current pass (plain ints, for ds.save / checkpoints)."""
        return {"position": int(self.position)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume at the saved position: the next pass yields the rest of the saved one."""
        position = int(state_dict["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"sampler state has position {position}, outside this "
                             f"{type(self).__name__}'s {len(self)} indices")
        self.position = position
        self._resume = position > 0


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def _order(self, resume):
        return np.arange(len(self.data_source), dtype=np.int64)

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A fresh permutation per pass.

    Each pass draws a seed, then permutes with a generator seeded by it, as PyTorch's
    RandomSampler does: from the sampler's own generator when ``seed`` is given (so the sequence
    of epochs is reproducible and each differs), else from dlsys's global RNG
    (``ds.manual_seed``). The state holds that pass seed, so a resumed pass is the same one.
    """

    def __init__(self, data_source, seed: int | None = None):
        self.data_source = data_source
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self._pass_seed = None

    def _order(self, resume):
        if not resume or self._pass_seed is None:
            rng = self._rng if self._rng is not None else global_generator()
            self._pass_seed = int(rng.integers(_SEED_BOUND))
        n = len(self.data_source)
        return np.random.default_rng(self._pass_seed).permutation(n).astype(np.int64)

    def __len__(self):
        return len(self.data_source)

    def state_dict(self):
        return {"position": int(self.position),
                "pass_seed": self._pass_seed if self.position else None,
                "generator": None if self._rng is None else self._rng.bit_generator.state,
                "num_samples": len(self)}

    def load_state_dict(self, state_dict):
        if int(state_dict["num_samples"]) != len(self):
            raise ValueError(f"RandomSampler state is for {state_dict['num_samples']} samples, "
                             f"this dataset has {len(self)}")
        super().load_state_dict(state_dict)
        self._pass_seed = state_dict["pass_seed"]
        if state_dict["generator"] is not None:
            self._rng = np.random.default_rng()
            self._rng.bit_generator.state = state_dict["generator"]


class DistributedSampler(Sampler):
    """The shard of a dataset one of ``num_replicas`` data-parallel ranks reads (as PyTorch).

    Every rank draws the same permutation for a given ``seed`` and epoch (``set_epoch``).
    Without ``drop_last`` the index list is padded by wrapping around to a multiple of
    ``num_replicas``, so every rank gets ``ceil(N / num_replicas)`` samples (a few repeat);
    with ``drop_last`` the tail is dropped and the shards are disjoint, ``N // num_replicas``
    each. Rank ``r`` takes positions ``r, r + P, r + 2P, ...`` of that list.

    ``state_dict()`` holds the epoch and the position in it (the same on every rank, which
    consume in lockstep, so rank 0's state restores every rank). A mid-epoch state only loads
    at the same ``num_replicas``; one saved between epochs loads at any.
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
        """Call at the start of each epoch (on every rank) to get that epoch's shuffle. Epoch
        ``epoch`` starts afresh, except right after ``load_state_dict`` of a state inside that
        same epoch: then the loaded position is kept, so the usual
        ``sampler.set_epoch(epoch); for batch in loader:`` loop resumes exactly."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self._resume = False
            self.position = 0
        self.epoch = epoch

    def _order(self, resume):
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

    def state_dict(self):
        return {"epoch": self.epoch, "position": int(self.position), "seed": self.seed,
                "shuffle": bool(self.shuffle), "drop_last": bool(self.drop_last),
                "num_replicas": self.num_replicas, "dataset_len": len(self.dataset)}

    def load_state_dict(self, state_dict):
        for key in ("seed", "shuffle", "drop_last", "dataset_len"):
            mine = len(self.dataset) if key == "dataset_len" else getattr(self, key)
            if state_dict[key] != mine:
                raise ValueError(f"DistributedSampler state has {key}={state_dict[key]!r}, this "
                                 f"sampler has {key}={mine!r}")
        if state_dict["position"] and state_dict["num_replicas"] != self.num_replicas:
            raise ValueError(
                f"DistributedSampler state is {state_dict['position']} samples into epoch "
                f"{state_dict['epoch']} of {state_dict['num_replicas']} replicas; this sampler "
                f"has num_replicas={self.num_replicas}. A mid-epoch position only resumes at "
                f"the same world size (resume from a checkpoint taken between epochs instead)")
        self.epoch = int(state_dict["epoch"])
        super().load_state_dict(state_dict)

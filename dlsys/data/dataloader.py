"""DataLoader: batches of a dataset as dlsys Tensors, from the main process or from workers."""

from __future__ import annotations

import collections

import numpy as np

from .collate import default_collate, to_tensors
from .pool import WorkerPool, get_context
from .rng import global_generator
from .sampler import RandomSampler, Sampler, SequentialSampler
from .worker import Fetcher

_SEED_BOUND = 2**63


class DataLoader:
    """Iterates over a dataset in batches, as PyTorch's DataLoader.

    Each batch is ``collate_fn(list of samples)``; the default collate stacks arrays, Tensors
    and numbers into Tensors field by field (dicts, tuples, lists, namedtuples recursively;
    tuple samples give a list per batch, as in PyTorch) and puts them on ``device``. A
    TensorDataset is gathered with one fancy index per array and batch.

    ``shuffle=True`` draws a new permutation every epoch, from a generator seeded with
    ``seed`` when given (reproducible) or from dlsys's global RNG. ``sampler`` (e.g. a
    DistributedSampler) replaces the shuffle/sequential order. Every epoch also draws a base
    seed (from ``seed`` or the global RNG): batch ``b``'s transforms draw from a generator
    seeded with (base seed, b) (see ``dlsys.data.rng``), and workers seed their global RNGs from
    base seed + worker id. So the batches are the same for every ``num_workers``.

    ``num_workers > 0`` reads batches in that many worker processes (see ``dlsys.data.pool`` for
    the start method, ``multiprocessing_context`` to choose another), ``prefetch_factor`` batches
    ahead per worker; ``persistent_workers`` keeps them across epochs. Each worker re-runs the
    main script's top level, as every forkserver or spawn child does: keep the training under
    ``if __name__ == "__main__":``, and the dataset, ``collate_fn`` and ``worker_init_fn``
    picklable (defined at module level). ``pin_memory`` is accepted and has no effect (host
    memory is not pinned). ``state_dict()`` records the
    position inside the epoch: a loader restored with ``load_state_dict()`` yields exactly the
    rest of that epoch.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, sampler=None,
                 drop_last: bool = False, seed: int | None = None, device=None,
                 collate_fn=None, num_workers: int = 0, pin_memory: bool = False,
                 timeout: float = 0, worker_init_fn=None, multiprocessing_context=None,
                 prefetch_factor: int | None = None, persistent_workers: bool = False):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if sampler is not None and shuffle:
            raise ValueError("sampler and shuffle=True are mutually exclusive (the sampler "
                             "decides the order; DistributedSampler shuffles itself)")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        if num_workers == 0 and (prefetch_factor is not None or persistent_workers):
            raise ValueError("prefetch_factor and persistent_workers need num_workers > 0")
        if prefetch_factor is not None and int(prefetch_factor) < 1:
            raise ValueError(f"prefetch_factor must be >= 1, got {prefetch_factor}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.device = device
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.timeout = float(timeout)
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = (None if multiprocessing_context is None
                                        else get_context(multiprocessing_context))
        self.prefetch_factor = 2 if prefetch_factor is None else int(prefetch_factor)
        self.persistent_workers = bool(persistent_workers)
        if sampler is None:
            sampler = RandomSampler(dataset, seed=seed) if shuffle else SequentialSampler(dataset)
        self.sampler = sampler
        self.seed = seed
        # NOTE: its own stream, so the base seeds never repeat the sampler's pass seeds
        self._rng = np.random.default_rng([1, seed]) if seed is not None else None
        self._base_seed = None  # the current epoch's
        self._resume_base_seed = None
        self._pool = None
        # the default collate runs as host arrays where the samples are read (a worker, say)
        # and becomes Tensors here; a custom collate_fn's batch is passed on as it is
        self._fetcher = Fetcher(dataset, None if collate_fn is None else collate_fn)
        self._default_collate = collate_fn is None

    def __len__(self):
        n = len(self.sampler)
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    # -- one epoch ------------------------------------------------------------------------------
    def _start_epoch(self):
        """(indices, first position, base seed) of the epoch starting or resuming now."""
        if isinstance(self.sampler, Sampler):
            idx = self.sampler.indices()
            start = self.sampler.position
        else:
            idx, start = np.fromiter(iter(self.sampler), dtype=np.int64), 0
        if start == 0:
            rng = self._rng if self._rng is not None else global_generator()
            base = int(rng.integers(_SEED_BOUND))
        elif self._resume_base_seed is not None:
            base = self._resume_base_seed
        else:
            # NOTE: a pass resumed from the sampler's state alone: its base seed was drawn
            # before the checkpoint (so no draw now: the global RNG stays the uninterrupted
            # run's), but only loader.state_dict() knows it; the order is exact, random
            # transforms draw other numbers
            base = int(np.random.default_rng([2, start, len(idx)]).integers(_SEED_BOUND))
        self._resume_base_seed = None
        self._base_seed = base
        return np.asarray(idx, dtype=np.int64), start, base

    def _batches(self, n: int, start: int):
        """(batch number, start, end) of the batches from position ``start`` on."""
        b = start // self.batch_size
        out = []
        s = start
        while s < n:
            e = min(s + self.batch_size, n)
            if e - s < self.batch_size and self.drop_last:
                break
            out.append((b, s, e))
            b, s = b + 1, e
        return out

    def _finish(self, batch):
        if self._default_collate:
            return to_tensors(batch, self.device)
        return batch if self.device is None else to_tensors(batch, self.device)

    def _advance(self, position: int) -> None:
        if isinstance(self.sampler, Sampler):
            self.sampler.position = position

    def __iter__(self):
        idx, start, base = self._start_epoch()
        batches = self._batches(len(idx), start)
        if self.num_workers == 0:
            for b, s, e in batches:
                batch = self._fetcher(idx[s:e], base, b)
                self._advance(e)
                yield self._finish(batch)
        else:
            yield from self._iter_workers(idx, batches, base)
        self._advance(0)  # the epoch ran to its end: the next one starts afresh

    def _iter_workers(self, idx, batches, base):
        pool = self._pool
        if pool is None or not pool.alive:
            pool = WorkerPool(self._fetcher, self.num_workers, base, self.worker_init_fn,
                              self.multiprocessing_context, self.timeout)
            if self.persistent_workers:
                self._pool = pool
        pool.new_epoch()
        epoch = pool.epoch
        pending = collections.deque()
        todo = iter(batches)

        def submit():
            nxt = next(todo, None)
            if nxt is not None:
                b, s, e = nxt
                pool.submit(b, idx[s:e], base)
                pending.append(nxt)

        try:
            for _ in range(self.prefetch_factor * self.num_workers):
                submit()
            while pending:
                if pool.epoch != epoch:
                    raise RuntimeError("a newer iteration over this DataLoader (persistent "
                                       "workers serve one at a time) replaced this one")
                b, _, e = pending.popleft()
                batch = pool.get(b)
                submit()
                self._advance(e)
                yield self._finish(batch)
        finally:
            if not self.persistent_workers:
                pool.close()

    # -- resumable position ---------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The sampler's state (its position: the samples of the batches yielded so far), this
        epoch's base seed and the loader's generator: what ``load_state_dict`` needs to yield
        exactly the rest of the epoch, augmentation included."""
        if not isinstance(self.sampler, Sampler):
            raise TypeError(f"DataLoader.state_dict() needs a dlsys Sampler (with state_dict), "
                            f"got a {type(self.sampler).__name__} as sampler")
        sampler = self.sampler.state_dict()
        return {"sampler": sampler,
                "base_seed": self._base_seed if sampler["position"] else None,
                "generator": None if self._rng is None else self._rng.bit_generator.state}

    def load_state_dict(self, state_dict: dict) -> None:
        if not isinstance(self.sampler, Sampler):
            raise TypeError(f"DataLoader.load_state_dict() needs a dlsys Sampler, got a "
                            f"{type(self.sampler).__name__} as sampler")
        self.sampler.load_state_dict(state_dict["sampler"])
        self._resume_base_seed = state_dict["base_seed"]
        if state_dict["generator"] is not None:
            self._rng = np.random.default_rng()
            self._rng.bit_generator.state = state_dict["generator"]

"""What turns a batch's indices into a batch, and the loop a DataLoader worker process runs.

``Fetcher`` is shared by both paths: the main process calls it with ``num_workers=0``, each
worker calls its own copy (so batches are the same either way). A worker seeds Python's,
numpy's legacy and dlsys's global RNGs from the base seed and its id (as PyTorch's worker
loop does), then serves tasks from its connection until it is told to stop or its parent is
gone; batches go back through ``dlsys.data.transport``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import pickle
import random
import sys
import traceback

import numpy as np

from . import transport
from .collate import collate_arrays
from .dataset import Subset, TensorDataset
from .rng import batch_generator

__all__ = ["WorkerInfo", "get_worker_info", "Fetcher", "ExceptionWrapper", "worker_loop"]

POLL_S = 1.0  # how often an idle worker checks that its parent is alive


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker (PyTorch's fields)."""
    id: int
    num_workers: int
    seed: int
    dataset: object


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """This worker's :class:`WorkerInfo`; ``None`` in the main process."""
    return _worker_info


class _RemapGather:
    """Gather of a Subset: map the batch's positions to the underlying dataset's indices."""

    def __init__(self, gather, indices):
        self.gather = gather
        self.indices = np.asarray(indices, dtype=np.int64)

    def __call__(self, idx):
        return self.gather(self.indices[idx])


def _gatherer(dataset):
    """A whole-batch gather for datasets of arrays (and Subsets of them), else None."""
    if isinstance(dataset, TensorDataset):
        return dataset.gather
    if isinstance(dataset, Subset):
        inner = _gatherer(dataset.dataset)
        return None if inner is None else _RemapGather(inner, dataset.indices)
    return None


class Fetcher:
    """``fetcher(indices, base_seed, batch)``: the collated batch, built while the transforms
    draw from batch ``batch``'s generator. ``collate_fn=None`` means the default collate
    (host arrays; the main process makes the Tensors), with a whole-batch gather for a
    TensorDataset instead of a per-sample loop."""

    def __init__(self, dataset, collate_fn=None):
        self.dataset = dataset
        self.collate_fn = collate_arrays if collate_fn is None else collate_fn
        self.gather = _gatherer(dataset) if collate_fn is None else None

    def __call__(self, indices: np.ndarray, base_seed: int, batch: int):
        with batch_generator(base_seed, batch):
            if self.gather is not None:
                return self.gather(indices)
            return self.collate_fn([self.dataset[int(i)] for i in indices])


class _KeyErrorMessage(str):
    """KeyError reprs its argument; this keeps a multi-line message readable."""

    def __repr__(self):
        return str(self)


class ExceptionWrapper:
    """An exception caught in a worker, with its formatted traceback, to re-raise in the main
    process as the same type (RuntimeError when that type cannot be rebuilt)."""

    def __init__(self, where: str):
        exc_type, exc, tb = sys.exc_info()
        self.exc_msg = "".join(traceback.format_exception(exc_type, exc, tb))
        self.where = where
        try:
            pickle.dumps(exc_type)
            self.exc_type = exc_type
        except Exception:  # NOTE: e.g. a class defined inside a function
            self.exc_type = RuntimeError

    def reraise(self):
        msg = f"Caught {self.exc_type.__name__} {self.where}.\nOriginal {self.exc_msg}"
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        try:
            exc = self.exc_type(msg)
        except Exception:
            exc = None
        if not isinstance(exc, BaseException):
            raise RuntimeError(msg) from None
        raise exc


def _seed_worker(base_seed: int, worker_id: int) -> int:
    from dlsys import random as ds_random

    seed = base_seed + worker_id
    random.seed(seed)
    ds_random.manual_seed(seed)
    np.random.seed(np.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    return seed


def _send(sender, key, result, worker_id: int) -> None:
    try:
        sender.send((key, result))
    except (pickle.PicklingError, TypeError, AttributeError):
        # NOTE: a batch that cannot be pickled must reach the main process as an error, not
        # leave it waiting
        wrapped = ExceptionWrapper(f"in DataLoader worker process {worker_id} while sending a "
                                   f"batch to the main process (batches must be picklable)")
        sender.send((key, wrapped))


def worker_loop(fetcher: Fetcher, conn, worker_id: int, num_workers: int, base_seed: int,
                worker_init_fn=None):
    """Serve ``(key, indices, base_seed, batch, freed segments)`` tasks from ``conn`` until
    ``None`` arrives or the parent is gone; each answer is ``(key, batch or ExceptionWrapper)``."""
    global _worker_info
    try:
        seed = _seed_worker(base_seed, worker_id)
        _worker_info = WorkerInfo(worker_id, num_workers, seed, fetcher.dataset)
        init_error = None
        if worker_init_fn is not None:
            try:
                worker_init_fn(worker_id)
            except Exception:
                init_error = ExceptionWrapper(f"in DataLoader worker process {worker_id} "
                                              f"(in worker_init_fn)")
        parent = mp.parent_process()
        sender = transport.Sender(conn)
        while True:
            if not conn.poll(POLL_S):
                if parent is not None and not parent.is_alive():
                    return
                continue
            task = conn.recv()
            if task is None:
                return
            key, indices, epoch_seed, batch, freed = task
            sender.release(freed)
            if init_error is not None:
                result, init_error = init_error, None
            else:
                try:
                    result = fetcher(indices, epoch_seed, batch)
                except Exception:
                    result = ExceptionWrapper(f"in DataLoader worker process {worker_id}")
            _send(sender, key, result, worker_id)
            del result  # NOTE: free the batch before waiting for the next task
    except (KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionResetError):
        pass  # Ctrl-C reaches the main process too; a closed connection means it is gone

"""collective: MPI gradient synchronisation for data-parallel training."""

__version__ = "0.2.0.dev0"  # NOTE: the same string as pyproject.toml's version (a test checks)

from .allreduce import allreduce, allreduce_
from .collectives import (
    allgather,
    allgather_object,
    barrier,
    broadcast,
    broadcast_,
    broadcast_object,
    reduce_scatter,
)
from .comm import init, local_rank, local_size, rank, size
from .compression import Compression
from .optimizer import DistributedOptimizer
from .parameters import broadcast_optimizer_state, broadcast_parameters
from .reduce_ops import Average, Max, Min, ReduceOp, Sum

__all__ = ["init", "rank", "size", "local_rank", "local_size",
           "Sum", "Average", "Max", "Min", "ReduceOp",
           "allreduce", "allreduce_", "broadcast", "broadcast_", "allgather", "reduce_scatter",
           "barrier", "broadcast_object", "allgather_object",
           "DistributedOptimizer", "Compression", "broadcast_parameters",
           "broadcast_optimizer_state"]

# NOTE: SyncBatchNorm is a dlsys Module: its module imports dlsys (seconds), so it is loaded on
# first use only (PEP 562), keeping `import collective` light for numpy-only users.
_LAZY = {"SyncBatchNorm": "sync_batchnorm", "convert_sync_batchnorm": "sync_batchnorm"}
__all__ += list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

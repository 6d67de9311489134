"""collective: MPI gradient synchronisation for data-parallel training."""

__version__ = "0.2.0.dev0"  # NOTE: the same string as pyproject.toml's version (a test checks)

from .allreduce import allreduce, allreduce_
from .alltoall import alltoall
from .asynchronous import (
    allgather_async,
    allreduce_async,
    allreduce_async_,
    alltoall_async,
    broadcast_async,
    broadcast_async_,
    grouped_allgather_async,
    grouped_allreduce_async,
    grouped_allreduce_async_,
    grouped_reduce_scatter_async,
    grouped_reducescatter_async,
    reduce_scatter_async,
    reducescatter_async,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .checks import NonFiniteGradientError, ReplicaDriftError, StepMismatchError, check_replicas
from .collectives import (
    allgather,
    allgather_object,
    barrier,
    broadcast,
    broadcast_,
    broadcast_object,
    reduce_scatter,
    reducescatter,
)
from .comm import (
    cross_rank,
    cross_size,
    init,
    is_initialized,
    local_rank,
    local_size,
    mpi_threads_supported,
    rank,
    shutdown,
    size,
)
from .compression import Compression
from .grouped import (
    grouped_allgather,
    grouped_allreduce,
    grouped_allreduce_,
    grouped_reduce_scatter,
    grouped_reducescatter,
)
from .handles import Handle, poll, synchronize
from .join import join
from .optimizer import DistributedOptimizer
from .parameters import broadcast_optimizer_state, broadcast_parameters
from .process_sets import ProcessSet, add_process_set, global_process_set, remove_process_set
from .reduce_ops import Average, Max, Min, Product, ReduceOp, Sum
from .timeline import start_timeline, stop_timeline

__all__ = ["init", "is_initialized", "shutdown", "mpi_threads_supported",
           "rank", "size", "local_rank", "local_size", "cross_rank", "cross_size",
           "Sum", "Average", "Max", "Min", "Product", "ReduceOp",
           "allreduce", "allreduce_", "broadcast", "broadcast_", "allgather", "reduce_scatter",
           "reducescatter", "alltoall", "barrier", "broadcast_object", "allgather_object",
           "grouped_allreduce", "grouped_allreduce_", "grouped_allgather",
           "grouped_reduce_scatter", "grouped_reducescatter",
           "allreduce_async", "allreduce_async_", "allgather_async", "broadcast_async",
           "broadcast_async_", "reduce_scatter_async", "reducescatter_async", "alltoall_async",
           "grouped_allreduce_async", "grouped_allreduce_async_", "grouped_allgather_async",
           "grouped_reduce_scatter_async", "grouped_reducescatter_async",
           "Handle", "poll", "synchronize",
           "ProcessSet", "add_process_set", "remove_process_set", "global_process_set",
           "join",
           "DistributedOptimizer", "Compression", "broadcast_parameters",
           "broadcast_optimizer_state",
           # observability (NOTE: collective/stall.py, checks.py, checkpoint.py, timeline.py)
           "check_replicas", "ReplicaDriftError", "StepMismatchError", "NonFiniteGradientError",
           "save_checkpoint", "load_checkpoint", "start_timeline", "stop_timeline"]

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

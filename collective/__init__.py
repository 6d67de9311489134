"""collective: MPI gradient synchronisation for data-parallel training."""

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
from .comm import cross_rank, cross_size, init, local_rank, local_size, rank, size
from .compression import Compression
from .optimizer import DistributedOptimizer
from .parameters import broadcast_optimizer_state, broadcast_parameters
from .reduce_ops import Average, Max, Min, ReduceOp, Sum

__all__ = ["init", "rank", "size", "local_rank", "local_size", "cross_rank", "cross_size",
           "Sum", "Average", "Max", "Min", "ReduceOp",
           "allreduce", "allreduce_", "broadcast", "broadcast_", "allgather", "reduce_scatter",
           "barrier", "broadcast_object", "allgather_object",
           "DistributedOptimizer", "Compression", "broadcast_parameters",
           "broadcast_optimizer_state"]

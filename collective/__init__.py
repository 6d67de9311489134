"""collective: MPI gradient synchronisation for data-parallel training."""

__version__ = "0.2.0.dev0"  # NOTE: the same string as pyproject.toml's version (a test checks)

from .allreduce import allreduce, allreduce_
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
)
from .comm import init, local_rank, local_size, rank, size
from .compression import Compression
from .optimizer import DistributedOptimizer
from .parameters import broadcast_optimizer_state, broadcast_parameters
from .reduce_ops import Average, Max, Min, ReduceOp, Sum
from .timeline import start_timeline, stop_timeline

__all__ = ["init", "rank", "size", "local_rank", "local_size",
           "Sum", "Average", "Max", "Min", "ReduceOp",
           "allreduce", "allreduce_", "broadcast", "broadcast_", "allgather", "reduce_scatter",
           "barrier", "broadcast_object", "allgather_object",
           "DistributedOptimizer", "Compression", "broadcast_parameters",
           "broadcast_optimizer_state",
           # observability (NOTE: collective/stall.py, checks.py, checkpoint.py, timeline.py)
           "check_replicas", "ReplicaDriftError", "StepMismatchError", "NonFiniteGradientError",
           "save_checkpoint", "load_checkpoint", "start_timeline", "stop_timeline"]

"""Allreduce algorithms: ring and recursive doubling on MPI point-to-point, shared memory on one
node, hierarchical (within nodes, across nodes), the MPI library's own; the handshake every
collective starts with; and ``run``, which dispatches one call to a named algorithm."""

from .dispatch import FIXED, run
from .hierarchical import HierRing, hier_allreduce
from .mpi_native import mpi_allreduce
from .recursive_doubling import SMALL_MAX, handshake, rd_allreduce
from .ring import Ring, layout, ring_allreduce, ring_reduce_scatter, segments
from .shared_memory import SCATTER_MIN, shm_allreduce, shm_handshake

__all__ = ["FIXED", "SCATTER_MIN", "SMALL_MAX", "HierRing", "Ring", "handshake",
           "hier_allreduce", "layout", "mpi_allreduce", "rd_allreduce", "ring_allreduce",
           "ring_reduce_scatter", "run", "segments", "shm_allreduce", "shm_handshake"]

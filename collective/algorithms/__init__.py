"""Allreduce algorithms: ring and recursive doubling on MPI point-to-point, shared memory on one
node, the MPI library's own; and the handshake every collective starts with."""

from .mpi_native import mpi_allreduce
from .recursive_doubling import SMALL_MAX, handshake, rd_allreduce
from .ring import ring_allgather, ring_allreduce, ring_reduce_scatter, segments

__all__ = ["SMALL_MAX", "handshake", "mpi_allreduce", "rd_allreduce", "ring_allgather",
           "ring_allreduce", "ring_reduce_scatter", "segments"]

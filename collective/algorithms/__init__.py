"""Allreduce algorithms over MPI point-to-point: ring, recursive doubling, the library's own."""

from .mpi_native import mpi_allreduce
from .recursive_doubling import SMALL_MAX, handshake, rd_allreduce
from .ring import ring_allgather, ring_allreduce, ring_reduce_scatter, segments

__all__ = ["SMALL_MAX", "handshake", "mpi_allreduce", "rd_allreduce", "ring_allgather",
           "ring_allreduce", "ring_reduce_scatter", "segments"]

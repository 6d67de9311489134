"""collective: MPI gradient synchronisation for data-parallel training."""

from .comm import init, local_rank, local_size, rank, size

__all__ = ["init", "rank", "size", "local_rank", "local_size"]

"""The communicator: MPI start-up, rank and size, and the ranks sharing this node."""

from __future__ import annotations

import sys

_state: dict = {}

INSTALL_HINT = (
    "collective needs an MPI library. Install the embedded one into this environment with\n"
    f"    {sys.executable} -m pip install mpi4py mpich\n"
    "or point mpi4py at a system MPI (see README, 'Using a system MPI')."
)


def mpi():
    """The mpi4py ``MPI`` module, with a clear error when no MPI library can be loaded."""
    try:
        from mpi4py import MPI
    except ImportError as exc:  # mpi4py itself is missing
        raise ImportError(f"mpi4py is not installed. {INSTALL_HINT}") from exc
    except RuntimeError as exc:  # NOTE: mpi4py raises RuntimeError when libmpi cannot be loaded
        raise RuntimeError(f"cannot load an MPI library ({exc}). {INSTALL_HINT}") from exc
    return MPI


def init():
    """Start MPI (idempotent) and return the world communicator.

    Works under ``mpiexec`` and as a plain single process (a world of size 1).
    """
    if "world" not in _state:
        MPI = mpi()
        if not MPI.Is_initialized():
            MPI.Init_thread(MPI.THREAD_MULTIPLE)
        world = MPI.COMM_WORLD
        _state["world"] = world
        _state["local"] = world.Split_type(MPI.COMM_TYPE_SHARED, key=world.Get_rank())
    return _state["world"]


def world():
    """The world communicator (starts MPI on first use)."""
    return init()


def rank() -> int:
    """This process's rank in the world, 0 <= rank < size."""
    return init().Get_rank()


def size() -> int:
    """The number of ranks in the world."""
    return init().Get_size()


def local_comm():
    """The communicator of the ranks on this node (shared memory)."""
    init()
    return _state["local"]


def local_rank() -> int:
    """This process's rank among the ranks on the same node."""
    return local_comm().Get_rank()


def local_size() -> int:
    """The number of ranks on this node."""
    return local_comm().Get_size()

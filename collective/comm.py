"""The communicator: MPI start-up, rank and size, and the ranks sharing this node."""

from __future__ import annotations

import atexit
import os
import sys
import time

_state: dict = {}
_exit_status = [0]  # the status mpi4py's runner will abort with (see _record_abort_status)

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
        if world.Get_size() > 1:
            _state["exit"] = world.Dup()  # private: the exit barrier can match nothing else
            _record_abort_status(MPI)
            _name_the_rank_in_tracebacks(world.Get_rank(), world.Get_size())
            atexit.register(_exit_barrier)
    return _state["world"]


def _record_abort_status(MPI):
    """Learn the status that ``python -m mpi4py`` will abort with (it has no getter)."""
    original = getattr(MPI, "_set_abort_status", None)
    if original is None or getattr(original, "_collective_wrapper", False):
        return

    def record(status):
        _exit_status[0] = status
        original(status)

    record._collective_wrapper = True
    MPI._set_abort_status = record


def _name_the_rank_in_tracebacks(rank_, size_):
    """Print ``[rank r/P]`` before an uncaught exception's traceback.

    NOTE: MPICH names the aborting rank too, but that line is sometimes lost when the job is
    torn down; this one goes out on the same stream just before the traceback.
    """
    previous = sys.excepthook

    def hook(etype, value, tb):
        sys.stderr.write(f"[rank {rank_}/{size_}] uncaught {etype.__name__} on rank {rank_}; "
                         "the job will be aborted on every rank\n")
        previous(etype, value, tb)

    sys.excepthook = hook


def _exit_barrier():
    """At interpreter exit, make sure no rank is left waiting forever for this one.

    NOTE: a rank that leaves (``sys.exit(0)``, the end of the script) while the others still
    wait for it inside a collective would hang the job: MPI cannot tell a finished rank from a
    slow one. So every rank meets the others in a non-blocking barrier at exit; ranks that all
    finish arrive within milliseconds, while a rank whose peers do not arrive within
    ``COLLECTIVE_EXIT_TIMEOUT`` seconds (default 20) aborts the whole job, as Horovod shuts
    down when one rank finishes early. A rank exiting on an error aborts at once instead.
    """
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
        return
    world, rank_, size_ = _state["world"], _state["world"].Get_rank(), _state["world"].Get_size()
    failed = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    status = _exit_status[0] or (1 if failed is not None else 0)
    if status:  # an uncaught exception or a non-zero exit: end every rank now
        _abort(world, status)
    timeout = float(os.environ.get("COLLECTIVE_EXIT_TIMEOUT", "20"))
    request = _state["exit"].Ibarrier()
    deadline = time.monotonic() + timeout
    while not request.Test():
        if time.monotonic() > deadline:
            sys.stderr.write(
                f"[rank {rank_}/{size_}] collective: this rank reached the end of the program, "
                f"but the other ranks did not within {timeout:g} s; they are probably waiting "
                "for it in a collective operation. Aborting the job so that it does not hang. "
                "(End scripts where every rank ends; if rank 0 does long work alone at the "
                "end, finish with col.barrier() or raise COLLECTIVE_EXIT_TIMEOUT.)\n")
            _abort(world, 1)
        time.sleep(0.002)


def _abort(world, status):
    """MPI_Abort, after giving the launcher time to forward this rank's last output.

    NOTE: hydra tears the job down as soon as a rank aborts; without the pause the traceback
    just written to stderr is sometimes lost with it (seen in about 1 run in 5 under load).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    time.sleep(float(os.environ.get("COLLECTIVE_ABORT_GRACE", "0.5")))
    world.Abort(status)


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

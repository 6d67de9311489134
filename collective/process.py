"""This process in the MPI job: loading MPI, starting it, naming the rank in tracebacks, and
the exit guard that keeps a rank that leaves from hanging the others."""

from __future__ import annotations

import atexit
import sys
import time

INSTALL_HINT = (
    "collective needs an MPI library. Install the embedded one into this environment with\n"
    f"    {sys.executable} -m pip install mpi4py mpich\n"
    "or point mpi4py at a system MPI (see README, 'Using a system MPI')."
)


_MPI = None


def mpi():
    """The mpi4py ``MPI`` module, with a clear error when no MPI library can be loaded.
    Imported on first use (importing collective loads no MPI), then kept: it is on the path
    of every call that goes to MPI's own collectives."""
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:  # mpi4py itself is missing
            raise ImportError(f"mpi4py is not installed. {INSTALL_HINT}") from exc
        except RuntimeError as exc:  # NOTE: mpi4py raises RuntimeError when libmpi cannot load
            raise RuntimeError(f"cannot load an MPI library ({exc}). {INSTALL_HINT}") from exc
        _MPI = MPI
    return _MPI


def start():
    """Initialise MPI (thread level MULTIPLE) unless it is; return MPI.COMM_WORLD."""
    MPI = mpi()
    if not MPI.Is_initialized():
        MPI.Init_thread(MPI.THREAD_MULTIPLE)
    return MPI.COMM_WORLD


def name_the_rank_in_tracebacks(rank: int, size: int):
    """Print ``[rank r/P]`` before an uncaught exception's traceback.

    NOTE: MPICH names the aborting rank too, but that line is sometimes lost when the job is
    torn down; this one goes out on the same stream just before the traceback.
    """
    previous = sys.excepthook

    def hook(etype, value, tb):
        sys.stderr.write(f"[rank {rank}/{size}] uncaught {etype.__name__} on rank {rank}; "
                         "the job will be aborted on every rank\n")
        previous(etype, value, tb)

    sys.excepthook = hook


def abort(world, status: int, grace_s: float):
    """MPI_Abort, after giving the launcher time to forward this rank's last output.

    NOTE: hydra tears the job down as soon as a rank aborts; without the pause the traceback
    just written to stderr is sometimes lost with it (seen in about 1 run in 5 under load).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    time.sleep(grace_s)
    world.Abort(status)


class ExitGuard:
    """At interpreter exit, make sure no rank is left waiting forever for this one.

    NOTE: a rank that leaves (``sys.exit(0)``, the end of the script) while the others still
    wait for it inside a collective would hang the job: MPI cannot tell a finished rank from a
    slow one. So every rank meets the others in a non-blocking barrier at exit, on a private
    communicator (it can match nothing else); ranks that all finish arrive within milliseconds,
    while a rank whose peers do not arrive within ``COLLECTIVE_EXIT_TIMEOUT`` seconds aborts
    the whole job, as Horovod shuts down when one rank finishes early. A rank exiting on an
    error aborts at once instead.
    """

    def __init__(self, world, timeout_s: float, grace_s: float):
        self.world = world
        self.comm = world.Dup()
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.status = 0  # the status mpi4py's runner will abort with (see _record_status)
        self._record_status()
        atexit.register(self.run)

    def _record_status(self):
        """Learn the status that ``python -m mpi4py`` will abort with (it has no getter)."""
        MPI = mpi()
        original = getattr(MPI, "_set_abort_status", None)
        if original is None or getattr(original, "_collective_wrapper", False):
            return

        def record(status):
            self.status = status
            original(status)

        record._collective_wrapper = True
        MPI._set_abort_status = record

    def run(self):
        MPI = sys.modules.get("mpi4py.MPI")
        if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
            return
        rank, size = self.world.Get_rank(), self.world.Get_size()
        failed = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        status = self.status or (1 if failed is not None else 0)
        if status:  # an uncaught exception or a non-zero exit: end every rank now
            abort(self.world, status, self.grace_s)
        request = self.comm.Ibarrier()
        deadline = time.monotonic() + self.timeout_s
        while not request.Test():
            if time.monotonic() > deadline:
                sys.stderr.write(
                    f"[rank {rank}/{size}] collective: this rank reached the end of the "
                    f"program, but the other ranks did not within {self.timeout_s:g} s; they are "
                    "probably waiting for it in a collective operation. Aborting the job so "
                    "that it does not hang. (End scripts where every rank ends; if rank 0 does "
                    "long work alone at the end, finish with col.barrier() or raise "
                    "COLLECTIVE_EXIT_TIMEOUT.)\n")
                abort(self.world, 1, self.grace_s)
            time.sleep(0.002)

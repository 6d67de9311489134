"""The MPI library's own Allreduce, in place (algorithm "mpi")."""

from __future__ import annotations

import numpy as np

_IN_PLACE = None  # MPI.IN_PLACE, set at the first call (importing collective imports no MPI)


def mpi_allreduce(ctx, buf, op, divide_by: int = 0):
    global _IN_PLACE
    if _IN_PLACE is None:
        from mpi4py import MPI

        _IN_PLACE = MPI.IN_PLACE
    ctx.comm.Allreduce(_IN_PLACE, buf, op.mpi_op())
    if divide_by:
        np.true_divide(buf, divide_by, out=buf)

"""The MPI library's own Allreduce, in place (algorithm "mpi")."""

from __future__ import annotations

import numpy as np

from ..process import mpi


def mpi_allreduce(ctx, buf, op, divide_by: int = 0):
    ctx.comm.Allreduce(mpi().IN_PLACE, buf, op.mpi_op())
    if divide_by:
        np.true_divide(buf, divide_by, out=buf)

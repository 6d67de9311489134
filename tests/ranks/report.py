"""``report(key=value, ...)``: send JSON-able results from a rank to the test that started it."""

from __future__ import annotations

import json
import sys

MARK = "@@REPORT "


def report(**kw):
    from mpi4py import MPI

    kw.setdefault("rank", MPI.COMM_WORLD.Get_rank())
    # NOTE: one write per report: print() writes the text and the newline separately, and
    # with PYTHONUNBUFFERED another rank's output can land between them.
    sys.stdout.write(MARK + json.dumps(kw) + "\n")
    sys.stdout.flush()

"""What every rank module run across the virtual cluster shares: reporting and where it runs.

Rank modules are run as scripts (``./mpirun.sh -n P python tests/ranks/multihost_X.py``), so
this directory is first on their ``sys.path``.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys

import numpy as np

import collective as col

MARK = "@@REPORT "  # the marker tests/mpi_harness.py looks for


def report(**kw):
    """Send JSON-able results to the test (one write, so ranks' lines cannot interleave)."""
    kw.setdefault("rank", col.rank())
    sys.stdout.write(MARK + json.dumps(kw) + "\n")
    sys.stdout.flush()


def placement() -> dict:
    """Where this rank runs: host name and its place among the ranks of that node."""
    return {"host": socket.gethostname(), "local_rank": col.local_rank(),
            "local_size": col.local_size(), "size": col.size()}


def digest(arrays) -> str:
    return hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()

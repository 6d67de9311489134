"""One float32 allreduce of ``argv[1]`` elements (algorithm ``argv[2]``, default "auto"),
checked; reports where it ran and ``crossed``, the bytes each host's link must carry."""

from __future__ import annotations

import sys

import numpy as np
from multihost_common import placement, report

import collective as col

col.init()
n = int(sys.argv[1])
algorithm = sys.argv[2] if len(sys.argv) > 2 else "auto"
P = col.size()
y = col.allreduce(np.full(n, col.rank(), np.float32), op=col.Sum, algorithm=algorithm)
assert np.all(y == P * (P - 1) / 2), y[:4]
report(crossed=y.nbytes, **placement())

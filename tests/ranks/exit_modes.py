"""Ranks that leave at the end of the program: ``early`` (rank 1 exits while the others wait
for it in an allreduce) or ``stagger`` (every rank ends, at different times); argv[1]."""

from __future__ import annotations

import sys
import time

import numpy as np

import collective as col
from ranks.report import report

mode = sys.argv[1]
col.init()
if mode == "early" and col.rank() == 1:
    sys.exit(0)  # leaves while the others wait for it in allreduce_
if mode == "stagger":
    time.sleep(0.5 * col.rank())
    report(done=True)
    sys.exit(0)
col.allreduce_(np.ones(10))
report(done=True)

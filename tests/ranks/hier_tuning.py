"""``auto`` tuned across hosts: whether this job measured (or loaded a cached table), the link
speed it probed, the table and the cost model it fitted, and its choices. ``crossed``: the bytes
of one allreduce by ``auto`` that every host's link must have carried."""

from __future__ import annotations

import numpy as np
from multihost_common import placement, report

import collective.tuning as tuning

measured = []
_measure = tuning.measure


def recording_measure(ctx, *args, **kwargs):
    measured.append(True)
    return _measure(ctx, *args, **kwargs)


tuning.measure = recording_measure

import collective as col  # noqa: E402
from collective.comm import context  # noqa: E402

col.init()
ctx = context()
P = col.size()
y = col.allreduce(np.full(1 << 18, col.rank(), np.float32), op=col.Sum)
assert np.all(y == P * (P - 1) / 2)
table = ctx.tuning
report(measured=bool(measured), link_Bps=table.link_Bps, times=table.times,
       model=table.model is not None and table.model.get("inter") is not None,
       choices={n: tuning.best(table, n) for n in (4096, 1 << 20, 1 << 24)},
       crossed=y.nbytes, **placement())

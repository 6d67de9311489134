"""``Scenarios``: the mismatch tests' runner. Each scenario is a call that must raise on EVERY
rank, naming what differed, within 30 s, and leave the communicator usable; the results map
each scenario's name to "ok" or what went wrong, for the test to assert on."""

from __future__ import annotations

import time

import numpy as np

import collective as col


class Scenarios:
    """``s(name, fn, expect_words, exc_type=ValueError)`` runs one scenario; ``s.results``.
    ``elements``: the size of the allreduce that checks the communicator afterwards (across
    hosts a large one, so that the check crosses the links too: ``s.crossed`` counts its
    bytes)."""

    def __init__(self, elements: int = 3):
        self.results: dict = {}
        self.elements = elements
        self.crossed = 0

    def __call__(self, name, fn, expect_words, exc_type=ValueError):
        t0, results = time.monotonic(), self.results
        try:
            fn()
            results[name] = "no error"
        except exc_type as exc:
            missing = [w for w in expect_words if w not in str(exc)]
            results[name] = "ok" if not missing else f"missing {missing}: {exc}"
        except Exception as exc:  # noqa: BLE001 - any other exception is a failure to report
            results[name] = f"wrong exception {type(exc).__name__}: {exc}"
        if time.monotonic() - t0 > 30:
            results[name] += f" / took {time.monotonic() - t0:.0f} s"
        # the communicator must still work, with the same result everywhere
        r, P = col.rank(), col.size()
        y = col.allreduce(np.full(self.elements, r, np.int64), op=col.Sum)
        self.crossed += y.nbytes
        if not np.all(y == P * (P - 1) // 2):
            results[name] += " / communicator broken afterwards"

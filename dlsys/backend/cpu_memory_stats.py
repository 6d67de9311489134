"""Live and peak bytes of host memory for ``ds.cpu().memory_stats()``, from ``tracemalloc``.

NOTE: why tracemalloc and not a counter in an allocation path: the CPU device has no allocator
of its own. Its arrays come from numpy (which reports every data buffer to tracemalloc, domain
``np.lib.tracemalloc_domain``) and from Numba kernels that allocate their results (Numba's
runtime allocates with PyMem_RawMalloc, which tracemalloc also sees); numpy's allocator hook
(PyDataMem_SetHandler) is C-only and would miss Numba's arrays, and counting in Tensor creation
cannot see an array die without a finalizer per array and counts views twice. tracemalloc also
counts Python objects (graph nodes, Tensor objects): a few hundred bytes per op, small beside
the arrays of any real model, and honest (they are memory the step holds too).

Tracing starts at the first call of ``stats`` or ``reset_peak`` (memory allocated before it is
not counted) and costs step time while on (benchmarks/memory.py measures it); a process that
never asks pays nothing. ``stop()`` ends it.
"""

from __future__ import annotations

import tracemalloc

__all__ = ["stats", "reset_peak", "stop", "is_tracing"]


def _ensure():
    if not tracemalloc.is_tracing():
        tracemalloc.start(1)


def stats() -> dict:
    """{"allocated_bytes.all.current": live bytes, "allocated_bytes.all.peak": peak bytes}."""
    _ensure()
    current, peak = tracemalloc.get_traced_memory()
    return {"allocated_bytes.all.current": current, "allocated_bytes.all.peak": peak}


def reset_peak() -> None:
    """The peak becomes the live bytes now."""
    _ensure()
    tracemalloc.reset_peak()


def stop() -> None:
    """Stop tracing (the next ``stats`` or ``reset_peak`` starts afresh)."""
    tracemalloc.stop()


def is_tracing() -> bool:
    return tracemalloc.is_tracing()

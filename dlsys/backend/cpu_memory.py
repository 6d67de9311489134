"""Process-wide host memory tuning: applied by the first use of the CPU device
(``dlsys.backend.cpu()``, which every tensor creation goes through), or explicitly with
``keep_freed_memory_mapped()``. Importing dlsys does not apply it."""

from __future__ import annotations

import sys

from .. import config

_applied = None  # None: not tried yet; then True (tuned) or False (off, or not glibc)


def keep_freed_memory_mapped() -> bool:
    """Ask glibc to keep freed large blocks in the heap instead of returning them to the OS
    (once per process; later calls return the first answer). True when the tuning is on.

    NOTE: every training step allocates and frees the same large temporaries (im2col columns,
    activations, gradients). With glibc's defaults each free of a block above the mmap threshold
    unmaps it, so the next step page-faults all of it back in: measured 3400 faults, 13 ms of
    system time in a 38 ms LeNet step on this machine; with the thresholds raised, zero faults.
    Opt out with DLSYS_NO_MALLOPT=1. A no-op off glibc."""
    global _applied
    if _applied is None:
        _applied = config.mallopt_enabled() and _mallopt()
    return _applied


def applied() -> bool:
    """Whether the tuning has been applied in this process."""
    return bool(_applied)


def _mallopt() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        import platform

        if platform.libc_ver()[0] != "glibc":
            return False
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)  # C int: 1 GiB
        return True
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False

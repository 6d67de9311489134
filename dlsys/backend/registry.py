"""The devices of this process: ``cpu()``, ``cuda(index)``, ``cuda_is_available()``,
``as_device(x)``; one object per device.

The first use of a device prepares the process for it, explicitly and once: ``cpu()`` applies
the glibc memory tuning (``cpu_memory``; every tensor creation goes through it), ``cuda()``
imports the CUDA package (``dlsys.backend.cuda``) and installs its caching allocator before
the first CUDA context exists. Importing dlsys does neither.
"""

from __future__ import annotations

import importlib
import importlib.util

from . import cpu_memory
from .cpu import CPUDevice
from .device import Device

__all__ = ["cpu", "cuda", "cuda_is_available", "as_device", "default_device"]

_CPU = CPUDevice()
_CUDA: dict[int, Device] = {}
_cpu_ready = False


def cpu() -> CPUDevice:
    """The CPU device (a singleton)."""
    if not _cpu_ready:
        _prepare_cpu()
    return _CPU


def _prepare_cpu():
    global _cpu_ready
    cpu_memory.keep_freed_memory_mapped()
    _cpu_ready = True


def default_device() -> Device:
    return cpu()


def _has_numba_cuda() -> bool:
    # NOTE: without the numba-cuda package, `from numba import cuda` still imports Numba's
    # deprecated built-in CUDA target, which compiles these kernels differently; not supported.
    # numba-cuda takes the name over with a .pth redirector, which does not run when its
    # site-packages was put on sys.path without processing .pth files: check where it points.
    if importlib.util.find_spec("numba_cuda") is None:
        return False
    spec = importlib.util.find_spec("numba.cuda")
    return spec is not None and "numba_cuda" in (spec.origin or "")


def _import_numba_cuda():
    """numba.cuda (numba-cuda's), imported on demand; ImportError when it is missing."""
    if not _has_numba_cuda():
        raise ImportError("No module named 'numba_cuda' (Numba's built-in CUDA target is "
                          "deprecated and not supported)")
    from numba import cuda as nb_cuda

    return nb_cuda


def cuda_is_available() -> bool:
    """True when numba-cuda is installed and sees a GPU (or its simulator). Never raises."""
    try:
        return bool(_import_numba_cuda().is_available())
    except Exception:
        return False


def cuda(index: int = 0) -> Device:
    """The CUDA device ``index`` (one object per index). RuntimeError when unavailable."""
    index = int(index)
    dev = _CUDA.get(index)
    if dev is not None:
        return dev
    try:
        _import_numba_cuda()
    except Exception as e:
        raise RuntimeError(
            "CUDA device requested but the package `numba-cuda` is not installed or does not "
            f"import ({type(e).__name__}: {e}); install it with `pip install numba-cuda[cu12]` "
            "(extra: dlsys-collective[cuda])") from e
    if not cuda_is_available():
        raise RuntimeError("CUDA device requested but no GPU is present (numba-cuda is "
                           "installed, numba.cuda.is_available() is False); use ds.cpu()")
    try:
        backend = importlib.import_module(__package__ + ".cuda")
    except ImportError as e:
        raise RuntimeError(f"the CUDA backend (dlsys.backend.cuda) failed to import: {e}") from e
    backend.install_caching_allocator()  # NOTE: before the first CUDA context
    dev = _CUDA[index] = backend.CUDADevice(index)
    return dev


def as_device(x=None) -> Device:
    """Device | "cpu" | "cuda" | "cuda:N" | None (the default, cpu) -> a Device."""
    if x is None:
        return cpu()
    if isinstance(x, Device):
        return x
    if isinstance(x, str):
        s = x.strip().lower()
        if s == "cpu":
            return cpu()
        if s == "cuda":
            return cuda(0)
        if s.startswith("cuda:") and s[5:].isdigit():
            return cuda(int(s[5:]))
    raise ValueError(f"unknown device {x!r}: expected a Device, 'cpu', 'cuda', 'cuda:N' or None")

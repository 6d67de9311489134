"""Devices: ``cpu()``, ``cuda(index)``, ``cuda_is_available()``, ``as_device(x)``.

The CUDA module (``dlsys.backend.cuda``) is imported lazily, only when a CUDA device is asked
for, so a machine without ``numba-cuda`` or a GPU never pays for (or fails on) that import.
"""

from __future__ import annotations

from .cpu import CPUDevice
from .device import BINARY_OPS, UNARY_OPS, Device

__all__ = ["Device", "CPUDevice", "UNARY_OPS", "BINARY_OPS", "cpu", "cuda",
           "cuda_is_available", "as_device", "default_device"]

_CPU = CPUDevice()
_CUDA: dict[int, Device] = {}


def cpu() -> CPUDevice:
    """The CPU device (a singleton)."""
    return _CPU


def default_device() -> Device:
    return _CPU


def _has_numba_cuda() -> bool:
    # NOTE: without the numba-cuda package, `from numba import cuda` still imports Numba's
    # deprecated built-in CUDA target, which compiles these kernels differently; not supported.
    # numba-cuda takes the name over with a .pth redirector, which does not run when its
    # site-packages was put on sys.path without processing .pth files: check where it points.
    import importlib.util

    if importlib.util.find_spec("numba_cuda") is None:
        return False
    spec = importlib.util.find_spec("numba.cuda")
    return spec is not None and "numba_cuda" in (spec.origin or "")


def cuda_is_available() -> bool:
    """True when numba-cuda is installed and sees a GPU (or its simulator). Never raises."""
    try:
        if not _has_numba_cuda():
            return False
        from numba import cuda as nb_cuda

        return bool(nb_cuda.is_available())
    except Exception:
        return False


def cuda(index: int = 0) -> Device:
    """The CUDA device ``index`` (one object per index). RuntimeError when unavailable."""
    index = int(index)
    if index in _CUDA:
        return _CUDA[index]
    try:
        if not _has_numba_cuda():
            raise ImportError("No module named 'numba_cuda' (Numba's built-in CUDA target is "
                              "deprecated and not supported)")
        from numba import cuda as nb_cuda  # noqa: F401
    except Exception as e:
        raise RuntimeError(
            "CUDA device requested but the package `numba-cuda` is not installed or does not "
            f"import ({type(e).__name__}: {e}); install it with `pip install numba-cuda[cu12]` "
            "(extra: dlsys-collective[cuda])") from e
    if not cuda_is_available():
        raise RuntimeError("CUDA device requested but no GPU is present (numba-cuda is "
                           "installed, numba.cuda.is_available() is False); use ds.cpu()")
    try:
        # NOTE: not `from . import cuda`: that returns this function (the package attribute);
        # importing the submodule also rebinds the attribute, so the function is put back.
        import importlib

        cuda_mod = importlib.import_module(__name__ + ".cuda")
        globals()["cuda"] = _cuda_factory
    except ImportError as e:
        raise RuntimeError(f"the CUDA backend (dlsys.backend.cuda) failed to import: {e}") from e
    dev = cuda_mod.CUDADevice(index)
    _CUDA[index] = dev
    return dev


_cuda_factory = cuda


def as_device(x=None) -> Device:
    """Device | "cpu" | "cuda" | "cuda:N" | None (the default, cpu) -> a Device."""
    if x is None:
        return _CPU
    if isinstance(x, Device):
        return x
    if isinstance(x, str):
        s = x.strip().lower()
        if s == "cpu":
            return _CPU
        if s == "cuda":
            return cuda(0)
        if s.startswith("cuda:") and s[5:].isdigit():
            return cuda(int(s[5:]))
    raise ValueError(f"unknown device {x!r}: expected a Device, 'cpu', 'cuda', 'cuda:N' or None")

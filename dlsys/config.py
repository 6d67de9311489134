"""Settings: every environment variable dlsys reads is read here, and only here.

Variable                      Default  Effect
----------------------------  -------  -------------------------------------------------------
DLSYS_DATA                    unset    the dataset cache directory (~/.cache/dlsys if unset)
DLSYS_NO_MALLOPT              unset    set (non-empty): skip the glibc mallopt tuning that the
                                       first CPU device use applies (backend/cpu_memory.py)
DLSYS_CUDA_CACHING_ALLOCATOR  1        0: Numba's own device allocator instead of the caching
                                       one (backend/cuda/memory.py)
DLSYS_CUDA_LEAN_LAUNCH        1        0: every kernel launch through Numba's launch path
                                       (backend/cuda/launch.py)
CUDA_VISIBLE_DEVICES          unset    the GPUs select_device_for_local_rank chooses among (it
                                       narrows the variable to the one chosen)
OMPI_COMM_WORLD_LOCAL_RANK,   unset    the local rank select_device_for_local_rank() uses
MPI_LOCALRANKID,                       without an argument: the first one set, in this order
PMI_LOCAL_RANK,                        (Open MPI, MPICH/Hydra, PMI, MVAPICH, Slurm); 0 when
MV2_COMM_WORLD_LOCAL_RANK,             none is
SLURM_LOCALID

Numba's own variables (``NUMBA_ENABLE_CUDASIM``, ``NUMBA_NUM_THREADS``, ...) are read by Numba.

Each value is read the first time it is asked for and kept for the life of the process (set a
variable before the first dataset load, tensor or CUDA device); ``reload()`` forgets the kept
values so the next call reads the environment again (tests). Importing this module reads
nothing. The writes: ``set_cuda_visible_devices``, and ``drop_launcher_variables`` (run only in
the DataLoader's forkserver, see dlsys/data/forkserver_env.py).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["data_dir", "mallopt_enabled", "cuda_caching_allocator", "cuda_lean_launch",
           "cuda_visible_devices", "set_cuda_visible_devices", "launcher_local_rank",
           "LOCAL_RANK_VARIABLES", "drop_launcher_variables", "reload"]

LOCAL_RANK_VARIABLES = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                        "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")


@functools.cache
def data_dir() -> Path:
    """The dataset cache: ``$DLSYS_DATA`` if set, else ``~/.cache/dlsys``."""
    env = os.environ.get("DLSYS_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dlsys"


@functools.cache
def mallopt_enabled() -> bool:
    return not os.environ.get("DLSYS_NO_MALLOPT")


@functools.cache
def cuda_caching_allocator() -> bool:
    return os.environ.get("DLSYS_CUDA_CACHING_ALLOCATOR", "1") != "0"


@functools.cache
def cuda_lean_launch() -> bool:
    return os.environ.get("DLSYS_CUDA_LEAN_LAUNCH", "1") != "0"


@functools.cache
def cuda_visible_devices() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def set_cuda_visible_devices(value: str) -> None:
    """Narrow the GPUs this process sees (before the CUDA driver starts)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = value
    cuda_visible_devices.cache_clear()


@functools.cache
def launcher_local_rank() -> int | None:
    """The local rank the MPI launcher or Slurm set (see the table), None when none is set."""
    for name in LOCAL_RANK_VARIABLES:
        v = os.environ.get(name)
        if v is not None and v.strip().isdigit():
            return int(v)
    return None


_READERS = (data_dir, mallopt_enabled, cuda_caching_allocator, cuda_lean_launch,
            cuda_visible_devices, launcher_local_rank)


# the MPI launchers' variables (MPICH/Hydra, PMI/PMIx, Open MPI, Intel MPI)
LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "HYDRA_", "HYDI_", "MPI_LOCAL", "OMPI_", "I_MPI_")


def drop_launcher_variables() -> None:
    """Remove the MPI launcher's variables from this process's environment (so that a child
    that imports MPI starts as a singleton instead of joining the parent's job)."""
    for name in [k for k in os.environ if k.startswith(LAUNCHER_PREFIXES)]:
        del os.environ[name]


def reload() -> None:
    """Forget every value read so far: the next call of each reads the environment again."""
    for f in _READERS:
        f.cache_clear()

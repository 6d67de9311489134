"""dlsys: a compact eager autograd with a PyTorch-like API (see DESIGN.md)."""

__version__ = "0.2.0.dev0"  # NOTE: the same string as pyproject.toml's version (a test checks)

import builtins as _builtins

# NOTE: importing dlsys changes nothing in the process: the first use of a device prepares it
# (dlsys.backend.registry). nn/optim/data import dlsys.tensor themselves, so the order of this
# line does not matter.
from . import autograd, backend, config, data, dtypes, nn, optim, random, utils  # noqa: F401
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend.registry import cpu, cuda, cuda_is_available
from .creation import (
    arange,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    multinomial,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from .dtypes import bool_, float16, float32, float64, int32, int64
from .random import get_rng_state, manual_seed, set_rng_state
from .serialization import load, save
from .tensor import Tensor
from .tensor_methods import FUNCTIONS as _FUNCTIONS

# NOTE: the op functions, ds.sum, ds.max, ds.transpose, ds.cat, ds.where, ds.einsum, ...: one
# per entry of dlsys.tensor_methods's table (the same functions as the Tensor methods).
globals().update(_FUNCTIONS)
# torch's dtype aliases (module attributes only: they shadow builtins nowhere else)
bool, long, int, float, double, half = bool_, int64, int32, float32, float64, float16  # noqa: A001

__all__ = [
    "Tensor", "tensor", "from_numpy", "zeros", "ones", "full", "empty", "randn", "rand", "arange",
    "linspace", "eye", "randint", "randperm", "multinomial",
    "zeros_like", "ones_like", "full_like", "randn_like", "rand_like", "empty_like",
    "float16", "float32", "float64", "int32", "int64", "bool_", "dtypes",
    "cpu", "cuda", "cuda_is_available", "backend",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "autograd",
    "manual_seed", "get_rng_state", "set_rng_state", "random",
    "nn", "optim", "data", "config", "save", "load", "utils",
    *sorted(n for n in _FUNCTIONS if not hasattr(_builtins, n)),
]

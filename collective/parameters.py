"""Start every rank from the same model and optimizer state (Horovod's broadcast helpers).

    col.broadcast_parameters(model.state_dict(), root=0)   # values share storage: in place
    col.broadcast_optimizer_state(optimizer, root=0)

Both first check, with one allgather, that the ranks agree on what is being broadcast (names,
shapes, dtypes) and raise the same error on every rank when they do not, instead of letting a
broadcast of different sizes hang or truncate.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .collectives import broadcast_, broadcast_object
from .comm import context
from .process_sets import context_of
from .safety import check_same_everywhere
from .tensors import assign, state_to_host, to_numpy


def _named(params):
    """[(name, tensor-or-array)] from a state_dict/mapping, (name, value) pairs or values."""
    if isinstance(params, Mapping):
        return sorted(params.items(), key=lambda kv: str(kv[0]))
    items = list(params)
    if items and isinstance(items[0], tuple):
        return [(str(n), v) for n, v in items]
    return [(f"param.{i}", v) for i, v in enumerate(items)]


def _root(root, root_rank):
    return root if root_rank is None else root_rank


def broadcast_parameters(params, root=0, process_set=None, *, root_rank=None):
    """Overwrite ``params`` on every rank with root's values, in place.

    ``params``: ``model.state_dict()`` (its Tensors share storage with the model, so the model
    is updated), ``model.named_parameters()``, a list of Tensors, or numpy arrays. Values of
    one dtype travel in one fused broadcast. ``root_rank=``: Horovod's spelling of ``root``
    (a world rank); ``process_set``: among the set's ranks only.
    """
    root = _root(root, root_rank)
    named = _named(params)
    signature = [(n, tuple(int(s) for s in v.shape), np.dtype(v.dtype).str) for n, v in named]
    ctx = context() if process_set is None else context_of(process_set, "broadcast_parameters")
    if ctx.size == 1:
        return
    check_same_everywhere(ctx, signature,
                          "broadcast_parameters: the parameters (name, shape, dtype)")
    is_root = (ctx.rank if ctx.ranks is None else ctx.ranks[ctx.rank]) == root
    by_dtype: dict = {}
    for _, value in named:
        by_dtype.setdefault(np.dtype(value.dtype).str, []).append(value)
    for dtype, values in by_dtype.items():
        sizes = [int(np.prod(v.shape, dtype=np.int64)) for v in values]
        if is_root:
            flat = (np.concatenate([to_numpy(v).ravel() for v in values]) if values
                    else np.empty(0, dtype))
        else:
            flat = np.empty(sum(sizes), dtype)
        broadcast_(flat, root=root, process_set=process_set)
        if not is_root:
            offset = 0
            for value, n in zip(values, sizes, strict=True):
                assign(value, flat[offset:offset + n].reshape(value.shape))
                offset += n


def broadcast_optimizer_state(optimizer, root=0, process_set=None, *, root_rank=None):
    """Give every rank root's optimizer state (param_groups hyperparameters and per-parameter
    state such as momentum buffers, Adam moments and the scalar 'step'), in place.

    A rank whose optimizer has no state yet (it has not stepped, e.g. every rank but root
    after root loaded a checkpoint) gets it created from root's; when root has none, every
    rank ends with none. Works on a DistributedOptimizer too (it shares the wrapped state).
    ``root_rank=``, ``process_set``: as in broadcast_parameters.
    """
    root = _root(root, root_rank)
    ctx = (context() if process_set is None
           else context_of(process_set, "broadcast_optimizer_state"))
    if ctx.size == 1:
        return
    groups = [[(tuple(int(s) for s in p.shape), np.dtype(p.dtype).str) for p in g["params"]]
              for g in optimizer.param_groups]
    check_same_everywhere(ctx, [("groups", len(groups))] + [(i, g) for i, g in enumerate(groups)],
                          "broadcast_optimizer_state: the optimizer's parameter groups")
    is_root = (ctx.rank if ctx.ranks is None else ctx.ranks[ctx.rank]) == root
    state = state_to_host(optimizer.state_dict()) if is_root else None
    state = broadcast_object(state, root=root, process_set=process_set)
    if not is_root:
        optimizer.load_state_dict(state)


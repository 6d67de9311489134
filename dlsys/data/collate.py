"""Collation: a list of samples -> one batch, recursively, as PyTorch's ``default_collate``.

Arrays, Tensors and numbers become one stacked Tensor per field; dicts, namedtuples, tuples and
lists are collated field by field (tuples and lists give lists, as in PyTorch); strings stay a
list. The work is split in two so that worker processes only ever handle numpy arrays:
``collate_arrays`` (host arrays, runs where the samples are read) and ``to_tensors`` (wraps the
arrays as Tensors on the loader's device, in the main process).
"""

from __future__ import annotations

import collections.abc
import copy

import numpy as np

from dlsys.backend import as_device
from dlsys.tensor import Tensor

__all__ = ["default_collate", "collate_arrays", "to_tensors"]

_BAD_KINDS = "USOV"  # strings, objects and void records have no Tensor dtype


def _type_error(what, where):
    return TypeError(f"default_collate: batch must contain Tensors, numpy arrays, numbers, dicts "
                     f"or lists; found {what}{where}")


def _stack(arrays, where):
    first = arrays[0]
    for k, a in enumerate(arrays):
        if a.shape != first.shape:
            raise ValueError(f"default_collate: samples have different shapes{where}: "
                             f"{first.shape} at index 0 and {a.shape} at index {k}")
    if first.dtype.kind in _BAD_KINDS:
        raise _type_error(f"arrays of dtype {first.dtype}", where)
    return np.stack(arrays)


def collate_arrays(batch, where: str = ""):
    """``default_collate`` with host numpy arrays where it gives Tensors."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack([np.asarray(t) for t in batch], where)
    if isinstance(elem, np.ndarray):
        return _stack(batch, where)
    if isinstance(elem, np.generic):
        if elem.dtype.kind in _BAD_KINDS:
            raise _type_error(f"numpy scalars of dtype {elem.dtype}", where)
        return np.asarray(batch)
    if isinstance(elem, bool) and all(isinstance(b, bool) for b in batch):
        return np.asarray(batch, dtype=np.bool_)
    if isinstance(elem, int):
        return np.asarray(batch, dtype=np.int64)
    if isinstance(elem, float):  # NOTE: float64, as torch's default_collate (not ds.tensor's rule)
        return np.asarray(batch, dtype=np.float64)
    if isinstance(elem, (str, bytes)):
        return batch  # as torch: the list (or, inside a tuple field, the tuple) as it is
    if isinstance(elem, collections.abc.Mapping):
        fields = {k: collate_arrays([d[k] for d in batch], f"{where}[{k!r}]") for k in elem}
        if isinstance(elem, collections.abc.MutableMapping):
            out = copy.copy(elem)  # keeps the mapping type (OrderedDict, defaultdict, ...)
            out.update(fields)
            return out
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(collate_arrays(s, f"{where}.{f}")
                            for f, s in zip(elem._fields, zip(*batch, strict=True),
                                            strict=True)))
    if isinstance(elem, collections.abc.Sequence):
        n = len(elem)
        if any(len(s) != n for s in batch):
            raise RuntimeError(f"each element in list of batch should be of equal size{where}")
        return [collate_arrays(s, f"{where}[{i}]")
                for i, s in enumerate(zip(*batch, strict=True))]
    raise _type_error(type(elem).__name__, where)


def to_tensors(batch, device=None):
    """Every numpy array in the (nested) ``batch`` wrapped as a Tensor on ``device`` (no copy on
    the CPU); Tensors are moved there; anything else is kept."""
    dev = as_device(device)
    return _to_tensors(batch, dev)


def _to_tensors(obj, dev):
    if isinstance(obj, np.ndarray):
        return Tensor.from_array(dev.from_numpy(obj), dev)
    if isinstance(obj, Tensor):
        return obj.to(dev)
    if isinstance(obj, collections.abc.Mapping):
        fields = {k: _to_tensors(v, dev) for k, v in obj.items()}
        if isinstance(obj, collections.abc.MutableMapping):
            out = copy.copy(obj)
            out.update(fields)
            return out
        return fields
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_to_tensors(v, dev) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_tensors(v, dev) for v in obj)
    return obj


def default_collate(batch):
    """Collate a list of samples into a batch of Tensors (PyTorch's ``default_collate``)."""
    return to_tensors(collate_arrays(batch))

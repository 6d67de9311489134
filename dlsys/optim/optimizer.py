"""Optimizer base class: param_groups, per-parameter state, state_dict (PyTorch layout)."""

from __future__ import annotations

import copy
from collections.abc import MutableMapping

import numpy as np

from dlsys.autograd import zero_grads
from dlsys.tensor import Tensor


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


class ParamState(MutableMapping):
    """``state[param] -> dict``, keyed by the parameter's identity (Tensors compare
    elementwise, so they are not usable as ordinary dict keys); missing entries are created
    empty on access, like PyTorch's defaultdict."""

    def __init__(self):
        self._items: dict[int, tuple] = {}

    def __getitem__(self, param):
        entry = self._items.get(id(param))
        if entry is None:
            entry = (param, {})
            self._items[id(param)] = entry
        return entry[1]

    def __setitem__(self, param, value):
        self._items[id(param)] = (param, value)

    def __delitem__(self, param):
        del self._items[id(param)]

    def __contains__(self, param):
        return id(param) in self._items

    def __iter__(self):
        return (p for p, _ in self._items.values())

    def __len__(self):
        return len(self._items)


class Optimizer:
    """Base class. ``params`` is an iterable of Tensors or of dicts (param groups) with a
    "params" entry and per-group options overriding ``defaults``."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state = ParamState()
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got "
                                f"{type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        ids = {id(p) for p in params}
        if len(ids) != len(params):
            raise ValueError("a parameter group contains the same parameter more than once")
        for g in self.param_groups:
            if ids & {id(p) for p in g["params"]}:
                raise ValueError("some parameters appear in more than one parameter group")
        group = {"params": params}
        for k, v in self.defaults.items():
            v = param_group.get(k, v)
            if v is required:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {k}")
            group[k] = v
        for k, v in param_group.items():
            group.setdefault(k, v)
        self._validate_group(group)
        self.param_groups.append(group)

    def _validate_group(self, group: dict) -> None:
        if group.get("lr", 0.0) < 0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads((p for g in self.param_groups for p in g["params"]), set_to_none)

    def step(self, closure=None):
        raise NotImplementedError

    def _params_with_grad(self, group):
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
                raise ValueError(f"gradient {g.shape} {g.dtype} on {g.device} does not match "
                                 f"its parameter {p.shape} {p.dtype} on {p.device}")
            yield p, g

    def _zeros_like(self, p) -> Tensor:
        return Tensor.from_array(p.device.full(tuple(p.shape), 0, p.dtype), device=p.device)

    # -- state_dict (PyTorch layout) ---------------------------------------------------------
    def state_dict(self) -> dict:
        """{"state": {index: {name: value}}, "param_groups": [{..., "params": [index]}]};
        parameters are numbered in group order; values are the live state Tensors/numbers."""
        index, groups = {}, []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {index[id(p)]: s for p, s in self.state.items() if id(p) in index and s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore options and state saved by :meth:`state_dict` (from this or a same-shaped
        optimizer). State arrays are copied, cast to their parameter's dtype and moved to its
        device; group sizes must match."""
        groups, saved_groups = self.param_groups, state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(groups)}")
        for i, (g, sg) in enumerate(zip(groups, saved_groups, strict=True)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(f"parameter group {i} has {len(g['params'])} parameters but "
                                 f"the loaded one has {len(sg['params'])}")
        by_index = {}
        for g, sg in zip(groups, saved_groups, strict=True):
            for p, i in zip(g["params"], sg["params"], strict=True):
                by_index[i] = p
        new_state = ParamState()
        for i, s in state_dict["state"].items():
            p = by_index.get(int(i))
            if p is None:
                raise ValueError(f"state for parameter index {i} has no matching parameter")
            new_state[p] = {k: self._cast_state(p, k, v) for k, v in s.items()}
        for g, sg in zip(groups, saved_groups, strict=True):
            for k, v in sg.items():
                if k != "params":
                    g[k] = copy.deepcopy(v)
        self.state = new_state

    @staticmethod
    def _cast_state(p, key, value):
        if isinstance(value, (Tensor, np.ndarray)):
            arr = value.numpy() if isinstance(value, Tensor) else value
            if arr.ndim == 0 and key == "step":
                return int(arr)
            if tuple(arr.shape) != tuple(p.shape):
                raise ValueError(f"state {key!r} has shape {tuple(arr.shape)}, its parameter "
                                 f"{tuple(p.shape)}")
            t = Tensor.from_array(p.device.full(tuple(p.shape), 0, p.dtype), device=p.device)
            t.copy_(arr)
            return t
        return copy.deepcopy(value)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        lines.append(")")
        return "\n".join(lines)

"""Module: the base class of layers and models (PyTorch's nn.Module, trimmed)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from dlsys.autograd import RemovableHandle, no_grad, zero_grads
from dlsys.tensor import Tensor

from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _shape_str(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _converted(t: Tensor, device=None, dtype=None) -> Tensor:
    """t on ``device`` / cast to ``dtype`` (only floating tensors are cast, as in PyTorch)."""
    if dtype is not None and np.dtype(t.dtype).kind == "f" and t.dtype != dtype:
        t = t.to(dtype)
    if device is not None and t.device != device:
        t = t.to(device)
    return t


class Module:
    """Base class for all layers and models.

    Assigning a :class:`Parameter`, a Module or (via :meth:`register_buffer`) a buffer Tensor
    to an attribute registers it; ``parameters()``, ``state_dict()`` and friends visit them
    in registration order, children after the module's own tensors, like PyTorch.
    """

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_hooks_with_kwargs", set())
        object.__setattr__(self, "_hooks_always_called", set())

    def __setstate__(self, state):
        # NOTE: a module pickled before it had hooks still unpickles into a working module
        self.__dict__.update(state)
        for name in ("_forward_pre_hooks", "_forward_hooks"):
            self.__dict__.setdefault(name, OrderedDict())
        for name in ("_hooks_with_kwargs", "_hooks_always_called"):
            self.__dict__.setdefault(name, set())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    # -- forward hooks (PyTorch's semantics) ---------------------------------------------------
    def _add_hook(self, hooks, hook, prepend, with_kwargs, always_call=False):
        handle = RemovableHandle(hooks)
        hooks[handle._key] = hook
        if prepend:
            hooks.move_to_end(handle._key, last=False)
        if with_kwargs:
            self._hooks_with_kwargs.add(handle._key)
        if always_call:
            self._hooks_always_called.add(handle._key)
        return handle

    def register_forward_pre_hook(self, hook, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """``hook(module, args)`` runs before forward; it may return new args (a tuple, or one
        value that becomes a 1-tuple). With ``with_kwargs``: ``hook(module, args, kwargs)``
        returning None or ``(args, kwargs)``. ``prepend`` runs it before the others."""
        return self._add_hook(self._forward_pre_hooks, hook, prepend, with_kwargs)

    def register_forward_hook(self, hook, *, prepend: bool = False, with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """``hook(module, args, output)`` runs after forward; it may return a new output. With
        ``with_kwargs``: ``hook(module, args, kwargs, output)``. ``always_call``: it also runs
        when forward raises (then the error propagates)."""
        return self._add_hook(self._forward_hooks, hook, prepend, with_kwargs, always_call)

    def _call_with_hooks(self, args, kwargs):
        with_kwargs = self._hooks_with_kwargs
        for key, hook in tuple(self._forward_pre_hooks.items()):
            if key in with_kwargs:
                r = hook(self, args, kwargs)
                if r is not None:
                    if not (isinstance(r, tuple) and len(r) == 2):
                        raise RuntimeError(f"forward pre-hook must return None or a tuple of "
                                           f"(new_args, new_kwargs), but got {r!r}.")
                    args, kwargs = r
            else:
                r = hook(self, args)
                if r is not None:
                    args = r if isinstance(r, tuple) else (r,)
        try:
            result = self.forward(*args, **kwargs)
        except Exception:
            for key, hook in tuple(self._forward_hooks.items()):
                if key in self._hooks_always_called:
                    try:
                        if key in with_kwargs:
                            hook(self, args, kwargs, None)
                        else:
                            hook(self, args, None)
                    except Exception:
                        pass  # NOTE: as PyTorch: the forward's error is the one that propagates
            raise
        for key, hook in tuple(self._forward_hooks.items()):
            r = hook(self, args, kwargs, result) if key in with_kwargs else \
                hook(self, args, result)
            if r is not None:
                result = r
        return result

    # -- registration ---------------------------------------------------------------------
    def _check_init(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() is called "
                                 f"(call super().__init__() first in {type(self).__name__})")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._check_init(name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter {name!r} "
                            "(a Parameter or None is required)")
        self._discard(name, self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """A non-learnable tensor saved in ``state_dict`` (unless ``persistent=False``)."""
        self._check_init(name)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer {name!r} "
                            "(a Tensor or None is required)")
        self._discard(name, self._buffers)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        self._check_init(name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._discard(name, self._modules)
        self._modules[name] = module

    register_module = add_module

    def _discard(self, name, keep):
        # re-assigning within the same store keeps the name's position (PyTorch's order)
        for d in (self._parameters, self._buffers, self._modules):
            if d is not keep:
                d.pop(name, None)
        if keep is not self._buffers:
            self._non_persistent_buffers.discard(name)
        self.__dict__.pop(name, None)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self.add_module(name, value)
        elif "_parameters" in self.__dict__ and name in self._parameters:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                                "(a Parameter or None is required)")
            self._parameters[name] = None
        elif "_buffers" in self.__dict__ and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer {name!r} "
                                "(a Tensor or None is required)")
            self._buffers[name] = value
        elif "_modules" in self.__dict__ and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module "
                                f"{name!r} (a Module or None is required)")
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # only called when normal lookup fails: parameters, buffers and children live here
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    # -- traversal --------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """(name, module) for self ("") and every descendant, depth first; a module reached
        twice is reported once unless ``remove_duplicate=False``."""
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, f"{prefix}.{name}" if prefix else name,
                                           remove_duplicate)

    def get_submodule(self, target: str) -> Module:
        """The descendant at dotted path ``target`` ("" is self); AttributeError naming the
        missing part otherwise."""
        mod = self
        for part in target.split(".") if target else ():
            child = mod._modules.get(part)
            if child is None:
                raise AttributeError(f"{type(mod).__name__} has no attribute `{part}`")
            mod = child
        return mod

    def get_parameter(self, target: str) -> Parameter:
        path, _, name = target.rpartition(".")
        mod = self.get_submodule(path)
        p = mod._parameters.get(name)
        if p is None:
            raise AttributeError(f"`{name}` is not an nn.Parameter of {type(mod).__name__}")
        return p

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, getter, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in modules:
            for name, t in getter(m):
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))  # a shared (tied) tensor is reported once, at its first name
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(name, Parameter) pairs in registration order, shared parameters once."""
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse)

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """``fn(m)`` for every child (recursively, children first) and then self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes and gradients ------------------------------------------------------------------
    def train(self, mode: bool = True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be a bool")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        zero_grads(self.parameters(), set_to_none)

    # -- state_dict -------------------------------------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """Parameters and persistent buffers by PyTorch key ("0.weight", "1.running_mean").

        Values are detached Tensors sharing storage with the module's tensors, so writing
        into them in place (e.g. a broadcast from rank 0) updates the model.
        """
        destination = OrderedDict() if destination is None else destination
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def _state_tensors(self):
        """{key: the module's own Tensor} for every state_dict key."""
        return self.state_dict(keep_vars=True)

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy ``state_dict``'s values (Tensors, numpy arrays or numbers) into this module's
        parameters and buffers, casting to their dtypes and moving to their devices.

        Shapes must match exactly. With ``strict`` the keys must match exactly too. Any
        problem raises a RuntimeError listing every missing, unexpected and mis-shaped key,
        before anything is copied. Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"expected a mapping of names to tensors, got "
                            f"{type(state_dict).__name__}")
        own = self._state_tensors()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors, values = [], {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not isinstance(value, (Tensor, np.ndarray)):
                value = np.asarray(value)
            if tuple(value.shape) != tuple(target.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{_shape_str(value.shape)} from checkpoint, the shape in "
                              f"current model is {_shape_str(target.shape)}.")
            values[key] = value
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with no_grad():
            for key, value in values.items():
                if value is not own[key]:
                    own[key].copy_(value)
        return IncompatibleKeys(missing, unexpected)

    # -- devices and dtypes -------------------------------------------------------------------
    def to(self, device_or_dtype=None, *, device=None, dtype=None):
        """Move parameters and buffers to a device and/or cast floating ones to a dtype, in
        place: the same Parameter objects get new storage (optimizers stay valid)."""
        from dlsys.backend import Device, as_device

        if device_or_dtype is not None:
            if isinstance(device_or_dtype, (str, Device)):
                device = device_or_dtype
            else:
                dtype = device_or_dtype
        device = as_device(device) if device is not None else None
        dtype = np.dtype(dtype) if dtype is not None else None
        for m in self.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                new = _converted(p.detach(), device, dtype)
                if new._data is not p._data:
                    p.data = new  # swaps the storage, keeps the object
                    if p.grad is not None:
                        p.grad = _converted(p.grad, device, dtype)
            for name, b in m._buffers.items():
                if b is not None:
                    m._buffers[name] = _converted(b, device, dtype)
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index: int = 0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # -- printing -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ")
                 for name, m in self._modules.items()]
        head = type(self).__name__ + "(" + self.extra_repr()
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

"""Tensor: an n-d array on a device plus the autograd graph node that made it.

Internals others rely on: ``t._data`` (the backend array), ``t.device``, ``t.dtype``, ``t.shape``,
``Tensor.from_array`` (wraps without a copy). Ops live in ``dlsys.ops``: their methods
(``x.sum()``, ``x + y``, ...) are the op functions themselves, attached from one table
(``dlsys.tensor_methods``); every array operation is a device method (no device code here).
Creation functions (``ds.tensor``, ``ds.zeros``, ...) live in ``dlsys.creation``, graph
recording in ``dlsys.autograd``. dtype rules: see ``dlsys.dtypes``.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend as _backend
from . import dtypes as _dt

__all__ = ["Tensor"]


class Tensor:
    """An n-d array with autograd. ``Tensor(data, ...)`` copies like ``ds.tensor``."""

    __slots__ = ("_data", "device", "_requires_grad", "_grad", "_op", "_inputs", "_hooks",
                 "_post_hooks", "__weakref__")
    # NOTE: comparisons return Tensors, so the default identity hash must be restored explicitly
    # (optimizers and hooks keep tensors in dicts and sets).
    __hash__ = object.__hash__
    __array_priority__ = 1000  # numpy array <op> Tensor defers to Tensor's reflected operator

    def __init__(self, data=None, dtype=None, device=None, requires_grad=False):
        t = _cr.tensor([] if data is None else data, dtype=dtype, device=device,
                       requires_grad=requires_grad)
        self._data = t._data
        self.device = t.device
        self._requires_grad = t._requires_grad
        self._grad = None
        self._op = None
        self._inputs = ()
        self._hooks = None
        self._post_hooks = None

    @staticmethod
    def from_array(array, device=None, requires_grad=False) -> Tensor:
        """Wrap a backend array of ``device`` (default: cpu), without a copy."""
        dev = _backend.as_device(device)
        t = _ag.wrap(array, dev)
        if requires_grad:
            t.requires_grad = True
        return t

    # -- attributes ----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return len(self._data.shape)

    def size(self, dim=None):
        """The shape (PyTorch's ``size()``), or the size of dim ``dim``."""
        shape = self._data.shape
        if dim is None:
            return shape
        if not shape:
            raise IndexError(f"size({dim}): a 0-d tensor has no dimensions")
        return shape[_ops.wrap_dim(dim, len(shape), "size")]

    def numel(self) -> int:
        """The number of elements."""
        return math.prod(self._data.shape)

    nelement = numel

    def element_size(self) -> int:
        return self._data.dtype.itemsize

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def dim(self) -> int:
        return self.ndim

    @property
    def is_leaf(self) -> bool:
        return self._op is None

    @property
    def grad_fn(self):
        return self._op

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        value = bool(value)
        if self._op is not None and not value:
            raise RuntimeError("you can only change requires_grad flags of leaf variables; use "
                               "detach() to get a tensor that does not require grad")
        if value and self._data.dtype.kind != "f":
            raise TypeError(f"only floating point tensors can require gradients, got dtype "
                            f"{self._data.dtype}")
        self._requires_grad = value

    def requires_grad_(self, requires_grad=True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, g):
        if g is not None:
            if not isinstance(g, Tensor):
                raise TypeError(f"assigned grad must be a Tensor or None, got {type(g).__name__}")
            if g.shape != self.shape:
                raise ValueError(f"assigned grad has shape {g.shape}, expected {self.shape}")
            if g.dtype != self.dtype:
                raise TypeError(f"assigned grad has dtype {g.dtype}, expected {self.dtype}")
            if g.device != self.device:
                raise ValueError(f"assigned grad is on {g.device}, expected {self.device}")
        self._grad = g

    @property
    def data(self) -> Tensor:
        """A detached Tensor sharing storage (assigning ``t.data = x`` swaps the storage)."""
        return _ag.wrap(self._data, self.device)

    @data.setter
    def data(self, other):
        if not isinstance(other, Tensor):
            raise TypeError(f"data must be a Tensor, got {type(other).__name__}")
        self._data = other._data
        self.device = other.device

    def detach(self) -> Tensor:
        return _ag.wrap(self._data, self.device)

    def detach_(self) -> Tensor:
        self._op, self._inputs, self._requires_grad = None, (), False
        return self

    def __reduce_ex__(self, protocol):
        # NOTE: pickle / deepcopy by value: host data, device name, requires_grad and .grad (not
        # the graph, and never a copy of the Device object itself)
        grad = None if self._grad is None else self._grad.__reduce_ex__(protocol)[1]
        index = getattr(self.device, "index", None)
        name = self.device.name if index is None else f"{self.device.name}:{index}"
        return (_cr.from_state, (np.array(self.device.to_numpy(self._data)), name,
                                 self._requires_grad, grad))

    # -- storage: the public way for other libraries to reach a tensor's memory ----------------
    # NOTE: on the CPU that way is ``t.numpy()`` / ``np.asarray(t)``: the storage itself (no
    # copy, writable), through __array__. No __array_interface__: numpy would prefer it to
    # __array__ and build a new view per call (7x slower for np.asarray).
    @property
    def __cuda_array_interface__(self):
        """The CUDA array interface of a CUDA tensor's device memory (Numba, CuPy, PyTorch
        read it without a copy). Absent on the CPU."""
        iface = getattr(self._data, "__cuda_array_interface__", None)
        if iface is None:
            raise AttributeError(f"__cuda_array_interface__: a tensor on {self.device} has no "
                                 "CUDA memory")
        return iface

    def data_ptr(self) -> int:
        """The address of the first element (as ``torch.Tensor.data_ptr``)."""
        return self.device.data_ptr(self._data)

    def stride(self, dim=None):
        """The strides in elements (as ``torch.Tensor.stride``), or the stride of ``dim``."""
        strides = self.device.strides(self._data)
        return strides if dim is None else strides[dim]

    def is_contiguous(self) -> bool:
        """True when the elements lie in C order without gaps (size-1 dims aside)."""
        expect = 1
        for n, st in zip(reversed(self.shape), reversed(self.stride()), strict=True):
            if n != 1 and st != expect:
                return False
            expect *= n
        return True

    def is_set_to(self, other) -> bool:
        """True when both tensors are the same memory: device, dtype, address, shape and
        strides all equal (as ``torch.Tensor.is_set_to``)."""
        if not isinstance(other, Tensor):
            raise TypeError(f"is_set_to: expected a Tensor, got {type(other).__name__}")
        if self._data is other._data:
            return True
        return (self.device == other.device and self.dtype == other.dtype
                and self.shape == other.shape and self.stride() == other.stride()
                and self.data_ptr() == other.data_ptr())

    # -- conversion ----------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """On the CPU the underlying array itself (shares memory); elsewhere a host copy."""
        return self.device.to_numpy(self._data)

    def __array__(self, dtype=None, copy=None):
        a = self.device.to_numpy(self._data)
        if dtype is not None and a.dtype != dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"only one element tensors can be converted to Python scalars, "
                             f"got shape {self.shape}")
        return self.device.to_numpy(self._data).reshape(-1)[0].item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):  # range(t), [..][t], as torch: one-element integer tensors only
        if self._data.dtype.kind not in "iub" or self.numel() != 1:
            raise TypeError(f"only integer tensors of a single element can be converted to an "
                            f"index, got dtype {self.dtype} and shape {self.shape}")
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        body = np.array2string(np.asarray(self), separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype != _dt.float32 and self.dtype != _dt.int64 and self.dtype != _dt.bool_:
            extra += f", dtype={self.dtype}"
        if self.device.name != "cpu":
            extra += f", device='{self.device}'"
        if self._op is not None:
            name = getattr(self._op, "name", None) if type(self._op).__name__ == "_Freed" \
                else None
            extra += f", grad_fn=<{name or type(self._op).__name__}>"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def to(self, *args, **kwargs) -> Tensor:
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)`` (other's dtype
        and device) or keywords; differentiable. Returns self when nothing changes."""
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        kwargs.pop("non_blocking", None)  # NOTE: accepted, as torch's; copies are synchronous
        if kwargs:
            raise TypeError(f"to() got unexpected keywords {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, _backend.Device) or (isinstance(a, str) and a.split(":")[0] in
                                                    ("cpu", "cuda")):
                device = a
            else:
                dtype = a
        t = self
        if dtype is not None:
            dtype = _dt.as_dtype(dtype)
            if dtype != t.dtype:
                t = _sh.cast(t, dtype)
        if device is not None:
            device = _backend.as_device(device)
            if device != t.device:
                t = _sh.to_device(t, device)
        return t

    def cpu(self) -> Tensor:
        return self.to(_backend.cpu())

    def cuda(self, index=0) -> Tensor:
        return self.to(_backend.registry.cuda(index))

    def float(self) -> Tensor:
        return self.to(_dt.float32)

    def double(self) -> Tensor:
        return self.to(_dt.float64)

    def half(self) -> Tensor:
        return self.to(_dt.float16)

    def long(self) -> Tensor:
        return self.to(_dt.int64)

    def int(self) -> Tensor:  # NOTE: shadows nothing: methods see the builtins, not the class
        return self.to(_dt.int32)

    def bool(self) -> Tensor:
        return self.to(_dt.bool_)

    # -- autograd ------------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (``autograd.backward``)."""
        _ag.backward(self, gradient, retain_graph, create_graph)

    def register_hook(self, fn) -> _ag.RemovableHandle:
        """``fn(grad)`` runs when this tensor's gradient is computed; it may return a
        replacement gradient (same shape and dtype) or None."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._hooks is None:
            self._hooks = {}
        h = _ag.RemovableHandle(self._hooks)
        self._hooks[h._key] = fn
        return h

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` during backward."""
        if self._op is None:
            return
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that doesn't require gradient")

        def keep(g):
            self._grad = g.detach() if self._grad is None else self._grad + g.detach()

        self.register_hook(keep)

    def register_post_accumulate_grad_hook(self, fn) -> _ag.RemovableHandle:
        """``fn(tensor)`` runs once per backward right after this leaf's ``.grad`` is final."""
        if self._op is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf "
                               "tensors")
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._post_hooks is None:
            self._post_hooks = {}
        h = _ag.RemovableHandle(self._post_hooks)
        self._post_hooks[h._key] = fn
        return h

    # -- in place (no autograd: only on tensors that don't require grad, or under no_grad) -----
    def _check_inplace(self, what):
        if self._requires_grad and _ag.is_grad_enabled():
            kind = "a leaf Variable that requires grad" if self._op is None else \
                "a tensor that is part of the autograd graph"
            raise RuntimeError(f"{what}: {kind} is being used in an in-place operation; wrap it "
                               f"in `with ds.no_grad():` or use .data")

    def _inplace_operand(self, other, what):
        """The one check of every in-place binary op (add_, sub_, mul_, div_): self may be
        written; ``other`` is a Tensor (or numpy array) of self's device, dtype and shape, or a
        scalar self's dtype holds. Returns its array or the scalar (guarantee 6: nothing is
        broadcast or cast in place)."""
        self._check_inplace(what)
        t = type(other)
        # NOTE: the common operands first; _operand's abstract-number checks cost ~1 us
        o = other if t is Tensor or t is int or (t is float and self.dtype.kind == "f") \
            else _ew._operand(self, other, what)
        if isinstance(o, Tensor):
            _ops.check_same(self, o, what)
            if o.shape != self.shape:
                raise ValueError(f"{what}: shapes {self.shape} and {o.shape} differ (in-place "
                                 "ops do not broadcast)")
            return o._data
        return o

    def copy_(self, src) -> Tensor:
        """Copy ``src`` (Tensor on any device, numpy array or scalar; same shape) into self,
        casting to self's dtype. self's storage (and any view of it) is kept. From another
        device the data moves once, straight into self where the layouts allow (a CUDA tensor
        into a compact CPU tensor: one device-to-host copy)."""
        self._check_inplace("copy_")
        if isinstance(src, Tensor):
            if src.shape != self.shape:
                raise ValueError(f"copy_: source shape {src.shape} does not match "
                                 f"destination shape {self.shape}")
            if src.device == self.device:
                self.device.copy_(self._data, src._data)
            else:
                self.device.copy_from(self._data, src._data, src.device)
            return self
        arr = np.asarray(src)
        if arr.shape != self.shape and arr.size == 1:
            arr = np.broadcast_to(arr.reshape(()), self.shape)
        if tuple(arr.shape) != self.shape:
            raise ValueError(f"copy_: source shape {tuple(arr.shape)} does not match "
                             f"destination shape {self.shape}")
        self.device.copy_(self._data, arr)
        return self

    def __setitem__(self, index, value):
        """In-place ``self[index] = value`` (a Tensor, array or scalar); no autograd."""
        self._check_inplace("__setitem__")
        if isinstance(value, Tensor):
            value = value.device.to_numpy(value._data) if value.device != self.device \
                else value._data
        _sh.setitem(self, index, value)

    def fill_(self, value) -> Tensor:
        self._check_inplace("fill_")
        self.device.fill_(self._data, value)
        return self

    def zero_(self) -> Tensor:
        return self.fill_(0)

    def add_(self, other, alpha=1) -> Tensor:
        return self._add_scaled(other, alpha, "add_")

    def sub_(self, other, alpha=1) -> Tensor:
        return self._add_scaled(other, -alpha, "sub_")

    def _add_scaled(self, other, alpha, what):
        o = self._inplace_operand(other, what)
        if type(o) is float or type(o) is int:  # a scalar (_operand returns int or float)
            self.device.scalar_("add", self._data, o if alpha == 1 else o * alpha)
            return self
        if alpha != 1:
            o = self.device.scalar("mul", o, alpha)
        self.device.add_(self._data, o)
        return self

    def mul_(self, other) -> Tensor:
        o = self._inplace_operand(other, "mul_")
        if type(o) is float or type(o) is int:  # a scalar (_operand returns int or float)
            self.device.scalar_("mul", self._data, o)
        else:
            self.device.binary_("mul", self._data, o)
        return self

    def div_(self, other) -> Tensor:
        if self.dtype.kind != "f":
            raise TypeError(f"div_: true division needs a floating tensor, got dtype "
                            f"{self.dtype} (the result would not fit in place)")
        o = self._inplace_operand(other, "div_")
        if type(o) is float or type(o) is int:  # a scalar (_operand returns int or float)
            self.device.scalar_("mul", self._data, 1.0 / o)
        else:
            self.device.binary_("div", self._data, o)
        return self


# NOTE: imported last: autograd and the op modules import Tensor from here, and the methods
# above only look these names up when called. The op methods (x.sum(), x + y, ...) come from
# one table, attached here (see dlsys.tensor_methods).
from . import autograd as _ag  # noqa: E402
from . import creation as _cr  # noqa: E402
from . import ops as _ops  # noqa: E402
from . import tensor_methods as _methods  # noqa: E402
from .ops import elementwise as _ew  # noqa: E402
from .ops import shape as _sh  # noqa: E402

_methods.attach(Tensor)

"""Parameter: a Tensor that a Module registers as learnable."""

from __future__ import annotations

import numpy as np

from dlsys.creation import tensor
from dlsys.tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor with ``requires_grad=True`` that Modules collect in ``parameters()``.

    ``Parameter(t)`` shares ``t``'s storage (like ``torch.nn.Parameter``); other data (numpy
    arrays, lists) is copied as ``ds.tensor`` would.
    """

    __slots__ = ()

    def __new__(cls, data=None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        if not isinstance(data, Tensor):
            data = tensor(data)
        obj = Tensor.from_array(data._data, device=data.device, requires_grad=requires_grad)
        obj.__class__ = cls  # same layout (no new slots), so a Tensor becomes a Parameter
        return obj

    def __init__(self, data=None, requires_grad: bool = True):
        pass  # everything happened in __new__

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        return (Parameter, (Tensor.from_array(self._data, device=self.device),
                            self.requires_grad))

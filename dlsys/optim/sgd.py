"""Stochastic gradient descent (torch.optim.SGD)."""

from __future__ import annotations

from .optimizer import Optimizer, required


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay, exactly
    PyTorch's update. Each parameter is updated by one fused device kernel (the device's "sgd"
    update, ``dlsys.backend.updates``) on the raw arrays: no graph is built and ``.grad`` is not
    modified.
    """

    def __init__(self, params, lr=required, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        super()._validate_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            momentum = group["momentum"]
            for p, g in self._params_with_grad(group):
                state = self.state[p]
                buf = state.get("momentum_buffer")
                first_step = buf is None
                if momentum != 0 and buf is None:
                    buf = state["momentum_buffer"] = self._zeros_like(p)
                p.device.update("sgd", p._data, g._data, None if momentum == 0 else buf._data,
                                group["lr"], momentum, group["weight_decay"], group["nesterov"],
                                group["dampening"], first_step)
        return loss

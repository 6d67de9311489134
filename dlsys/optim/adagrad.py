"""Adagrad (torch.optim.Adagrad, dense gradients)."""

from __future__ import annotations

from dlsys.tensor import Tensor

from .optimizer import Optimizer


class Adagrad(Optimizer):
    """Adagrad as PyTorch: ``sum += g^2``, ``p -= clr * g / (sqrt(sum) + eps)`` with
    ``clr = lr / (1 + (step - 1) * lr_decay)``; ``weight_decay`` adds an L2 term to g. Each
    parameter is updated by one fused device kernel (the device's "adagrad" update).

    As in PyTorch the state (``step`` 0, ``sum`` filled with ``initial_accumulator_value``) is
    made at construction, with the constructor's ``initial_accumulator_value`` for every group
    (PyTorch ignores a group's own value there); parameters of groups added later start from
    their group's value at their first step."""

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, initial_accumulator_value)

    def _init_state(self, p, value):
        state = self.state[p]
        state["step"] = 0
        state["sum"] = Tensor.from_array(p.device.full(tuple(p.shape), value, p.dtype),
                                         device=p.device)

    def _validate_group(self, group):
        super()._validate_group(group)
        for key in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            if group[key] < 0:
                raise ValueError(f"Invalid {key} value: {group[key]}")

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p, g in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    self._init_state(p, group["initial_accumulator_value"])
                state["step"] += 1
                p.device.update("adagrad", p._data, g._data, state["sum"]._data, group["lr"],
                                group["lr_decay"], group["weight_decay"], group["eps"],
                                state["step"])
        return loss

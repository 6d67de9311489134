"""RMSprop (torch.optim.RMSprop)."""

from __future__ import annotations

from .optimizer import Optimizer


class RMSprop(Optimizer):
    """RMSprop as PyTorch: ``square_avg = alpha * square_avg + (1 - alpha) * g^2``; centered
    subtracts the square of a running mean of g; ``momentum`` > 0 keeps a buffer of
    ``g / (sqrt(.) + eps)``; ``weight_decay`` adds an L2 term to g. Each parameter is updated by
    one fused device kernel (the device's "rmsprop" update, ``dlsys.backend.updates``)."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        super()._validate_group(group)
        for key in ("eps", "momentum", "weight_decay", "alpha"):
            if group[key] < 0:
                raise ValueError(f"Invalid {key} value: {group[key]}")

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            momentum, centered = group["momentum"], group["centered"]
            for p, g in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = self._zeros_like(p)
                if momentum > 0 and "momentum_buffer" not in state:
                    state["momentum_buffer"] = self._zeros_like(p)
                if centered and "grad_avg" not in state:
                    state["grad_avg"] = self._zeros_like(p)
                state["step"] += 1
                p.device.update("rmsprop", p._data, g._data, state["square_avg"]._data,
                                state["grad_avg"]._data if centered else None,
                                state["momentum_buffer"]._data if momentum > 0 else None,
                                group["lr"], group["alpha"], group["eps"],
                                group["weight_decay"], momentum, centered)
        return loss

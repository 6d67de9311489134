"""Adam and AdamW (torch.optim.Adam / AdamW, with bias correction)."""

from __future__ import annotations

from .optimizer import Optimizer


class Adam(Optimizer):
    """Adam; ``weight_decay`` adds an L2 term to the gradient (coupled), as in PyTorch.
    Each parameter is updated by one fused device kernel (the device's "adam" update,
    ``dlsys.backend.updates``)."""

    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        super()._validate_group(group)
        b1, b2 = group["betas"]
        if not 0.0 <= b1 < 1.0 or not 0.0 <= b2 < 1.0:
            raise ValueError(f"Invalid beta parameters: {group['betas']}")
        if group["eps"] < 0:
            raise ValueError(f"Invalid epsilon value: {group['eps']}")
        if group["weight_decay"] < 0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p, g in self._params_with_grad(group):
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = self._zeros_like(p)
                    state["exp_avg_sq"] = self._zeros_like(p)
                state["step"] += 1
                p.device.update("adam", p._data, g._data, state["exp_avg"]._data,
                                state["exp_avg_sq"]._data, group["lr"], beta1, beta2,
                                group["eps"], group["weight_decay"], state["step"],
                                self._decoupled)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p -= lr * weight_decay * p`` before the Adam step."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

"""Optimizer update kernels, registered per device.

An optimizer (``dlsys.optim``) looks its update up with ``get(device, name)`` and calls it as
``kernel(device, param, grad, *state, *hyperparameters)`` on raw device arrays: in place on the
parameter and its state, never on the gradient. A new optimizer registers one kernel per device
(``@register("cpu", "rmsprop")`` in ``cpu_kernels_optim.py``, ``@register("cuda", ...)`` in
``cuda/optim.py``) and touches neither ``Device`` nor this module.

Registered now (PyTorch's semantics):

- ``"sgd"``: ``(device, param, grad, momentum_buf, lr, momentum, weight_decay, nesterov,
  dampening, first_step)``; momentum_buf is None when momentum == 0.
- ``"adam"``: ``(device, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
  step, decoupled)``; Adam (decoupled=False) or AdamW (decoupled=True), bias-corrected, step
  the 1-based count of this update.
- ``"rmsprop"``: ``(device, param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps,
  weight_decay, momentum, centered)``; grad_avg is None unless centered, momentum_buf None
  unless momentum > 0.
- ``"adagrad"``: ``(device, param, grad, state_sum, lr, lr_decay, weight_decay, eps, step)``.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["register", "get", "registered"]

_KERNELS: dict[tuple[str, str], Callable] = {}


def register(device_name: str, name: str):
    """Decorator: make ``fn`` the ``name`` update of the devices called ``device_name``."""
    def decorate(fn):
        _KERNELS[(device_name, name)] = fn
        return fn
    return decorate


def get(device, name: str) -> Callable:
    """The ``name`` update kernel of ``device``; NotImplementedError naming both if none."""
    fn = _KERNELS.get((device.name, name))
    if fn is None:
        have = sorted(n for d, n in _KERNELS if d == device.name)
        raise NotImplementedError(f"no {name!r} update kernel for {device} (it has: {have})")
    return fn


def registered(device_name: str) -> list[str]:
    return sorted(n for d, n in _KERNELS if d == device_name)

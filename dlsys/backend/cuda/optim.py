"""The CUDA device's optimizer updates ("sgd", "adam", "rmsprop", "adagrad" in
``dlsys.backend.updates``): PyTorch's
semantics, one fused kernel per parameter, in place on the parameter and its state; the CPU's
``cpu_kernels_optim`` is the reference. Scalars are passed typed as the parameter's dtype."""

from __future__ import annotations

import math

from numba import cuda

from ..device import float16_via_float32
from ..updates import register
from .launch import launch_1d


@cuda.jit
def sgd_kernel(param, grad, buf, lr, momentum, weight_decay, one_minus_damp, use_momentum,
               nesterov, first_step, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        d = grad[i] + weight_decay * param[i]
        if use_momentum:
            b = d if first_step else momentum * buf[i] + one_minus_damp * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        param[i] -= lr * d


@cuda.jit
def adam_kernel(param, grad, m, v, decay, weight_decay, one_minus_b1, beta2, one_minus_b2, eps,
                step_size, bc2_sqrt, n):
    # decay multiplies param first (AdamW: 1 - lr * wd, else 1); weight_decay is added to the
    # gradient (Adam: wd, AdamW: 0)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p = param[i] * decay
        g = grad[i] + weight_decay * p
        mi = m[i] + one_minus_b1 * (g - m[i])
        vi = beta2 * v[i] + one_minus_b2 * g * g
        m[i] = mi
        v[i] = vi
        param[i] = p - step_size * (mi / (math.sqrt(vi) / bc2_sqrt + eps))


@cuda.jit
def rmsprop_kernel(param, grad, sq, gavg, buf, alpha, one_minus_alpha, w, one_minus_w, eps,
                   weight_decay, momentum, lr, centered, use_momentum, n):
    # gavg / buf are stand-ins (never read) unless centered / use_momentum; w = 1 - alpha is
    # torch.lerp_'s weight and one_minus_w its complement, both in the parameter's dtype
    decay = weight_decay != 0
    low = w < 0.5
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i] + weight_decay * param[i] if decay else grad[i]
        s = sq[i] * alpha + one_minus_alpha * g * g
        sq[i] = s
        if centered:
            a = gavg[i]
            a = a + w * (g - a) if low else g - (g - a) * one_minus_w
            gavg[i] = a
            avg = math.sqrt(s - a * a) + eps
        else:
            avg = math.sqrt(s) + eps
        if use_momentum:
            b = buf[i] * momentum + g / avg
            buf[i] = b
            param[i] -= lr * b
        else:
            param[i] -= lr * (g / avg)


@cuda.jit
def adagrad_kernel(param, grad, state_sum, clr, weight_decay, eps, n):
    decay = weight_decay != 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        g = grad[i] + weight_decay * param[i] if decay else grad[i]
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] -= clr * (g / (math.sqrt(s) + eps))


@register("cuda", "sgd")
@float16_via_float32(0, 1, 2, inplace=(0, 2))
def sgd_update(device, param, grad, momentum_buf, lr, momentum, weight_decay, nesterov,
               dampening, first_step):
    p = device.inplace_flat(param, "sgd")
    g = device.flat(grad if grad.dtype == param.dtype else device.astype(grad, param.dtype))
    b = p if momentum_buf is None else device.inplace_flat(momentum_buf, "sgd")
    t = param.dtype.type
    launch_1d(sgd_kernel, p.size, p, g, b, t(lr), t(momentum), t(weight_decay), t(1 - dampening),
              momentum != 0, bool(nesterov), bool(first_step), p.size)


@register("cuda", "adam")
@float16_via_float32(0, 1, 2, 3, inplace=(0, 2, 3))
def adam_update(device, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                step, decoupled):
    p = device.inplace_flat(param, "adam")
    g = device.flat(grad if grad.dtype == param.dtype else device.astype(grad, param.dtype))
    m = device.inplace_flat(exp_avg, "adam")
    v = device.inplace_flat(exp_avg_sq, "adam")
    t = param.dtype.type
    decay, wd = (1 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
    launch_1d(adam_kernel, p.size, p, g, m, v, t(decay), t(wd), t(1 - beta1), t(beta2),
              t(1 - beta2), t(eps), t(lr / (1 - beta1 ** step)), t(math.sqrt(1 - beta2 ** step)),
              p.size)


def _grad_as(device, grad, param):
    return device.flat(grad if grad.dtype == param.dtype else device.astype(grad, param.dtype))


@register("cuda", "rmsprop")
@float16_via_float32(0, 1, 2, 3, 4, inplace=(0, 2, 3, 4))
def rmsprop_update(device, param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps,
                   weight_decay, momentum, centered):
    p = device.inplace_flat(param, "rmsprop")
    sq = device.inplace_flat(square_avg, "rmsprop")
    ga = p if grad_avg is None else device.inplace_flat(grad_avg, "rmsprop")
    b = p if momentum_buf is None else device.inplace_flat(momentum_buf, "rmsprop")
    t = param.dtype.type
    w = t(1 - alpha)
    launch_1d(rmsprop_kernel, p.size, p, _grad_as(device, grad, param), sq, ga, b, t(alpha), w,
              w, t(1) - w, t(eps), t(weight_decay), t(momentum), t(lr), bool(centered),
              momentum > 0, p.size)


@register("cuda", "adagrad")
@float16_via_float32(0, 1, 2, inplace=(0, 2))
def adagrad_update(device, param, grad, state_sum, lr, lr_decay, weight_decay, eps, step):
    p = device.inplace_flat(param, "adagrad")
    s = device.inplace_flat(state_sum, "adagrad")
    t = param.dtype.type
    launch_1d(adagrad_kernel, p.size, p, _grad_as(device, grad, param), s,
              t(lr / (1 + (step - 1) * lr_decay)), t(weight_decay), t(eps), p.size)

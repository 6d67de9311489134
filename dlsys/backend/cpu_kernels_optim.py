"""CPU optimizer updates (PyTorch semantics), in place on param and state; grad is read only.

Each ``*_ref`` is the numpy reference; the Numba kernel beside it computes the same; the
``*_fast`` wrappers use the kernel for compact float32/float64 arrays, else the reference.
Both kernels measured faster than their references (benchmarks/kernels.py). The ``*_fast``
wrappers are the CPU's "sgd", "adam", "rmsprop" and "adagrad" updates
(``dlsys.backend.updates``).
"""

from __future__ import annotations

import math

import numpy as np

from .cpu_kernels import jit, numba_ok
from .updates import register


def sgd_ref(param, grad, buf, lr, momentum, weight_decay, nesterov, dampening, first_step):
    """torch.optim.SGD for one tensor. ``buf`` is None when momentum == 0."""
    d = grad
    if weight_decay != 0:
        d = grad + weight_decay * param
    if momentum != 0:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    param -= lr * d


def adam_ref(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    """torch.optim.Adam (decoupled=False) / AdamW (decoupled=True) for one tensor;
    ``step`` is the 1-based count of this update (bias corrections use it)."""
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    # NOTE: PyTorch's lerp_(grad, 1 - beta1), i.e. m + (1 - beta1) * (grad - m).
    m += (1 - beta1) * (grad - m)
    v *= beta2
    v += (1 - beta2) * grad * grad
    bc1 = 1 - beta1 ** step
    bc2_sqrt = math.sqrt(1 - beta2 ** step)
    denom = np.sqrt(v) / bc2_sqrt + eps
    param -= (lr / bc1) * (m / denom)


def _lerp_(a, end, w):
    """torch.lerp_ (its two formulas, for weights below and from 0.5 on), the weight in a's
    dtype as torch's kernel has it."""
    w = a.dtype.type(w)
    if w < 0.5:
        a += w * (end - a)
    else:
        a[...] = end - (end - a) * (a.dtype.type(1) - w)


def rmsprop_ref(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum,
                centered):
    """torch.optim.RMSprop for one tensor; ``grad_avg`` is None unless centered, ``buf`` None
    unless momentum > 0."""
    g = grad + weight_decay * param if weight_decay != 0 else grad
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        _lerp_(grad_avg, g, 1 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg)
    else:
        avg = np.sqrt(square_avg)
    avg += eps
    if momentum > 0:
        buf *= momentum
        buf += g / avg
        param -= lr * buf
    else:
        param -= lr * (g / avg)


def adagrad_ref(param, grad, state_sum, lr, lr_decay, weight_decay, eps, step):
    """torch.optim.Adagrad for one tensor (dense gradients); ``step`` is the 1-based count of
    this update."""
    g = grad + weight_decay * param if weight_decay != 0 else grad
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += g * g
    param -= clr * (g / (np.sqrt(state_sum) + eps))


# NOTE: the wrappers pass every scalar as the array's dtype (np.float32(lr), ...), so float32
# updates run in float32 like the references (and vectorise); literals are avoided in the
# kernels because a Python float literal would promote float32 arithmetic to float64.
# No fastmath: the update order is part of PyTorch's semantics and must not be reassociated.
@jit()
def sgd_nb(param, grad, buf, lr, momentum, weight_decay, one_minus_damp, use_momentum, nesterov,
           first_step):
    """``buf`` is ignored (pass any array of param's dtype) when use_momentum is False."""
    decay = weight_decay != 0  # NOTE: 0 * inf would be nan: skip the term, as PyTorch does
    for i in range(param.size):
        d = grad[i] + weight_decay * param[i] if decay else grad[i]
        if use_momentum:
            b = d if first_step else momentum * buf[i] + one_minus_damp * d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        param[i] -= lr * d


@jit()
def adam_nb(param, grad, m, v, decay, weight_decay, one_minus_b1, beta2, one_minus_b2, eps,
            step_size, bc2_sqrt):
    """decay multiplies param first (AdamW: 1 - lr * wd, else 1); weight_decay is added to the
    gradient (Adam: wd, AdamW: 0)."""
    # NOTE: np.sqrt is an LLVM intrinsic (vectorised); math.sqrt is a libm call per element.
    l2 = weight_decay != 0  # NOTE: 0 * inf would be nan: skip the term, as PyTorch does
    for i in range(param.size):
        p = param[i] * decay
        g = grad[i] + weight_decay * p if l2 else grad[i]
        mi = m[i] + one_minus_b1 * (g - m[i])
        vi = beta2 * v[i] + one_minus_b2 * g * g
        m[i] = mi
        v[i] = vi
        param[i] = p - step_size * (mi / (np.sqrt(vi) / bc2_sqrt + eps))


@jit()
def rmsprop_nb(param, grad, sq, gavg, buf, alpha, one_minus_alpha, w, one_minus_w, eps,
               weight_decay, momentum, lr, centered, use_momentum):
    """gavg / buf are ignored (pass any array of param's dtype) unless centered / use_momentum;
    w = 1 - alpha is lerp's weight, one_minus_w its complement as torch computes it."""
    decay = weight_decay != 0
    low = w < 0.5
    for i in range(param.size):
        g = grad[i] + weight_decay * param[i] if decay else grad[i]
        s = sq[i] * alpha + one_minus_alpha * g * g
        sq[i] = s
        if centered:
            a = gavg[i]
            a = a + w * (g - a) if low else g - (g - a) * one_minus_w
            gavg[i] = a
            avg = np.sqrt(s - a * a) + eps
        else:
            avg = np.sqrt(s) + eps
        if use_momentum:
            b = buf[i] * momentum + g / avg
            buf[i] = b
            param[i] -= lr * b
        else:
            param[i] -= lr * (g / avg)


@jit()
def adagrad_nb(param, grad, state_sum, clr, weight_decay, eps):
    decay = weight_decay != 0
    for i in range(param.size):
        g = grad[i] + weight_decay * param[i] if decay else grad[i]
        s = state_sum[i] + g * g
        state_sum[i] = s
        param[i] -= clr * (g / (np.sqrt(s) + eps))


def sgd_fast(param, grad, buf, lr, momentum, weight_decay, nesterov, dampening, first_step):
    if not numba_ok(param, grad, *(() if buf is None else (buf,))):
        return sgd_ref(param, grad, buf, lr, momentum, weight_decay, nesterov, dampening,
                       first_step)
    t = param.dtype.type
    b = param if buf is None else buf  # NOTE: a stand-in, never read when momentum == 0
    sgd_nb(param.reshape(-1), grad.reshape(-1), b.reshape(-1), t(lr), t(momentum),
           t(weight_decay), t(1 - dampening), momentum != 0, bool(nesterov), bool(first_step))


def adam_fast(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled):
    if not numba_ok(param, grad, m, v):
        return adam_ref(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
                        decoupled)
    t = param.dtype.type
    decay, wd = (1 - lr * weight_decay, 0.0) if decoupled else (1.0, weight_decay)
    adam_nb(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), t(decay), t(wd),
            t(1 - beta1), t(beta2), t(1 - beta2), t(eps), t(lr / (1 - beta1 ** step)),
            t(math.sqrt(1 - beta2 ** step)))


def rmsprop_fast(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum,
                 centered):
    extra = tuple(a for a in (grad_avg, buf) if a is not None)
    if not numba_ok(param, grad, square_avg, *extra):
        return rmsprop_ref(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                           momentum, centered)
    t = param.dtype.type
    w = t(1 - alpha)
    flat = param.reshape(-1)
    rmsprop_nb(flat, grad.reshape(-1), square_avg.reshape(-1),
               flat if grad_avg is None else grad_avg.reshape(-1),
               flat if buf is None else buf.reshape(-1), t(alpha), w, w, t(1) - w, t(eps),
               t(weight_decay), t(momentum), t(lr), bool(centered), momentum > 0)


def adagrad_fast(param, grad, state_sum, lr, lr_decay, weight_decay, eps, step):
    if not numba_ok(param, grad, state_sum):
        return adagrad_ref(param, grad, state_sum, lr, lr_decay, weight_decay, eps, step)
    t = param.dtype.type
    adagrad_nb(param.reshape(-1), grad.reshape(-1), state_sum.reshape(-1),
               t(lr / (1 + (step - 1) * lr_decay)), t(weight_decay), t(eps))


@register("cpu", "sgd")
def sgd_update(device, param, grad, momentum_buf, lr, momentum, weight_decay, nesterov,
               dampening, first_step):
    sgd_fast(param, grad, momentum_buf, lr, momentum, weight_decay, nesterov, dampening,
             first_step)


@register("cpu", "adam")
def adam_update(device, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                step, decoupled):
    adam_fast(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step,
              decoupled)


@register("cpu", "rmsprop")
def rmsprop_update(device, param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps,
                   weight_decay, momentum, centered):
    rmsprop_fast(param, grad, square_avg, grad_avg, momentum_buf, lr, alpha, eps, weight_decay,
                 momentum, centered)


@register("cpu", "adagrad")
def adagrad_update(device, param, grad, state_sum, lr, lr_decay, weight_decay, eps, step):
    adagrad_fast(param, grad, state_sum, lr, lr_decay, weight_decay, eps, step)

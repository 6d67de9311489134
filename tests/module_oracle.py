"""PyTorch as the oracle of dlsys modules: build both, copy torch's weights into dlsys through
``load_state_dict`` (so the state_dict keys must be torch's), run the same input, backpropagate
the same upstream weights, and compare the outputs and every gradient."""

from __future__ import annotations

import numpy as np

import dlsys as ds

TOL = {np.float32: (2e-5, 2e-5), np.float64: (1e-10, 1e-10)}


def devices():
    return ["cpu"] + (["cuda"] if ds.cuda_is_available() else [])


def copy_weights(dmod, tmod):
    """torch's state_dict into the dlsys module; the keys (and their order) must be equal."""
    sd = tmod.state_dict()
    assert list(dmod.state_dict()) == list(sd), (list(dmod.state_dict()), list(sd))
    dmod.load_state_dict({k: v.detach().cpu().numpy() for k, v in sd.items()})


def flat_outputs(out):
    """The Tensors of a module's output (tuples of tensors / None, nested one level)."""
    res = []
    for o in out if isinstance(out, tuple) else (out,):
        if isinstance(o, tuple):
            res.extend(flat_outputs(o))
        elif o is not None:
            res.append(o)
    return res


def compare(torch, dmod, tmod, inputs, dtype=np.float64, device="cpu", tol=None, call=None,
            grad_inputs=True):
    """Run ``call(module, *inputs)`` (default ``module(*inputs)``) on both; ``inputs`` are numpy
    arrays (float ones get gradients) or other values passed as they are. Compares outputs,
    input gradients and parameter gradients. Returns the dlsys outputs."""
    rtol, atol = tol or TOL[dtype]
    tdt = {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    tmod = tmod.to(tdt)
    tmod.zero_grad(set_to_none=True)
    dmod = dmod.to(dtype).to(device)
    dmod.zero_grad(set_to_none=True)
    copy_weights(dmod, tmod)
    call = call or (lambda m, *a: m(*a))
    din, tin = [], []
    for a in inputs:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            a = a.astype(dtype)
            din.append(ds.tensor(a, dtype=dtype, device=device, requires_grad=grad_inputs))
            tin.append(torch.tensor(a, requires_grad=grad_inputs))
        elif isinstance(a, np.ndarray):
            din.append(ds.tensor(a, device=device))
            tin.append(torch.tensor(a))
        else:
            din.append(a)
            tin.append(a)
    douts = flat_outputs(call(dmod, *din))
    touts = flat_outputs(call(tmod, *tin))
    assert len(douts) == len(touts)
    rng = np.random.default_rng(7)
    dloss, tloss = 0, 0
    for d, t in zip(douts, touts, strict=True):
        assert tuple(d.shape) == tuple(t.shape), (d.shape, t.shape)
        np.testing.assert_allclose(d.numpy(), t.detach().numpy(), rtol=rtol, atol=atol)
        if t.requires_grad:
            w = rng.standard_normal(t.shape).astype(dtype)
            dloss = dloss + (d * ds.tensor(w, dtype=dtype, device=device)).sum()
            tloss = tloss + (t * torch.tensor(w)).sum()
    dloss.backward()
    tloss.backward()
    for d, t in zip(din, tin, strict=True):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            np.testing.assert_allclose(d.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol)
    tparams = dict(tmod.named_parameters())
    dparams = dict(dmod.named_parameters())
    assert list(dparams) == list(tparams)
    for name, tp in tparams.items():
        if tp.grad is None:
            assert dparams[name].grad is None or not np.any(dparams[name].grad.numpy()), name
            continue
        np.testing.assert_allclose(dparams[name].grad.numpy(), tp.grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)
    return douts

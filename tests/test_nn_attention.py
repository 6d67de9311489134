"""nn.MultiheadAttention against torch.nn.MultiheadAttention: self- and cross-attention, kdim/vdim,
bool and float masks, key padding, batch_first, unbatched, averaged and per-head weights,
float32 and float64, cpu and the CUDA simulator; dropout; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from module_oracle import compare, devices

import dlsys as ds
from dlsys import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

RNG = np.random.default_rng(0)
E, H, L, S, N = 8, 2, 5, 4, 3


def pair(**kw):
    torch.manual_seed(0)
    tm = tnn.MultiheadAttention(E, H, **kw)
    with torch.no_grad():  # non-zero biases (torch initialises them to zero)
        for name, p in tm.named_parameters():
            if "bias" in name:
                p.copy_(torch.randn(p.shape))
    return nn.MultiheadAttention(E, H, **kw), tm


def causal(n):
    return np.triu(np.ones((n, n), dtype=bool), 1)


# NOTE: the CUDA simulator runs each kernel thread as a Python thread: two cases there
CASES = [(d, dt, bf, nw, av) for d in devices() for dt in (np.float32, np.float64)
         for bf in (False, True) for nw, av in ((True, True), (True, False), (False, True))
         if d == "cpu" or (dt == np.float32 and nw and bf != av)]


@pytest.mark.parametrize("device,dtype,batch_first,need_weights,average", CASES)
def test_self_attention_with_causal_mask(batch_first, need_weights, average, dtype, device):
    dm, tm = pair(batch_first=batch_first)
    x = RNG.standard_normal((N, L, E) if batch_first else (L, N, E))

    def call(m, x, mask):
        return m(x, x, x, attn_mask=mask, need_weights=need_weights,
                 average_attn_weights=average, is_causal=True)

    out = compare(torch, dm, tm, [x, causal(L)], dtype, device, call=call)
    assert len(out) == (2 if need_weights else 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("kw", [dict(), dict(bias=False), dict(kdim=6, vdim=3)])
def test_cross_attention_masks_and_padding(kw, dtype):
    dm, tm = pair(**kw)
    q = RNG.standard_normal((L, N, E))
    k = RNG.standard_normal((S, N, kw.get("kdim", E)))
    v = RNG.standard_normal((S, N, kw.get("vdim", E)))
    pad = np.zeros((N, S), dtype=bool)
    pad[0, -1] = pad[2, :2] = True
    float_mask = RNG.standard_normal((L, S))
    per_head = RNG.standard_normal((N * H, L, S)) > 0.8
    per_head[..., 0] = False  # every row keeps a key

    compare(torch, dm, tm, [q, k, v], dtype)
    for args in ([pad, float_mask], [pad, per_head], [None, float_mask]):
        def call(m, q, k, v, kpm=args[0], am=args[1]):
            kpm = None if kpm is None else (ds.tensor(kpm) if m is dm else torch.tensor(kpm))
            if am.dtype == bool:
                am = ds.tensor(am) if m is dm else torch.tensor(am)
            else:
                am = ds.tensor(am, dtype=dtype) if m is dm else torch.tensor(am.astype(dtype))
            return m(q, k, v, key_padding_mask=kpm, attn_mask=am)

        compare(torch, dm, tm, [q, k, v], dtype, call=call)


def test_unbatched_state_dict_and_key_value_different():
    dm, tm = pair()
    assert list(dm.state_dict()) == list(tm.state_dict()) == [
        "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    q, kv = RNG.standard_normal((L, E)), RNG.standard_normal((S, E))
    compare(torch, dm, tm, [q, kv, kv], np.float64)
    compare(torch, dm, tm, [q, kv, kv, np.array([False, True, False, False])], np.float64,
            call=lambda m, q, k, v, p: m(q, k, v, key_padding_mask=p))
    dk, tk = pair(kdim=5, vdim=5)
    assert list(dk.state_dict()) == list(tk.state_dict())


def test_init_matches_torch_statistics():
    m = nn.MultiheadAttention(64, 4)
    bound = np.sqrt(6.0 / (64 + 3 * 64))  # xavier_uniform_ on (3E, E)
    w = m.in_proj_weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert not np.any(m.in_proj_bias.numpy()) and not np.any(m.out_proj.bias.numpy())


def test_dropout_train_and_eval():
    ds.manual_seed(0)
    m = nn.MultiheadAttention(E, H, dropout=0.5, batch_first=True)
    x = ds.randn(N, L, E)
    ds.manual_seed(1)
    a, wa = m(x, x, x)
    ds.manual_seed(1)
    b, _ = m(x, x, x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.any(wa.numpy() == 0)  # the returned weights are the dropped-out ones, as torch's
    m.eval()
    c, wc = m(x, x, x)
    np.testing.assert_allclose(wc.numpy().sum(-1), 1.0, rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    m = nn.MultiheadAttention(E, H)
    x = ds.randn(L, N, E)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        m(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="2D attn_mask"):
        m(x, x, x, attn_mask=ds.tensor(causal(L + 1)))
    with pytest.raises(ValueError, match="key_padding_mask of shape"):
        m(x, x, x, key_padding_mask=ds.tensor(np.zeros((L, N), dtype=bool)))
    with pytest.raises(ValueError, match="do not fit"):
        m(x, x, ds.randn(L, N, E + 1))
    with pytest.raises(TypeError, match="bool and floating"):
        m(x, x, x, attn_mask=ds.tensor(np.zeros((L, L), dtype=np.int64)))
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        nn.MultiheadAttention(E, H, add_bias_kv=True)


def test_gradcheck():
    from gradcheck import gradcheck

    ds.manual_seed(0)
    m = nn.MultiheadAttention(4, 2, batch_first=True).double()
    mask = ds.tensor(np.triu(np.ones((3, 3), bool), 1))
    assert gradcheck(lambda q, kv: m(q, kv, kv, attn_mask=mask)[0],
                     RNG.standard_normal((2, 3, 4)), RNG.standard_normal((2, 3, 4))) < 1e-6

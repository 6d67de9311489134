"""torch as the oracle: shape ops and views (transpose swaps two dims, permute, .T, .mT, view,
expand, repeat, flip, roll, split, chunk, unbind, squeeze/unsqueeze/flatten, stack/cat),
F.pad, einsum; forward and input gradients in float32 and float64; the errors of issue 11
(axes out of range raise IndexError naming the axis and the number of dims)."""

from __future__ import annotations

import numpy as np
import pytest
from torch_oracle import DEVICES, R, check, check_raises

torch = pytest.importorskip("torch")

X = R(2, 3, 4)
CASES = {
    "transpose_2d_swaps": (lambda L, x: (x.transpose(0, 1), x.transpose(1, 0), x.T, x.t()),
                           (R(3, 4),)),
    "transpose_3d": (lambda L, x: (x.transpose(0, 2), x.transpose(-1, 1), L.transpose(x, 0, 1),
                                   x.swapaxes(0, 1)), (X,)),
    "transpose_kw": (lambda L, x: x.transpose(dim0=2, dim1=0), (X,)),
    "permute": (lambda L, x: (x.permute(2, 0, 1), x.permute((1, 2, 0)), L.permute(x, (0, 2, 1))),
                (X,)),
    "T_mT": (lambda L, x: (x.mT, x.T, x[0].T, x[0, 0].T), (X,)),
    "movedim": (lambda L, x: (x.movedim(0, 2), L.movedim(x, -1, 0)), (X,)),
    "reshape_view": (lambda L, x: (x.reshape(6, 4), x.view(-1), x.view(2, 12), x.reshape((4, -1)),
                                   x.view(4, 3, 2)), (X,)),
    "view_of_a_transpose_where_possible": (lambda L, x: x.transpose(0, 1).view(3, 2, 2, 2), (X,)),
    "contiguous_clone": (lambda L, x: (x.transpose(0, 2).contiguous(), x.clone() * 2), (X,)),
    "expand": (lambda L, x: (x.expand(2, 3, 4), x.expand(5, -1, 4), x.expand_as(L.zeros(2, 3, 4))
                             if hasattr(x, "expand_as") else x.expand(2, 3, 4)), (R(3, 1),)),
    "broadcast_to": (lambda L, x: L.broadcast_to(x, (2, 3, 4)), (R(3, 1),)),
    "repeat": (lambda L, x: (x.repeat(2, 2), x.repeat(2, 1, 3), x.repeat(1, 1)), (R(2, 3),)),
    "flip": (lambda L, x: (x.flip(0), x.flip((0, 2)), L.flip(x, [-1])), (X,)),
    "roll": (lambda L, x: (x.roll(1), x.roll(2, 1), x.roll((1, -1), (0, 2)), x.roll(-5, -1)),
             (X,)),
    "split": (lambda L, x: (x.split(2, 2), x.split([1, 2], 1), L.split(x, 1)), (X,)),
    "chunk": (lambda L, x: (x.chunk(3, 2), x.chunk(2, 1), x.chunk(4, -1), L.chunk(x, 5, 1)),
              (X,)),
    "unbind": (lambda L, x: (x.unbind(1), L.unbind(x), x.unbind(dim=-1)), (X,)),
    "squeeze_unsqueeze": (lambda L, x: (x.squeeze(), x.squeeze(1), x.squeeze(0), x.unsqueeze(0),
                                        x.unsqueeze(-1), x.unsqueeze(dim=2), x.squeeze((1, 3))),
                          (R(2, 1, 3, 1),)),
    "squeeze_0d": (lambda L, x: (x.squeeze(0), x.squeeze(-1), x.squeeze(), x.unsqueeze(0)),
                   (np.array(2.0),)),
    "flatten": (lambda L, x: (x.flatten(), x.flatten(1), x.flatten(0, 1), x.flatten(-2, -1),
                              L.flatten(x, start_dim=1)), (X,)),
    "flatten_0d": (lambda L, x: x.flatten(), (np.array(2.0),)),
    "stack_cat": (lambda L, x, y: (L.stack([x, y]), L.stack([x, y], dim=-1), L.cat([x, y], 1),
                                   L.cat((x, y), dim=-1), L.concatenate([x, y])),
                  (R(2, 3), R(2, 3, seed=1))),
    "pad_constant": (lambda L, x: (L.nn.functional.pad(x, (1, 2)),
                                   L.nn.functional.pad(x, (1, 1, 2, 0), value=-1.5),
                                   L.nn.functional.pad(x, (0, 0, 0, 0, 1, 1))), (X,)),
    "pad_negative_crops": (lambda L, x: L.nn.functional.pad(x, (-1, 2, 1, -1)), (X,)),
    "pad_reflect": (lambda L, x: (L.nn.functional.pad(x, (2, 3), mode="reflect"),
                                  L.nn.functional.pad(x, (1, 2, 2, 1), mode="reflect")), (X,)),
    "pad_replicate_circular": (lambda L, x: (L.nn.functional.pad(x, (2, 1), mode="replicate"),
                                             L.nn.functional.pad(x, (1, 2), mode="circular")),
                               (X,)),
    "einsum_matmul": (lambda L, a, b: (L.einsum("ij,jk->ik", a, b), L.einsum("ij,jk", a, b)),
                      (R(3, 4), R(4, 2))),
    "einsum_batched_attention": (lambda L, q, k: L.einsum("bhqd,bhkd->bhqk", q, k),
                                 (R(2, 2, 3, 4), R(2, 2, 5, 4))),
    "einsum_outer_dot_trace": (lambda L, a, b, m: (L.einsum("i,j->ij", a, b),
                                                   L.einsum("i,i->", a, a),
                                                   L.einsum("ii->", m), L.einsum("ii->i", m),
                                                   L.einsum("ij->ji", m), L.einsum("ij->j", m)),
                               (R(3), R(2), R(3, 3))),
    "einsum_ellipsis_bcast": (lambda L, a, b: (L.einsum("...ij,...jk->...ik", a, b),
                                               L.einsum("bij,bjk->bik", a, a.transpose(1, 2))),
                              (R(2, 3, 4), R(4, 2))),
    "einsum_three_operands": (lambda L, a, b, c: L.einsum("ij,jk,kl->il", a, b, c),
                              (R(2, 3), R(3, 4), R(4, 2))),
    "einsum_list_operands": (lambda L, a, b: L.einsum("bn,anm,bm->ba", [a, b, a[:, :3]]),
                             (R(2, 3), R(4, 3, 3))),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch(name, device):
    fn, arrays = CASES[name]
    check(torch, fn, *arrays, device=device,
          tol={"rtol": 1e-4, "atol": 1e-5} if "einsum" in name else None)


def test_transpose_of_a_2d_tensor_is_not_a_no_op():
    import dlsys as ds

    x = ds.tensor([[1, 2, 3], [4, 5, 6]])
    assert x.transpose(0, 1).tolist() == [[1, 4], [2, 5], [3, 6]]


ERRORS = {  # name: (fn, expected, message); X is 3-D
    "stack_dim_77": (lambda L, x: L.stack([x, x], dim=77), IndexError, r"77.*3 dims"),
    "cat_dim_5": (lambda L, x: L.cat([x, x], 5), IndexError, r"5.*3 dims"),
    "concatenate_axis_kw": (lambda L, x: L.concatenate([x, x], axis=-4), IndexError, r"-4"),
    "unsqueeze_7": (lambda L, x: x.unsqueeze(7), IndexError, r"\[-4, 3\].*7"),
    "flatten_5": (lambda L, x: x.flatten(5), IndexError, r"5.*3 dims"),
    "squeeze_50": (lambda L, x: x.reshape(2, 3, 4, 1).squeeze(50), IndexError, r"50.*4 dims"),
    "squeeze_1_of_0d": (lambda L, x: x.sum().squeeze(1), IndexError, r"\[-1, 0\].*1"),
    "transpose_dim_3": (lambda L, x: x.transpose(0, 3), IndexError, r"3"),
    "transpose_three_dims": (lambda L, x: x.transpose(0, 1, 2), TypeError, None),
    "permute_too_few": (lambda L, x: x.permute(0, 1), ValueError, r"\(0, 1\)"),
    "permute_repeats": (lambda L, x: x.permute(0, 1, 1), ValueError, r"repeats"),
    "permute_out_of_range": (lambda L, x: x.permute(0, 1, 3), IndexError, r"3"),
    "mT_of_1d": (lambda L, x: x[0, 0].mT, ValueError, r"1-D"),
    "view_of_a_transpose": (lambda L, x: x.transpose(0, 2).view(-1), RuntimeError, r"reshape"),
    "view_bad_size": (lambda L, x: x.view(5, -1), ValueError, r"\(5, -1\)"),
    "reshape_bad_size": (lambda L, x: x.reshape(5, 5), ValueError, r"\(5, 5\)"),
    "expand_bad": (lambda L, x: x.expand(3, 3, 4), ValueError, r"\(2, 3, 4\).*\(3, 3, 4\)"),
    "expand_too_few": (lambda L, x: x.expand(3, 4), ValueError, r"at least"),
    "repeat_too_few": (lambda L, x: x.repeat(2, 2), ValueError, r"at least"),
    "flip_dim_3": (lambda L, x: x.flip(3), IndexError, r"3"),
    "roll_dim_5": (lambda L, x: x.roll(1, 5), IndexError, r"5"),
    "roll_misaligned": (lambda L, x: x.roll((1, 2), 0), ValueError, r"differ"),
    "split_bad_sections": (lambda L, x: x.split([1, 1], 1), ValueError, r"sum exactly to 3"),
    "split_size_0": (lambda L, x: x.split(0, 1), ValueError, r"positive"),
    "chunk_0": (lambda L, x: x.chunk(0), ValueError, r"positive"),
    "unbind_dim_3": (lambda L, x: x.unbind(3), IndexError, r"3"),
    "flatten_start_after_end": (lambda L, x: x.flatten(2, 1), ValueError, r"after"),
    "stack_shapes_differ": (lambda L, x: L.stack([x, x[0]]), ValueError, r"same shape"),
    "cat_shapes_differ": (lambda L, x: L.cat([x, x[:, :1, :2]], 1), ValueError, r"differ"),
    "pad_odd": (lambda L, x: L.nn.functional.pad(x, (1,)), ValueError, r"pairs"),
    "pad_reflect_too_wide": (lambda L, x: L.nn.functional.pad(x, (4, 1), mode="reflect"),
                             ValueError, r"less than.*4"),
    "pad_reflect_1d": (lambda L, x: L.nn.functional.pad(x[0, 0], (1, 1), mode="reflect"),
                       ValueError, r"1-D"),
    "pad_reflect_2_dims_of_2d": (lambda L, x: L.nn.functional.pad(x[0], (1, 1, 1, 1),
                                                                  mode="reflect"),
                                 ValueError, r"2-D"),
    "einsum_wrong_rank": (lambda L, x: L.einsum("ij,jk", x, x), ValueError, r"\(2, 3, 4\)"),
    "einsum_sizes_differ": (lambda L, x: L.einsum("ij,jk->ik", x[0], x[0]), ValueError,
                            r"'j'"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_raises_where_torch_raises(name):
    fn, exc, match = ERRORS[name]
    check_raises(torch, fn, X, expected=exc, match=match)


def test_is_contiguous_and_view_sharing_as_torch_on_the_cpu():
    import dlsys as ds

    a = np.arange(24.0).reshape(2, 3, 4)
    for f in (lambda x: x, lambda x: x.transpose(0, 1), lambda x: x[:, :1], lambda x: x[:, 1],
              lambda x: x[..., ::2], lambda x: x.permute(2, 0, 1), lambda x: x.unsqueeze(1)):
        assert f(ds.tensor(a)).is_contiguous() == f(torch.tensor(a)).is_contiguous()
    d, t = ds.tensor(a), torch.tensor(a)
    dv, tv = d.transpose(0, 1).view(3, 2, 2, 2), t.transpose(0, 1).view(3, 2, 2, 2)
    dv[0, 0, 0, 0] = -1.0  # a view: the write reaches the base tensor, as in torch
    tv[0, 0, 0, 0] = -1.0
    np.testing.assert_array_equal(d.numpy(), t.numpy())


@pytest.mark.parametrize("device", [d for d in DEVICES if d != "cpu"])
def test_view_of_a_strided_tensor_on_cuda_raises_instead_of_copying(device):
    import dlsys as ds

    x = ds.zeros(2, 3, 4, device=device)
    assert x[0].view(-1).shape == (12,)
    with pytest.raises(RuntimeError, match="reshape"):
        x[..., ::2].view(-1)

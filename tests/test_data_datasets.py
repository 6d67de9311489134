"""Subset, ConcatDataset, random_split and dlsys.data.transforms (torch as the oracle)."""

import warnings

import numpy as np
import pytest

import dlsys as ds
from dlsys.data import ConcatDataset, Subset, TensorDataset, random_split
from dlsys.data import transforms as T
from dlsys.data.rng import batch_generator


def test_subset_and_concat_index_as_torch():
    torch = pytest.importorskip("torch")
    from torch.utils import data as td

    a, b, c = list(range(5)), list(range(10, 13)), list(range(20, 27))
    ours, theirs = ConcatDataset([a, b, c]), td.ConcatDataset([a, b, c])
    assert len(ours) == len(theirs) == 15
    assert ours.cumulative_sizes == theirs.cumulative_sizes
    for i in range(-15, 15):
        assert ours[i] == theirs[i]
    for bad in (15, -16):
        with pytest.raises((IndexError, ValueError)):
            theirs[bad]
        with pytest.raises((IndexError, ValueError)):
            ours[bad]
    sub, tsub = Subset(c, [6, 0, 3]), td.Subset(c, [6, 0, 3])
    assert [sub[i] for i in range(3)] == [tsub[i] for i in range(3)] == [26, 20, 23]
    assert sub[[0, 2]] == [26, 23] and len(sub) == 3
    assert len(TensorDataset(np.arange(3)) + TensorDataset(np.arange(4))) == 7
    del torch


@pytest.mark.parametrize("n,fractions", [(10, [0.3, 0.3, 0.4]), (7, [0.5, 0.5]),
                                         (11, [0.1] * 10), (3, [0.25, 0.25, 0.25, 0.25])])
def test_random_split_fraction_lengths_as_torch(n, fractions):
    torch = pytest.importorskip("torch")
    from torch.utils import data as td

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both warn for empty splits
        theirs = td.random_split(range(n), fractions, generator=torch.Generator().manual_seed(0))
        ours = random_split(range(n), fractions, generator=0)
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    flat = [s[i] for s in ours for i in range(len(s))]
    assert sorted(flat) == list(range(n))


def test_random_split_is_seeded_disjoint_and_checked():
    x = TensorDataset(np.arange(20))
    a = [s.indices for s in random_split(x, [5, 15], generator=3)]
    b = [s.indices for s in random_split(x, [5, 15], generator=np.random.default_rng(3))]
    assert a == b and sorted(a[0] + a[1]) == list(range(20))
    assert a != [s.indices for s in random_split(x, [5, 15], generator=4)]
    ds.manual_seed(1)
    g1 = [s.indices for s in random_split(x, [10, 10])]
    ds.manual_seed(1)
    assert g1 == [s.indices for s in random_split(x, [10, 10])]
    with pytest.raises(ValueError, match="does not equal"):
        random_split(x, [5, 5])
    with pytest.raises(TypeError, match="generator"):
        random_split(x, [10, 10], generator="seed")
    with pytest.warns(UserWarning, match="index 2"):
        random_split(range(2), [0.5, 0.5, 0.0])


def test_normalize_and_to_tensor_match_torch_bitwise():
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(0).random((3, 5, 6), dtype=np.float32)
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    got = T.Normalize(mean, std)(img)
    t = torch.from_numpy(img.copy())
    want = t.sub_(torch.tensor(mean).view(-1, 1, 1)).div_(torch.tensor(std).view(-1, 1, 1))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want.numpy())
    as_tensor = T.Normalize(mean, std)(ds.from_numpy(img.copy()))
    assert isinstance(as_tensor, ds.Tensor)
    np.testing.assert_array_equal(as_tensor.numpy(), want.numpy())
    inplace = img.copy()
    assert T.Normalize(mean, std, inplace=True)(inplace) is inplace
    np.testing.assert_array_equal(inplace, want.numpy())

    hwc = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    tt = T.ToTensor()(hwc)
    ref = torch.from_numpy(hwc.transpose(2, 0, 1).copy()).to(torch.float32).div(255)
    assert isinstance(tt, ds.Tensor) and tt.shape == (3, 5, 6) and tt.dtype == np.float32
    np.testing.assert_array_equal(tt.numpy(), ref.numpy())
    gray = T.ToTensor()(np.ones((4, 4), np.float64))
    assert gray.shape == (1, 4, 4) and gray.dtype == np.float64       # not scaled, kept


def test_normalize_errors():
    with pytest.raises(TypeError, match="float"):
        T.Normalize([0.5], [0.5])(np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="zero"):
        T.Normalize([0.5], [0.0])(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="2 means.*3 channels"):
        T.Normalize([0.5, 0.5], [1, 1])(np.zeros((3, 2, 2), np.float32))


@pytest.mark.parametrize("mode,torch_mode", [("constant", "constant"), ("edge", "replicate"),
                                             ("reflect", "reflect")])
@pytest.mark.parametrize("padding", [3, (1, 2), (0, 1, 2, 3)])
def test_random_crop_is_a_window_of_the_padded_image(mode, torch_mode, padding):
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(2).random((2, 5, 7), dtype=np.float32)
    crop = T.RandomCrop((5, 6), padding=padding, fill=0.0, padding_mode=mode)
    left, top, right, bottom = crop.padding
    padded = torch.nn.functional.pad(torch.from_numpy(img)[None], (left, right, top, bottom),
                                     mode=torch_mode)[0].numpy()
    for k in range(6):
        with batch_generator(123, k):
            got = crop(img)
        rng = np.random.default_rng([k, 123])                # the draws crop made
        i = int(rng.integers(0, padded.shape[1] - 5 + 1))
        j = int(rng.integers(0, padded.shape[2] - 6 + 1))
        assert got.shape == (2, 5, 6) and got.dtype == np.float32
        np.testing.assert_array_equal(got, padded[:, i:i + 5, j:j + 6])


def test_random_crop_options_and_errors():
    img = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    with batch_generator(0, 0):
        np.testing.assert_array_equal(T.RandomCrop(4)(img), img)            # nothing to draw
        grown = T.RandomCrop(6, pad_if_needed=True, fill=-1.0)(img)
    assert grown.shape == (2, 6, 6) and (grown == -1).sum() == 2 * (36 - 16)
    assert isinstance(T.RandomCrop(2)(ds.from_numpy(img)), ds.Tensor)
    with pytest.raises(ValueError, match="larger"):
        T.RandomCrop(5)(img)
    with pytest.raises(ValueError, match="padding_mode"):
        T.RandomCrop(2, padding_mode="wrap")
    with pytest.raises(ValueError, match="padding"):
        T.RandomCrop(2, padding=(1, 2, 3))


def test_random_horizontal_flip_draws_once_per_call():
    img = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    assert T.RandomHorizontalFlip(p=0.0)(img) is img
    np.testing.assert_array_equal(T.RandomHorizontalFlip(p=1.0)(img), img[..., ::-1])
    flips = []
    with batch_generator(5, 0):
        for _ in range(40):
            flips.append(not np.array_equal(T.RandomHorizontalFlip()(img), img))
    draws = np.random.default_rng([0, 5]).random(40)
    assert flips == list(draws < 0.5)


def test_compose_outside_a_loader_draws_from_the_global_rng():
    t = T.Compose([T.RandomCrop(3, padding=1), T.RandomHorizontalFlip()])
    img = np.random.default_rng(0).random((1, 3, 3), dtype=np.float32)
    ds.manual_seed(8)
    a = [t(img) for _ in range(5)]
    ds.manual_seed(8)
    b = [t(img) for _ in range(5)]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert "RandomCrop" in repr(t)

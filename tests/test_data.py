"""dlsys.data: samplers, DataLoader, datasets (no real dataset needed except the marked test)."""

import numpy as np
import pytest

from dlsys import config
from dlsys.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    TensorDataset,
    synthetic_classification,
    synthetic_mnist,
)
from dlsys.data import datasets as dsets


def shards(n, p, **kw):
    return [DistributedSampler(range(n), num_replicas=p, rank=r, **kw) for r in range(p)]


# -- DistributedSampler ---------------------------------------------------------------------

@pytest.mark.parametrize("n,p", [(10, 3), (12, 4), (2, 5), (7, 1), (1, 2)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_distributed_sampler_pads_to_equal_counts_and_covers(n, p, shuffle):
    per_rank = [list(s) for s in shards(n, p, shuffle=shuffle, seed=3)]
    counts = {len(r) for r in per_rank}
    assert counts == {-(-n // p)}
    assert all(len(s) == -(-n // p) for s in shards(n, p))
    together = sorted(i for r in per_rank for i in r)
    assert set(together) == set(range(n))                  # every sample is seen
    assert len(together) - n == -(-n // p) * p - n          # only the padding repeats


@pytest.mark.parametrize("n,p", [(10, 3), (12, 4), (7, 2), (3, 4)])
def test_distributed_sampler_drop_last_disjoint(n, p):
    per_rank = [list(s) for s in shards(n, p, drop_last=True, seed=1)]
    assert {len(r) for r in per_rank} == {n // p}
    flat = [i for r in per_rank for i in r]
    assert len(flat) == len(set(flat)) == (n // p) * p


def test_distributed_sampler_matches_pytorch_layout_without_shuffle():
    # PyTorch: indices padded by wrapping, then rank r takes r::P
    assert [list(s) for s in shards(5, 2, shuffle=False)] == [[0, 2, 4], [1, 3, 0]]
    assert [list(s) for s in shards(2, 5, shuffle=False)] == [[0], [1], [0], [1], [0]]
    assert [list(s) for s in shards(5, 2, shuffle=False, drop_last=True)] == [[0, 2], [1, 3]]


def interleave(samplers):
    """The epoch's global order: position k*P + r is the k-th index of rank r."""
    return [i for grp in zip(*[list(s) for s in samplers], strict=True) for i in grp]


def test_distributed_sampler_same_permutation_on_every_rank_and_set_epoch():
    n, p = 20, 4
    a = shards(n, p, seed=7)
    b = shards(n, p, seed=7)
    perm0 = interleave(a)
    assert perm0 == interleave(b)                          # deterministic
    assert sorted(perm0) == list(range(n)) and perm0 != list(range(n))
    for s in a:
        s.set_epoch(1)
    perm1 = interleave(a)
    assert sorted(perm1) == list(range(n)) and perm1 != perm0   # a new order per epoch
    for s in b:
        s.set_epoch(1)
    assert interleave(b) == perm1
    assert interleave(shards(n, p, seed=8)) != perm0


def test_distributed_sampler_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(range(4), num_replicas=0, rank=0)


# -- datasets -------------------------------------------------------------------------------

def test_tensor_dataset_indexing_and_length_check():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    d = TensorDataset(x, y)
    assert len(d) == 6
    xi, yi = d[4]
    np.testing.assert_array_equal(xi, [8.0, 9.0])
    assert yi == 4
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(x, np.arange(5))


def test_synthetic_is_deterministic_and_shaped_like_mnist():
    x, y = synthetic_mnist("train", n=64, seed=1)
    assert x.shape == (64, 1, 28, 28) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.min() >= 0 and y.max() < 10
    assert 0.0 <= x.min() and x.max() <= 1.0
    x2, y2 = synthetic_mnist("train", n=64, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    xt, _ = synthetic_mnist("test", n=64, seed=1)
    assert not np.array_equal(x, xt)


def test_read_idx_roundtrip(tmp_path):
    import gzip
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\x00\x00\x08\x03" + np.array(arr.shape, ">u4").tobytes() + arr.tobytes()
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(dsets.read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)
    np.testing.assert_array_equal(dsets.read_idx(raw), arr)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """DLSYS_DATA pointing at a fresh directory (dlsys.config reads it once: reload around)."""
    monkeypatch.setenv("DLSYS_DATA", str(tmp_path))
    config.reload()
    yield tmp_path
    config.reload()  # NOTE: runs before monkeypatch restores the variable: nothing kept


def test_data_dir_follows_dlsys_data(data_home):
    assert dsets.data_dir() == data_home
    assert dsets.cache_path("mnist") == data_home / "mnist.npz"


def test_missing_dataset_error_names_the_fetch_command(data_home):
    with pytest.raises(FileNotFoundError, match="-m dlsys.data fetch fashion-mnist"):
        dsets.fashion_mnist("train")
    with pytest.raises(ValueError, match="split"):
        dsets.mnist("validation")


def test_cache_roundtrip_layout(data_home):
    arrays = {}
    sizes = (("train", 60), ("test", 10))
    for split, n in sizes:
        arrays[f"{split}_images"] = np.resize(np.arange(251, dtype=np.uint8), (n, 28, 28))
        arrays[f"{split}_labels"] = np.resize(np.arange(10, dtype=np.uint8), n)
    dsets._save("fashion-mnist", arrays, sizes)
    x, y = dsets.fashion_mnist("test")
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(np.rint(x[:, 0] * 255).astype(np.uint8), arrays["test_images"])


@pytest.mark.dataset
def test_real_mnist_when_cached():
    if not dsets.is_available("mnist"):
        pytest.skip(f"MNIST not cached; run: {dsets.fetch_command('mnist')}")
    x, y = dsets.mnist("train")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (60000,) and y.dtype == np.int64
    assert list(y[:5]) == [5, 0, 4, 1, 9]
    assert x.min() == 0.0 and x.max() == 1.0
    xt, yt = dsets.mnist("test")
    assert xt.shape == (10000, 1, 28, 28) and list(yt[:5]) == [7, 2, 1, 0, 4]
    assert np.bincount(y, minlength=10).min() > 5000


# -- DataLoader -----------------------------------------------------------------------------

def _loader_batches(loader):
    return [tuple(np.asarray(t) for t in batch) for batch in loader]


@pytest.fixture
def tensors():
    pytest.importorskip("dlsys.tensor", reason="needs dlsys.tensor (autograd core)")


def test_loader_sequential_batches_and_drop_last(tensors):
    x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10)
    batches = _loader_batches(DataLoader(TensorDataset(x, y), batch_size=4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    loader = DataLoader(TensorDataset(x, y), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(b[1]) for b in _loader_batches(loader)] == [4, 4]


def test_loader_yields_tensors(tensors):
    from dlsys.tensor import Tensor
    (xb, yb), = list(DataLoader(TensorDataset(np.ones((3, 2), np.float32), np.arange(3)),
                                batch_size=3))
    assert isinstance(xb, Tensor) and isinstance(yb, Tensor)
    assert xb.shape == (3, 2) and yb.shape == (3,)


def test_loader_shuffle_with_seed_is_reproducible_and_changes_per_epoch(tensors):
    y = np.arange(50)
    a = DataLoader(TensorDataset(y), batch_size=8, shuffle=True, seed=5)
    b = DataLoader(TensorDataset(y), batch_size=8, shuffle=True, seed=5)
    order = lambda ld: np.concatenate([bt[0] for bt in _loader_batches(ld)])  # noqa: E731
    a1, a2 = order(a), order(a)
    assert sorted(a1) == list(range(50)) and not np.array_equal(a1, y)
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, order(b))
    np.testing.assert_array_equal(a2, order(b))


def test_loader_with_distributed_sampler(tensors):
    y = np.arange(11)
    samplers = shards(11, 3, seed=2)
    got = [np.concatenate([b[0] for b in _loader_batches(
        DataLoader(TensorDataset(y), batch_size=2, sampler=s))]) for s in samplers]
    assert {len(g) for g in got} == {4}
    for g, s in zip(got, samplers, strict=True):
        np.testing.assert_array_equal(g, list(s))
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(TensorDataset(y), sampler=samplers[0], shuffle=True)


def test_loader_generic_dataset_collates(tensors):
    class Squares(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(2, i, dtype=np.float32), i * i

    batches = _loader_batches(DataLoader(Squares(), batch_size=2))
    np.testing.assert_array_equal(batches[2][0], [[4.0, 4.0]])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), [0, 1, 4, 9, 16])


def test_synthetic_classification_is_linearly_separable():
    x, y = synthetic_classification(200, shape=(8,), num_classes=3, seed=0)
    templates = np.stack([x[y == c].mean(0) for c in range(3)])
    pred = np.argmin(((x[:, None] - templates[None]) ** 2).sum(-1), axis=1)
    assert (pred == y).mean() > 0.95


def test_loader_accepts_any_index_iterable_as_sampler(tensors):
    y = np.arange(10)
    loader = DataLoader(TensorDataset(y), batch_size=3, sampler=[9, 0, 4, 4], drop_last=False)
    assert len(loader) == 2
    got = [b[0] for b in _loader_batches(loader)]
    np.testing.assert_array_equal(np.concatenate(got), [9, 0, 4, 4])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(TensorDataset(y), batch_size=0)


def test_loader_without_seed_follows_the_global_rng(tensors):
    import dlsys as ds
    y = np.arange(30)

    def order():
        loader = DataLoader(TensorDataset(y), batch_size=30, shuffle=True)
        return _loader_batches(loader)[0][0]

    ds.manual_seed(4)
    a = order()
    ds.manual_seed(4)
    np.testing.assert_array_equal(order(), a)

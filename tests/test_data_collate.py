"""dlsys.data default collate: recursive as torch's default_collate (torch is the oracle)."""

import collections

import numpy as np
import pytest

import dlsys as ds
from dlsys.data import DataLoader, Dataset, default_collate

Point = collections.namedtuple("Point", ["xy", "label"])


def _same(ours, theirs, path="batch"):
    """ours (dlsys) has the structure, types, dtypes and values of theirs (torch)."""
    import torch

    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, ds.Tensor), f"{path}: {type(ours).__name__}, expected a Tensor"
        want = theirs.numpy()
        assert ours.dtype == want.dtype, f"{path}: dtype {ours.dtype}, torch {want.dtype}"
        np.testing.assert_array_equal(ours.numpy(), want, err_msg=path)
        return
    assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), path
        for k in theirs:
            _same(ours[k], theirs[k], f"{path}[{k!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _same(a, b, f"{path}[{i}]")
    else:
        assert ours == theirs, path


def _samples(kind):
    r = np.random.default_rng(0)
    if kind == "dict":
        return [{"img": r.random((3, 4, 4), dtype=np.float32), "label": int(i),
                 "weight": float(i) / 3, "name": f"s{i}", "mask": bool(i % 2)} for i in range(5)]
    if kind == "nested":
        return [{"pair": (r.random(2), np.int32(i)), "meta": {"id": i, "tags": [i, i + 1]}}
                for i in range(4)]
    if kind == "tuple":
        return [(r.random((2, 3)).astype(np.float16), np.int64(i), True) for i in range(3)]
    if kind == "list":
        return [[np.arange(3) + i, 0.5 * i] for i in range(3)]
    if kind == "namedtuple":
        return [Point(r.random(2, dtype=np.float32), i) for i in range(3)]
    if kind == "ordered":
        return [collections.OrderedDict([("b", i), ("a", np.float64(i))]) for i in range(3)]
    if kind == "scalar_arrays":
        return [np.array(i, dtype=np.int32) for i in range(4)]  # 0-d arrays stack to (4,)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["dict", "nested", "tuple", "list", "namedtuple", "ordered",
                                  "scalar_arrays"])
def test_default_collate_matches_torch(kind):
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate

    samples = _samples(kind)
    _same(default_collate(samples), torch_collate(samples))
    # Tensors in the samples collate as arrays do (torch: torch tensors)
    if kind == "dict":
        ours = default_collate([{k: ds.from_numpy(v) if isinstance(v, np.ndarray) else v
                                 for k, v in s.items()} for s in samples])
        theirs = torch_collate([{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                 for k, v in s.items()} for s in samples])
        _same(ours, theirs)


def test_dict_samples_give_a_dict_batch_not_an_object_tensor():
    # bug: the DataLoader stacked dict samples into one object-dtype Tensor
    class Dicts(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"x": np.full((2,), i, np.float32), "y": i}

    batches = list(DataLoader(Dicts(), batch_size=4))
    assert [type(b) for b in batches] == [dict, dict]
    assert batches[0]["x"].dtype == np.float32 and batches[0]["x"].shape == (4, 2)
    assert batches[0]["y"].dtype == np.int64
    np.testing.assert_array_equal(batches[1]["y"].numpy(), [4, 5])


def test_tuple_samples_give_lists_as_torch():
    batch = default_collate([(np.zeros(2), 1), (np.ones(2), 2)])
    assert isinstance(batch, list) and len(batch) == 2
    np.testing.assert_array_equal(batch[1].numpy(), [1, 2])


def test_python_numbers_follow_torch_dtypes():
    assert default_collate([1.0, 2.5]).dtype == np.float64
    assert default_collate([1, 2]).dtype == np.int64
    assert default_collate([True, False]).dtype == np.bool_
    assert default_collate([True, 2]).dtype == np.int64
    assert default_collate([np.float32(1), np.float32(2)]).dtype == np.float32


def test_collate_errors_name_the_field_and_shapes():
    with pytest.raises(ValueError, match=r"\['img'\].*\(3,\) at index 0 and \(4,\) at index 1"):
        default_collate([{"img": np.zeros(3)}, {"img": np.zeros(4)}])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [1]])
    with pytest.raises(TypeError, match="found NoneType"):
        default_collate([None, None])
    with pytest.raises(TypeError, match="dtype object"):
        default_collate([np.array([object()]), np.array([object()])])
    with pytest.raises(TypeError, match="<U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_custom_collate_fn_output_is_passed_on():
    seen = []

    def collate(samples):
        seen.append(len(samples))
        return {"n": len(samples), "first": samples[0]}

    class Ints(Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return i

    out = list(DataLoader(Ints(), batch_size=2, collate_fn=collate))
    assert out == [{"n": 2, "first": 0}, {"n": 2, "first": 2}, {"n": 1, "first": 4}]
    assert seen == [2, 2, 1]


def test_tensor_dataset_fast_path_equals_the_per_sample_collate():
    from dlsys.data import Subset, TensorDataset

    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.arange(10, dtype=np.int32)
    base = TensorDataset(x, y)
    for dataset in (base, Subset(base, [9, 3, 3, 0, 7])):
        fast = list(DataLoader(dataset, batch_size=3))
        slow = list(DataLoader(dataset, batch_size=3, collate_fn=default_collate))
        assert len(fast) == len(slow)
        for f, s in zip(fast, slow, strict=True):
            assert isinstance(f, list) and isinstance(s, list)
            for a, b in zip(f, s, strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a.numpy(), b.numpy())

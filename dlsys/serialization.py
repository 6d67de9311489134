"""``ds.save(obj, path)`` / ``ds.load(path)``: checkpoints without pickle.

What a training script saves: nested dicts (any str/int/float/bool/None keys), lists and tuples
of Tensors (any device: read to the host), numpy arrays and scalars, Python numbers, strings,
bools and None (model, optimizer, scheduler and loader state dicts together). Anything else is a
TypeError naming where it is, so loading never runs code.

The file is a zip archive in numpy's ``.npz`` layout (stored, not compressed): one ``.npy``
member per array, written and read by ``numpy.lib.format`` with ``allow_pickle=False``, plus
``__dlsys__.json``, the structure with the arrays as references. ``np.load(path)`` can open it,
dtypes and shapes (float16, bool, 0-d, ...) come back exactly, and zip's CRC-32 catches a
corrupt member. ``save`` writes exactly ``path``, atomically: a temporary file in the same
directory, fsync, ``os.replace``, fsync of the directory.
"""

from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np

from . import backend
from .creation import from_numpy
from .tensor import Tensor

__all__ = ["save", "load"]

FORMAT = "dlsys.save"
VERSION = 1
_MANIFEST = "__dlsys__.json"
_SCALARS = (str, int, float, bool, type(None))


class _Writer:
    """Turns an object into its JSON structure, collecting the arrays it references."""

    def __init__(self):
        self.arrays: list[np.ndarray] = []
        self._memo: dict[int, int] = {}  # id(obj) -> array index: a repeated object is kept once
        self._keep: list = []            # keeps memoized objects alive while ids are in use

    def _array(self, obj, arr: np.ndarray, where: str) -> int:
        if arr.dtype.hasobject:
            raise TypeError(f"ds.save: {where} is an array of dtype {arr.dtype}; object arrays "
                            f"would need pickle")
        idx = self._memo.get(id(obj))
        if idx is None:
            idx = self._memo[id(obj)] = len(self.arrays)
            self.arrays.append(arr)
            self._keep.append(obj)
        return idx

    def encode(self, obj, where: str = "obj"):
        if isinstance(obj, Tensor):
            node = {"tensor": self._array(obj, np.asarray(obj), where),
                    "device": str(obj.device)}
            if obj.requires_grad:
                node["requires_grad"] = True
            return node
        if isinstance(obj, np.ndarray):
            return {"ndarray": self._array(obj, obj, where)}
        if isinstance(obj, np.generic):
            return {"npscalar": self._array(obj, np.asarray(obj), where)}
        if isinstance(obj, float) and not math.isfinite(obj):
            return {"float": repr(obj)}  # NOTE: JSON has no inf/nan; "inf", "-inf", "nan"
        if isinstance(obj, _SCALARS):
            return obj
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if not isinstance(k, (*_SCALARS, np.integer)):
                    raise TypeError(f"ds.save: {where} has a key of type {type(k).__name__}; "
                                    f"keys must be str, int, float, bool or None")
                items.append([self.encode(k.item() if isinstance(k, np.integer) else k,
                                          f"{where} key"),
                              self.encode(v, f"{where}[{k!r}]")])
            return {"dict": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {kind: [self.encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]}
        raise TypeError(f"ds.save: {where} is a {type(obj).__module__}.{type(obj).__qualname__}; "
                        f"only Tensors, numpy arrays/scalars, numbers, str, bool, None and "
                        f"dicts/lists/tuples of them can be saved (no pickle)")


def _write(f, obj) -> None:
    w = _Writer()
    root = w.encode(obj)
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "arrays": len(w.arrays),
                           "root": root}, allow_nan=False)
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(_MANIFEST, manifest)
        for i, arr in enumerate(w.arrays):
            with zf.open(f"{i}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def save(obj, path) -> None:
    """Write ``obj`` to ``path`` (exactly that name) atomically; ``path`` may also be a binary
    file object (written in place, not atomically)."""
    if hasattr(path, "write"):
        _write(path, obj)
        return
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"ds.save: the directory of {path!r} does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}."
                                  f"{os.urandom(4).hex()}.tmp")
    # NOTE: os.open with 0o666 lets the umask decide the mode, as for a plain open()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, obj)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # the rename itself survives a crash only once the directory is synced
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(dfd)


class _Reader:
    def __init__(self, zf: zipfile.ZipFile, name: str, count: int, device):
        self.zf, self.name, self.count, self.device = zf, name, count, device
        self._cache: dict[int, object] = {}

    def _array(self, idx) -> np.ndarray:
        if not isinstance(idx, int) or not 0 <= idx < self.count:
            raise ValueError(f"{self.name}: corrupt ds.save file (array reference {idx!r})")
        with self.zf.open(f"{idx}.npy") as member:
            return np.lib.format.read_array(member, allow_pickle=False)

    def _cached(self, kind, idx, make):
        key = (kind, idx)
        if key not in self._cache:
            self._cache[key] = make(self._array(idx))
        return self._cache[key]

    def _tensor(self, node, arr):
        t = from_numpy(np.require(arr, requirements=["C", "W"]))
        if self.device is not None:
            t = t.to(self.device)
        if node.get("requires_grad"):
            t.requires_grad_(True)
        return t

    def decode(self, node):
        if isinstance(node, _SCALARS):
            return node
        if isinstance(node, dict) and len(node) >= 1:
            if "tensor" in node:
                return self._cached("tensor", node["tensor"],
                                    lambda arr: self._tensor(node, arr))
            if "ndarray" in node:
                return self._cached("ndarray", node["ndarray"], lambda arr: arr)
            if "npscalar" in node:
                return self._cached("npscalar", node["npscalar"], lambda arr: arr[()])
            if "float" in node:
                return float(node["float"])
            if "list" in node:
                return [self.decode(v) for v in node["list"]]
            if "tuple" in node:
                return tuple(self.decode(v) for v in node["tuple"])
            if "dict" in node:
                return {self.decode(k): self.decode(v) for k, v in node["dict"]}
        raise ValueError(f"{self.name}: corrupt ds.save file (unknown node {str(node)[:80]})")


def _describe(path) -> str:
    return repr(os.fspath(path)) if not hasattr(path, "read") else "the file object"


def load(path, map_location=None):
    """Read what :func:`save` wrote. Tensors come back on the CPU, or on ``map_location`` (a
    device or its name); arrays and scalars exactly as saved. A truncated, corrupt or foreign
    file is a ValueError naming ``path``."""
    name = _describe(path)
    device = None if map_location is None else backend.as_device(map_location)
    if not hasattr(path, "read"):
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"ds.load: no such file: {name}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"ds.load: {name} is not a file written by ds.save (not a zip "
                         f"archive: truncated, or another format)") from exc
    with zf:
        try:
            raw = zf.read(_MANIFEST)
        except KeyError:
            raise ValueError(f"ds.load: {name} is a zip archive without {_MANIFEST}: not a file "
                             f"written by ds.save (an np.savez or torch.save file?)") from None
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ValueError(f"ds.load: {name} is truncated or corrupt ({exc})") from exc
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"ds.load: {name} has a corrupt {_MANIFEST} ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"ds.load: {name} is not a file written by ds.save")
        if manifest.get("version", 0) > VERSION:
            raise ValueError(f"ds.load: {name} has format version {manifest['version']}; this "
                             f"dlsys reads versions up to {VERSION} (a newer dlsys wrote it)")
        reader = _Reader(zf, name, int(manifest.get("arrays", 0)), device)
        try:
            return reader.decode(manifest["root"])
        except (zipfile.BadZipFile, EOFError, KeyError) as exc:
            raise ValueError(f"ds.load: {name} is truncated or corrupt ({exc})") from exc

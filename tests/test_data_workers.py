"""DataLoader(num_workers=N): real worker processes, same batches as num_workers=0, errors with
their traceback, clean shutdown (end, break, garbage collection, errors), persistent workers."""

import gc
import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest

import dlsys as ds
from dlsys.data import DataLoader, Dataset, TensorDataset, get_worker_info
from dlsys.data import transforms as T

pytestmark = pytest.mark.slow


class Augmented(Dataset):
    """Images with a random crop + flip + normalize, a label and a per-sample dict field."""

    def __init__(self, n=48):
        r = np.random.default_rng(0)
        self.x = r.random((n, 3, 8, 8), dtype=np.float32)
        self.t = T.Compose([T.RandomCrop(8, padding=2), T.RandomHorizontalFlip(),
                            T.Normalize([0.5] * 3, [0.2] * 3)])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"img": self.t(self.x[i]), "label": i % 5, "id": i}


class GlobalRandom(Dataset):
    """Reads the worker's global RNGs (seeded from base seed + worker id, as torch)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = get_worker_info()
        return (info.id if info else -1, info.seed if info else -1, random.random(),
                float(np.random.random()), float(ds.rand(1).numpy()[0]), os.getpid())


class FailsAt(Dataset):
    def __init__(self, bad):
        self.bad = bad

    def __len__(self):
        return 40

    def __getitem__(self, i):
        if i == self.bad:
            raise ValueError(f"cannot read sample {i}")
        return np.float32(i)


class KillsItself(Dataset):
    def __len__(self):
        return 40

    def __getitem__(self, i):
        if i == 21:
            os.kill(os.getpid(), signal.SIGKILL)
        return np.float32(i)


class Slow(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        time.sleep(1.0 if i >= 2 else 0.0)
        return np.float32(i)


class Pids(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        return os.getpid()


def _arrays(batches):
    return [{k: np.asarray(v) for k, v in b.items()} for b in batches]


def _children():
    return [p for p in mp.active_children() if p.name.startswith("DataLoader-worker")]


@pytest.mark.parametrize("workers,context", [(1, None), (2, None), (3, "fork"), (2, "spawn")])
def test_batches_identical_to_num_workers_0_augmentation_included(workers, context):
    data = Augmented()
    ref = DataLoader(data, batch_size=5, shuffle=True, seed=11)
    par = DataLoader(data, batch_size=5, shuffle=True, seed=11, num_workers=workers,
                     multiprocessing_context=context)
    for _ in range(2):  # two epochs: a new order and new augmentation each
        a, b = _arrays(ref), _arrays(par)
        assert len(a) == len(b) == 10
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys()
            for k in x:
                assert x[k].dtype == y[k].dtype
                np.testing.assert_array_equal(x[k], y[k])
    assert _children() == []


def test_augmentation_differs_per_epoch_and_seed():
    data = Augmented()
    imgs = lambda ld: np.concatenate([b["img"].numpy() for b in ld])  # noqa: E731
    ids = lambda ld: np.concatenate([b["id"].numpy() for b in ld])  # noqa: E731
    a = DataLoader(data, batch_size=6, seed=1)  # sequential order, random augmentation
    e0, e1 = imgs(a), imgs(a)
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(ids(a), np.arange(48))
    np.testing.assert_array_equal(imgs(DataLoader(data, batch_size=6, seed=1)), e0)
    assert not np.array_equal(imgs(DataLoader(data, batch_size=6, seed=2)), e0)


def test_workers_seed_their_global_rngs_from_base_seed_and_id():
    loader = DataLoader(GlobalRandom(), batch_size=2, num_workers=2, seed=3)
    rows = [tuple(np.asarray(c)[0] for c in b) for b in loader]
    wids = [int(r[0]) for r in rows]
    assert wids == [0, 1, 0, 1]                           # round robin, in order
    seeds = {int(r[0]): int(r[1]) for r in rows}
    assert seeds[1] == seeds[0] + 1                        # base_seed + worker id
    assert len({os.getpid(), *(int(r[5]) for r in rows)}) == 3
    # worker 0 and worker 1 draw different streams; a rerun with the same seed draws the same
    again = [tuple(np.asarray(c)[0] for c in b) for b in
             DataLoader(GlobalRandom(), batch_size=2, num_workers=2, seed=3)]
    np.testing.assert_array_equal(np.array(rows)[:, :5], np.array(again)[:, :5])
    assert rows[0][2] != rows[1][2] and rows[0][3] != rows[1][3] and rows[0][4] != rows[1][4]


def test_worker_init_fn_runs_in_each_worker():
    loader = DataLoader(GlobalRandom(), batch_size=4, num_workers=2, seed=0,
                        worker_init_fn=_seed_python_random)
    first = [float(np.asarray(b[2])[0]) for b in loader]
    assert first == [random.Random(1000).random(), random.Random(1001).random()]


def _seed_python_random(worker_id):
    random.seed(1000 + worker_id)


def test_worker_exception_reaches_main_with_its_traceback():
    loader = DataLoader(FailsAt(13), batch_size=4, num_workers=2)
    got = []
    with pytest.raises(ValueError) as info:
        for b in loader:
            got.append(b)
    msg = str(info.value)
    assert "Caught ValueError in DataLoader worker process 1" in msg
    assert "cannot read sample 13" in msg and "__getitem__" in msg and "Traceback" in msg
    assert len(got) == 3                                   # batches before the bad one arrived
    assert _children() == []


def test_worker_init_fn_exception_is_reported():
    loader = DataLoader(FailsAt(-1), batch_size=4, num_workers=1, worker_init_fn=_raise)
    with pytest.raises(RuntimeError, match=r"(?s)worker_init_fn.*init went wrong"):
        list(loader)


def _raise(worker_id):
    raise RuntimeError("init went wrong")


def test_dead_worker_is_named_not_waited_for():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"worker \d \(pid \d+\) killed by signal SIGKILL"):
        list(DataLoader(KillsItself(), batch_size=4, num_workers=2))
    assert time.monotonic() - t0 < 20
    assert _children() == []


def test_timeout_raises_instead_of_waiting():
    loader = DataLoader(Slow(), batch_size=4, num_workers=1, timeout=0.3)
    with pytest.raises(RuntimeError, match="timed out"):
        list(loader)
    assert _children() == []


def test_workers_stop_on_break_and_on_garbage_collection():
    loader = DataLoader(Augmented(), batch_size=4, num_workers=2)
    for _ in loader:
        assert len(_children()) == 2
        break
    assert _children() == []
    it = iter(loader)
    next(it)
    assert len(_children()) == 2
    del it
    gc.collect()
    assert _children() == []


def test_persistent_workers_live_across_epochs_until_the_loader_goes():
    loader = DataLoader(Pids(), batch_size=3, num_workers=2, persistent_workers=True)
    e0 = {int(p) for b in loader for p in b.numpy()}
    e1 = {int(p) for b in loader for p in b.numpy()}
    assert e0 == e1 and len(e0) == 2 and os.getpid() not in e0
    ref = list(DataLoader(TensorDataset(np.arange(12)), batch_size=3))
    order = DataLoader(TensorDataset(np.arange(12)), batch_size=3, num_workers=2,
                       persistent_workers=True)
    for _ in order:  # an epoch left early: its in-flight batches must not leak into the next
        break
    got = list(order)
    assert [b[0].numpy().tolist() for b in got] == [b[0].numpy().tolist() for b in ref]
    first = iter(order)
    next(first)
    second = iter(order)
    assert next(second)[0].numpy().tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError, match="newer iteration"):
        next(first)
    assert len(_children()) >= 2
    del loader, order, first, second
    gc.collect()
    assert _children() == []


def test_unpicklable_dataset_gets_a_clear_error():
    class Local(Dataset):  # a local class cannot be pickled to a forkserver worker
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return i

    with pytest.raises(TypeError, match="picklable.*multiprocessing_context='fork'"):
        list(DataLoader(Local(), num_workers=1))
    assert [int(b.numpy()[0]) for b in DataLoader(Local(), num_workers=1,
                                                  multiprocessing_context="fork")] == [0, 1]


def test_large_batches_come_back_through_shared_memory_intact():
    x = np.random.default_rng(1).random((64, 3, 32, 32), dtype=np.float32)   # 768 KiB/batch
    got = list(DataLoader(TensorDataset(x, np.arange(64)), batch_size=32, num_workers=2))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in got]), x)
    assert got[0][0].numpy().flags.writeable                # a Tensor may be written in place
    got[0][0].mul_(2.0)


def test_options_are_checked_and_pin_memory_is_accepted():
    d = TensorDataset(np.arange(4))
    assert len(list(DataLoader(d, batch_size=2, pin_memory=True))) == 2
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(d, num_workers=-1)
    with pytest.raises(ValueError, match="persistent_workers"):
        DataLoader(d, persistent_workers=True)
    with pytest.raises(ValueError, match="timeout"):
        DataLoader(d, timeout=-1)

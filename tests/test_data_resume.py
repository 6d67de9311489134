"""Mid-epoch resume: sampler and DataLoader state_dict / load_state_dict give exactly the rest of
the epoch (the same batches, bitwise, augmentation included) and then the following epochs."""

import numpy as np
import pytest

import dlsys as ds
from dlsys.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)
from dlsys.data import transforms as T


class Augmented(Dataset):
    def __init__(self, n=30):
        self.x = np.random.default_rng(0).random((n, 1, 6, 6), dtype=np.float32)
        self.t = T.Compose([T.RandomCrop(6, padding=1), T.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.t(self.x[i]), i


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_sequential_sampler_resumes_mid_pass_then_starts_afresh():
    s = SequentialSampler(range(10))
    it = iter(s)
    assert _take(it, 4) == [0, 1, 2, 3]
    state = s.state_dict()
    assert state == {"position": 4}
    s2 = SequentialSampler(range(10))
    s2.load_state_dict(state)
    assert list(s2) == [4, 5, 6, 7, 8, 9]
    assert list(s2) == list(range(10))
    with pytest.raises(ValueError, match="position 11"):
        s2.load_state_dict({"position": 11})


@pytest.mark.parametrize("seeded", [True, False])
def test_random_sampler_resumes_the_same_permutation(seeded):
    def make():
        return RandomSampler(range(17), seed=5 if seeded else None)

    ds.manual_seed(0)
    s = make()
    passes = [list(s) for _ in range(3)]
    assert passes[0] != passes[1] and sorted(passes[1]) == list(range(17))

    ds.manual_seed(0)
    s = make()
    assert list(s) == passes[0]
    it = iter(s)
    assert _take(it, 6) == passes[1][:6]
    state, rng = s.state_dict(), ds.get_rng_state()   # what a checkpoint holds

    ds.manual_seed(99)                                  # a fresh process
    s2 = RandomSampler(range(17), seed=123 if seeded else None)
    s2.load_state_dict(state)
    ds.set_rng_state(rng)
    assert list(s2) == passes[1][6:]
    assert list(s2) == passes[2]
    with pytest.raises(ValueError, match="17 samples"):
        RandomSampler(range(5)).load_state_dict(state)


def test_distributed_sampler_resume_on_every_rank_from_rank0_state():
    n, p = 23, 3

    def shards():
        return [DistributedSampler(range(n), num_replicas=p, rank=r, seed=4) for r in range(p)]

    full = shards()
    for s in full:
        s.set_epoch(2)
    want = [list(s) for s in full]
    for s in full:
        s.set_epoch(3)
    want3 = [list(s) for s in full]

    run = shards()
    its = []
    for s in run:
        s.set_epoch(2)
        its.append(iter(s))
    for it in its:
        _take(it, 3)                                    # every rank consumed 3 (lockstep)
    state = run[0].state_dict()
    assert state["epoch"] == 2 and state["position"] == 3

    resumed = shards()
    for s in resumed:
        s.load_state_dict(state)                        # rank 0's state, broadcast
        s.set_epoch(2)                                  # the usual loop: kept, same epoch
    assert [list(s) for s in resumed] == [w[3:] for w in want]
    for s in resumed:
        s.set_epoch(3)
    assert [list(s) for s in resumed] == want3


def test_distributed_sampler_set_epoch_of_another_epoch_starts_it_afresh():
    s = DistributedSampler(range(10), num_replicas=2, rank=1, seed=0)
    s.set_epoch(1)
    it = iter(s)
    _take(it, 2)
    state = s.state_dict()
    t = DistributedSampler(range(10), num_replicas=2, rank=1, seed=0)
    t.load_state_dict(state)
    t.set_epoch(4)
    s.set_epoch(4)
    assert list(t) == list(s) and len(list(t)) == 5


def test_distributed_sampler_refuses_a_mid_epoch_state_of_another_world_size():
    s = DistributedSampler(range(12), num_replicas=4, rank=0)
    it = iter(s)
    next(it)
    mid = s.state_dict()
    with pytest.raises(ValueError, match="num_replicas=4.*num_replicas=2|4 replicas.*2"):
        DistributedSampler(range(12), num_replicas=2, rank=0).load_state_dict(mid)
    list(it)                                            # the epoch ends: position 0
    boundary = s.state_dict()
    assert boundary["position"] == 0
    other = DistributedSampler(range(12), num_replicas=2, rank=1)
    other.load_state_dict(boundary)                     # between epochs any world size works
    assert len(list(other)) == 6
    with pytest.raises(ValueError, match="seed"):
        DistributedSampler(range(12), num_replicas=4, rank=0, seed=1).load_state_dict(mid)
    with pytest.raises(ValueError, match="dataset_len"):
        DistributedSampler(range(13), num_replicas=4, rank=0).load_state_dict(mid)


def _batches(loader):
    return [tuple(np.asarray(t).copy() for t in b) for b in loader]


def _assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("seed", [7, None])
def test_loader_resumes_mid_epoch_bitwise(workers, seed):
    data = Augmented()

    def make():
        return DataLoader(data, batch_size=4, shuffle=True, seed=seed, num_workers=workers)

    ds.manual_seed(1)
    ref = make()
    epochs = [_batches(ref) for _ in range(3)]

    ds.manual_seed(1)
    run = make()
    _batches(run)                                       # epoch 0
    got = []
    for k, b in enumerate(run):                         # epoch 1: stop after 3 batches
        got.append(tuple(np.asarray(t).copy() for t in b))
        if k == 2:
            state, rng = run.state_dict(), ds.get_rng_state()
            break
    _assert_same(got, epochs[1][:3])

    ds.manual_seed(42)                                  # a fresh process
    resumed = make()
    resumed.load_state_dict(state)
    ds.set_rng_state(rng)
    _assert_same(_batches(resumed), epochs[1][3:])
    _assert_same(_batches(resumed), epochs[2])


def test_loader_state_at_the_last_batch_and_after_the_epoch():
    data = TensorDataset(np.arange(10))

    def make():
        return DataLoader(data, batch_size=4, shuffle=True, seed=3)

    ref = make()
    e0, e1 = _batches(ref), _batches(ref)
    run = make()
    for _ in run:
        last = run.state_dict()                         # inside the loop, at each batch
    after = run.state_dict()                            # after the epoch ran to its end
    assert last["sampler"]["position"] == 10 and after["sampler"]["position"] == 0

    r = make()
    r.load_state_dict(last)
    assert _batches(r) == []                            # the rest of epoch 0 is empty
    _assert_same(_batches(r), e1)
    r = make()
    r.load_state_dict(after)
    _assert_same(_batches(r), e1)
    flat = [np.concatenate([b[0] for b in e]) for e in (e0, e1)]
    assert not np.array_equal(*flat)


def test_loader_with_distributed_sampler_usual_resume_loop():
    data = Augmented(20)

    def run(stop=None, state=None):
        sampler = DistributedSampler(data, num_replicas=2, rank=1, seed=9)
        loader = DataLoader(data, batch_size=3, sampler=sampler, seed=5)
        start = 0
        if state is not None:
            loader.load_state_dict(state)
            start = sampler.epoch
        out = []
        for epoch in range(start, 3):
            sampler.set_epoch(epoch)
            for step, b in enumerate(loader):
                out.append(tuple(np.asarray(t).copy() for t in b))
                if (epoch, step) == stop:
                    return out, loader.state_dict()
        return out, None

    full, _ = run()
    head, state = run(stop=(1, 1))
    tail, _ = run(state=state)
    _assert_same(head + tail, full)


def test_sampler_only_resume_keeps_the_order_and_the_global_rng():
    """A checkpoint that restores the sampler but not the loader (and dlsys's global RNG, which
    dropout draws from): the rest of the epoch comes in the same order and the global RNG is
    where the uninterrupted run's is (augmentation needs loader.state_dict())."""
    data = TensorDataset(np.arange(40))

    def make():
        sampler = DistributedSampler(data, num_replicas=2, rank=0, seed=2)
        return sampler, DataLoader(data, batch_size=4, sampler=sampler)   # seed=None

    ds.manual_seed(5)
    sampler, loader = make()
    sampler.set_epoch(1)
    want = _batches(loader)
    ds.rand(3)
    rng_after = ds.get_rng_state()

    ds.manual_seed(5)
    sampler, loader = make()
    sampler.set_epoch(1)
    it = iter(loader)
    head = [tuple(np.asarray(t).copy() for t in next(it)) for _ in range(2)]
    state, rng = sampler.state_dict(), ds.get_rng_state()

    ds.manual_seed(0)
    sampler, loader = make()
    sampler.load_state_dict(state)
    ds.set_rng_state(rng)
    sampler.set_epoch(1)
    _assert_same(head + _batches(loader), want)
    ds.rand(3)
    assert ds.get_rng_state() == rng_after


def test_loader_state_needs_a_dlsys_sampler():
    loader = DataLoader(TensorDataset(np.arange(4)), sampler=[3, 2, 1])
    with pytest.raises(TypeError, match="Sampler"):
        loader.state_dict()

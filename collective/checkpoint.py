"""Resumable checkpoints: ``col.save_checkpoint`` / ``col.load_checkpoint``.

    col.save_checkpoint(path, model=model, optimizer=opt, scheduler=sched, sampler=loader,
                        step=step, epoch=epoch)          # every rank calls it
    state = col.load_checkpoint(path, model=model, optimizer=opt, scheduler=sched,
                                sampler=loader)          # every rank; objects restored in place
    step, epoch = state["step"], state["epoch"]

Rank 0 writes one file, with ``ds.save`` (no pickle; a temporary file, fsync, rename, so a
crash never leaves half a checkpoint): rank 0's model parameters (identical on every rank after
a step) and optimizer and scheduler state, EVERY rank's buffers (BatchNorm's running statistics
are not synchronised, so they may differ), every rank's RNG states (dlsys's global generator,
numpy's legacy global one, Python's ``random``) and every rank's loader/sampler position inside
the epoch, the world size and a format version. Pass the DataLoader as ``sampler=``: its state
holds the sampler's position plus the epoch's base seed and the loader's generator that random
transforms need (a bare sampler's state resumes the order only). A DistributedOptimizer's step
count (part of its per-step layout check) is kept too. ``load_checkpoint`` reads on rank 0 and
broadcasts; each rank gets its own RNG state, buffers and loader position back, so a run
stopped anywhere (mid-epoch included) and resumed at the same world size continues bitwise
identically (dropout, shuffling, augmentation and schedulers included).

Another world size: a checkpoint taken between epochs (every loader position 0) resumes on any
number of ranks (with a warning): the next epochs are re-partitioned for the new size by the
DistributedSampler (rank r takes positions r, r + P, ... of each epoch's permutation), and rank
r gets the RNG state and buffers rank ``r % P_saved`` saved (a loader whose sampler is of
another kind there, e.g. a RandomSampler at one rank, keeps its own state). A mid-epoch
checkpoint is refused
at another world size (the rest of that epoch is sharded for the old one), with a clear error.
A missing, truncated or foreign file is a clear error on every rank, before anything changes.
"""

from __future__ import annotations

import random
import warnings

import numpy as np

from .collectives import allgather_object, broadcast_object
from .comm import context
from .optimizer import is_distributed_optimizer
from .parameters import broadcast_optimizer_state, broadcast_parameters
from .tensors import assign, to_numpy

FORMAT = "collective.checkpoint"
VERSION = 1
_ERRORS = {c.__name__: c for c in (FileNotFoundError, PermissionError, IsADirectoryError,
                                   ValueError, TypeError, KeyError, OSError)}


def _ds():
    import dlsys

    return dlsys


def _rng_state() -> dict:
    return {"dlsys": _ds().get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def _set_rng_state(state: dict):
    _ds().set_rng_state(state["dlsys"])
    np.random.set_state(tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _buffers(model) -> dict:
    """The model's state entries that are not parameters (host copies)."""
    params = {n for n, _ in model.named_parameters()}
    return {k: np.array(to_numpy(v)) for k, v in model.state_dict().items() if k not in params}


def _raise_everywhere(ctx, error: BaseException | None, what: str):
    """Rank 0's error (or None) raised on every rank: rank 0 raises it, the others an error of
    the same kind naming rank 0."""
    text = None if error is None else (type(error).__name__, str(error))
    if ctx.size > 1:
        text = broadcast_object(text, root=0)
    if text is None:
        return
    if error is not None:
        raise error
    kind = _ERRORS.get(text[0], RuntimeError)
    raise kind(f"{what} failed on rank 0: {text[0]}: {text[1]}")


def save_checkpoint(path, model=None, optimizer=None, scheduler=None, sampler=None, step=None,
                    **extra):
    """Write a checkpoint to ``path`` (exactly that name; rank 0 writes it, atomically). Every
    rank calls it. ``sampler``: a DataLoader (recommended) or a Sampler. ``extra``: more
    entries (numbers, strings, arrays, Tensors, dicts/lists of them) that ``load_checkpoint``
    returns. See the module docstring for what is stored."""
    ctx = context()
    ds = _ds()
    mine = {"rng": _rng_state(),
            "sampler": None if sampler is None else sampler.state_dict(),
            "buffers": None if model is None else _buffers(model)}
    every = allgather_object(mine) if ctx.size > 1 else [mine]
    error = None
    if ctx.rank == 0:
        try:
            doc = {"format": FORMAT, "version": VERSION, "world_size": ctx.size,
                   "step": step, "extra": extra,
                   "collective_step": (optimizer.step_count
                                       if is_distributed_optimizer(optimizer) else None),
                   "model": None if model is None else dict(model.state_dict()),
                   "optimizer": None if optimizer is None else optimizer.state_dict(),
                   "scheduler": None if scheduler is None else scheduler.state_dict(),
                   "sampler_kind": _kind(sampler),
                   "ranks": every}
            ds.save(doc, path)
        except Exception as exc:  # noqa: BLE001 - every rank must learn of it
            error = exc
    _raise_everywhere(ctx, error, f"save_checkpoint({str(path)!r})")


def _read(path, size):
    """Rank 0: the checkpoint document, validated against this job (or raise)."""
    name = repr(str(path))
    doc = _ds().load(path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"load_checkpoint: {name} is not a collective checkpoint (a ds.save "
                         f"file without its 'format' entry: written by something else)")
    if doc.get("version", 0) > VERSION:
        raise ValueError(f"load_checkpoint: {name} has format version {doc['version']}; this "
                         f"collective reads versions up to {VERSION}")
    saved = int(doc["world_size"])
    if saved != size:
        inside = [r for r, e in enumerate(doc["ranks"]) if _position(e["sampler"])]
        if inside:
            pos = _position(doc["ranks"][inside[0]]["sampler"])
            raise ValueError(
                f"load_checkpoint: {name} was saved by {saved} ranks in the middle of an epoch "
                f"(the loader of rank {inside[0]} was {pos} samples into it); this job has "
                f"{size} ranks. The rest of that epoch is sharded for {saved} ranks: resume on "
                f"{saved} ranks, or from a checkpoint taken between epochs (those resume on "
                f"any number of ranks)")
    return doc


def _kind(sampler):
    """"DataLoader(DistributedSampler)", "DistributedSampler", ... (None for None)."""
    if sampler is None:
        return None
    inner = getattr(sampler, "sampler", None)
    name = type(sampler).__name__
    return f"{name}({type(inner).__name__})" if inner is not None else name


def _position(state) -> int:
    if state is None:
        return 0
    inner = state.get("sampler", state)  # a DataLoader's state holds its sampler's
    return int(inner.get("position", 0))


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, sampler=None) -> dict:
    """Restore what ``save_checkpoint`` wrote into the objects given (in place) and return
    ``{"step": ..., **extra}``. Every rank calls it; rank 0 reads the file and broadcasts."""
    ctx = context()
    doc = error = None
    if ctx.rank == 0:
        try:
            doc = _read(path, ctx.size)
            for obj, key in ((model, "model"), (optimizer, "optimizer"),
                             (scheduler, "scheduler"), (sampler, "sampler_kind")):
                if obj is not None and doc[key] is None:
                    raise ValueError(f"load_checkpoint: {str(path)!r} holds no {key.split('_')[0]}"
                                     f" state, but {key.split('_')[0]}= was given")
            same_size = int(doc["world_size"]) == ctx.size
            if sampler is not None and doc["sampler_kind"] != _kind(sampler) and same_size:
                raise TypeError(f"load_checkpoint: {str(path)!r} holds the state of a "
                                f"{doc['sampler_kind']}, sampler= is a {_kind(sampler)}")
            if model is not None:
                model.load_state_dict(doc["model"])
            if optimizer is not None:
                optimizer.load_state_dict(doc["optimizer"])
        except Exception as exc:  # noqa: BLE001 - every rank must learn of it
            error = exc
    _raise_everywhere(ctx, error, f"load_checkpoint({str(path)!r})")
    small = None if doc is None else {k: doc[k] for k in ("world_size", "step", "extra",
                                                           "collective_step", "scheduler",
                                                           "ranks", "sampler_kind")}
    small = broadcast_object(small, root=0) if ctx.size > 1 else small
    saved = small["world_size"]
    if saved != ctx.size and ctx.rank == 0:
        warnings.warn(f"load_checkpoint: the checkpoint was written by {saved} ranks and this "
                      f"job has {ctx.size}: the next epochs are sharded for {ctx.size} ranks and "
                      f"rank r continues with the RNG state of rank r % {saved} (a correct run, "
                      f"but not bitwise identical to one at either size)"
                      + ("; the sampler state is not restored (it is a "
                         f"{small['sampler_kind']}'s, sampler= is a {_kind(sampler)})"
                         if sampler is not None and small["sampler_kind"] != _kind(sampler)
                         else ""), stacklevel=2)
    own = small["ranks"][ctx.rank % saved]
    if model is not None:
        broadcast_parameters(model.state_dict(), root=0)
        state = model.state_dict()
        for k, v in (own["buffers"] or {}).items():
            if k in state:
                assign(state[k], v)
    if optimizer is not None:
        broadcast_optimizer_state(optimizer, root=0)
        if is_distributed_optimizer(optimizer) and small["collective_step"] is not None:
            optimizer.step_count = small["collective_step"]
    if scheduler is not None:
        scheduler.load_state_dict(small["scheduler"])
    if sampler is not None and small["sampler_kind"] == _kind(sampler):
        sampler.load_state_dict(own["sampler"])
    _set_rng_state(own["rng"])
    return {"step": small["step"], **small["extra"]}

"""Checks that turn silent divergence into errors: the per-step layout check of
DistributedOptimizer, ``col.check_replicas`` and the non-finite gradient check.

Per-step layout check (``StepCheck``). Every DistributedOptimizer step hashes (the optimizer's
number among this process's DistributedOptimizers, the step number, the bucket layout, the
backward passes of the step) into a 63-bit fingerprint that travels with the step's first
bucket reduction, at no extra message:

- the non-blocking engine's ring (``algorithms/ring.py``): the first message of each
  reduce-scatter step of bucket 0 carries the fingerprint as its MPI tag (TAG_BASE + fp mod
  (MPI_TAG_UB - TAG_BASE): 29 bits with MPICH), received with ANY_TAG, and each rank merges
  what it receives with ``merge(a, b) = a if a == b else MISMATCH``, so after the P - 1
  reduce-scatter steps every rank knows whether all P fingerprints were equal. NOTE: an
  8-byte header in the message itself (an hindexed datatype, or a staged copy) made that
  ring 2-4x slower with MPICH (its fast shared-memory path takes only a plain contiguous
  buffer), the tag costs nothing measurable (``benchmarks/observability.py``); 29 bits miss
  a divergent step with probability 2**-29, and the next step draws a new fingerprint;
- the thread and inline engines: bucket 0's allreduce handshake agrees on its usual
  fingerprint combined with the step's.

When they differ, every rank finds out in the same reduction, gathers the fields (the error
path only) and raises ``StepMismatchError`` naming the first field that differs and the ranks.
Buckets are fixed when the optimizer is built (a parameter without a gradient is reduced as
zeros), so a different set of parameters with gradients never changes the buckets; what can
differ is which optimizer is stepped, the step count (a rank that skipped or repeated a step,
or restored a checkpoint alone) and the backward passes.

``check_replicas`` compares a checksum of every parameter (exact: CRC-32 of the bytes; with
``atol > 0``: the float64 sum) in one allreduce of [c, -c] with Max (MIN and MAX at once), and
gathers the checksums of the parameters that differ (error path only) to name the ranks.

The non-finite check runs after the reduction, on the reduced gradients, which are the same
bits on every rank: every rank reaches the same verdict without a message.
"""

from __future__ import annotations

import zlib

import numpy as np

from .algorithms import run
from .allreduce import allreduce
from .collectives import allgather_object
from .context import MISMATCH
from .process_sets import context_of
from .reduce_ops import Max
from .safety import check_same_everywhere, describe, digest, disagreement, fingerprint


class StepMismatchError(RuntimeError):
    """The ranks reduced the gradients of different steps (raised on every rank)."""


class ReplicaDriftError(RuntimeError):
    """The ranks hold different parameter values (raised on every rank)."""


class NonFiniteGradientError(FloatingPointError):
    """A reduced gradient holds NaN or Inf (raised on every rank, the same error)."""


FIELDS = ("optimizer", "step", "bucket layout", "backward passes")
TAG_BASE = 1024  # the ring's fingerprint tags are TAG_BASE + fp mod (TAG_UB - TAG_BASE)
MISMATCH_TAG = TAG_BASE - 1


class StepCheck:
    """The layout check of one DistributedOptimizer (see the module docstring)."""

    def __init__(self, ordinal: int, buckets):
        self.ordinal = ordinal
        self.layout = tuple((b.numel, b.dtype.str, b.wire.dtype.str) for b in buckets)
        self.layout_fp = digest(self.layout)
        self.fields = None  # this step's, while armed
        self.fp = 0
        self.tag = self.agreed_tag = 0  # the ring's: this rank's, and the merge so far
        self.incoming = -1
        self._status = None
        self._span = 0

    def arm(self, step: int, passes: int):
        """Bucket 0 of step ``step`` is being handed over, after ``passes`` backward passes."""
        self.fields = (self.ordinal, step, self.layout_fp, passes)
        self.fp = digest(self.fields)
        if not self._span:
            from mpi4py import MPI

            # NOTE: MPI guarantees tags up to 32767; MPICH gives 2**29 - 1
            self._span = MPI.COMM_WORLD.Get_attr(MPI.TAG_UB) - TAG_BASE
        self.tag = self.agreed_tag = TAG_BASE + self.fp % self._span
        self.incoming = -1

    # -- the ring's side (algorithms/ring.py) ------------------------------------------------
    @property
    def status(self):
        """The MPI Status the ring receives its left neighbour's first message with."""
        if self._status is None:
            from mpi4py import MPI

            self._status = MPI.Status()
        return self._status

    def received(self, tag: int):
        """The tag of the left neighbour's first message of a reduce-scatter step."""
        if tag >= 0:  # NOTE: -1 (MPI_ANY_TAG) when a completed request is tested again
            self.incoming = tag

    def merge(self):
        """A reduce-scatter step completed: fold in what the left neighbour sent; the next
        step sends the merge (MISMATCH_TAG once any two differed)."""
        if self.incoming != self.agreed_tag:
            self.agreed_tag = MISMATCH_TAG
        self.tag = self.agreed_tag

    # -- the end of the check ----------------------------------------------------------------
    def verify(self, comm, agreed=None):
        """After bucket 0's reduction (every rank calls it): raise StepMismatchError on every
        rank when the fingerprints differed. ``agreed``: a handshake's answer, else the
        ring's merged tags."""
        if agreed is None:
            agreed = MISMATCH if self.agreed_tag == MISMATCH_TAG else self.fp
        fields, self.fields = self.fields, None
        if agreed != MISMATCH:
            return
        infos = comm.allgather((fields, self.layout))
        if len({f for f, _ in infos}) == 1:
            return  # NOTE: cannot happen (equal fields give equal tags); never raise falsely
        raise StepMismatchError(_explain([f for f, _ in infos], [lay for _, lay in infos]))


def _groups(values):
    out: dict = {}
    for r, v in enumerate(values):
        out.setdefault(v, []).append(r)
    return out


def _ranks(rs):
    return f"rank {rs[0]}" if len(rs) == 1 else "ranks " + ", ".join(map(str, rs))


def _explain(fields, layouts) -> str:
    for i, name in enumerate(FIELDS):
        groups = _groups([f[i] for f in fields])
        if len(groups) < 2:
            continue
        if name == "bucket layout":
            groups = _groups([tuple(lay) for lay in layouts])
            shown = "; ".join(f"{len(lay)} buckets of {[n for n, _, _ in lay][:6]} elements on "
                              f"{_ranks(rs)}" for lay, rs in groups.items())
        elif name == "optimizer":
            shown = "; ".join(f"DistributedOptimizer #{v} (in creation order) on {_ranks(rs)}"
                              for v, rs in groups.items())
        else:
            shown = "; ".join(f"{v} on {_ranks(rs)}" for v, rs in groups.items())
        why = {"optimizer": "the ranks step their DistributedOptimizers in different orders",
               "step": "a rank skipped or repeated a step (or restored a checkpoint alone)",
               "bucket layout": "the ranks built different optimizers",
               "backward passes": "the ranks ran different numbers of backward passes "
                                  "before step()"}[name]
        return (f"DistributedOptimizer: the ranks are not reducing the same step: {name} "
                f"differs: {shown} ({why}). Every rank must call backward() and step() equally "
                f"often and in the same order; the optimizer cannot be used after this error")
    return "DistributedOptimizer: the step fingerprints differ (a hash collision?)"


def agree_by_message(comm, check: StepCheck) -> int:
    """The step fingerprint compared in one allreduce of [fp, -fp] with Max (the non-blocking
    engine's hierarchical rings, which carry no tag): ``check.fp`` when every rank's is equal,
    else MISMATCH (for ``StepCheck.verify``)."""
    from mpi4py import MPI

    both = np.array([check.fp, -check.fp], np.int64)
    comm.Allreduce(MPI.IN_PLACE, both, op=MPI.MAX)
    return check.fp if both[0] == -both[1] else MISMATCH


def checked_allreduce(ctx, wire, op, algorithm: str, check: StepCheck):
    """Bucket 0's blocking allreduce (thread and inline engines): its handshake agrees on
    the call's fingerprint combined with the step's."""
    desc = describe("allreduce", wire.shape, wire.dtype, op, algorithm)
    agreed = run(ctx, digest((fingerprint(desc), check.fp)), wire, op, algorithm)
    if agreed == MISMATCH:
        comm = ctx.comm
        same = len(set(comm.allgather(check.fields))) == 1
        if same:  # the calls themselves differ (cannot happen for a checked layout)
            disagreement(comm, desc, None)
        check.verify(comm, MISMATCH)
    check.fields = None


# -- replicas -------------------------------------------------------------------------------------

def _named_params(obj):
    named_parameters = getattr(obj, "named_parameters", None)
    if callable(named_parameters):
        return [(str(n), p) for n, p in named_parameters()]
    if isinstance(obj, dict):
        return [(str(n), p) for n, p in obj.items()]
    items = list(obj)
    if items and isinstance(items[0], tuple) and len(items[0]) == 2:
        return [(str(n), p) for n, p in items]
    return [(f"param.{i}", p) for i, p in enumerate(items)]


def _checksum(arr: np.ndarray, atol: float):
    if atol:
        return float(np.sum(arr, dtype=np.float64))
    return zlib.crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def check_replicas(model_or_params, atol: float = 0.0, process_set=None):
    """Raise ``ReplicaDriftError`` on every rank when any parameter differs between ranks.

    ``model_or_params``: a Module (its ``named_parameters()``), a dict or (name, tensor)
    pairs, or a list of tensors/arrays. ``atol=0``: bitwise comparison (a CRC-32 of each
    parameter's bytes); ``atol > 0``: a parameter is reported when its sum differs by more than
    ``atol * numel`` between ranks (sums can hide opposite differences: use 0 for the exact
    test). Cost: one pass over the parameters and one allreduce of 2 values per parameter
    (plus one handshake on the names); ``benchmarks/observability.py`` measures it.
    ``process_set``: compare among the set's ranks only (a col.ProcessSet; None: the world).
    """
    ctx = context_of(process_set, "check_replicas")
    named = _named_params(model_or_params)
    arrays = [np.asarray(p) for _, p in named]
    if ctx.size == 1:
        return
    check_same_everywhere(ctx, [(n, a.shape, a.dtype.str) for (n, _), a in zip(named, arrays,
                                                                               strict=True)],
                          "check_replicas: the parameters (name, shape, dtype)")
    atol = float(atol)
    dtype = np.float64 if atol else np.int64
    mine = np.array([_checksum(a, atol) for a in arrays], dtype=dtype)
    both = allreduce(np.concatenate([mine, -mine]), op=Max, algorithm="auto",
                     process_set=process_set)
    hi, lo = both[:len(mine)], -both[len(mine):]
    bad = np.nonzero(hi - lo > atol * np.array([max(a.size, 1) for a in arrays]))[0] if atol \
        else np.nonzero(hi != lo)[0]
    if not len(bad):
        return
    values = allgather_object([mine[i].item() for i in bad[:20]])
    parts = []
    for k, i in enumerate(bad[:20]):
        groups = _groups([v[k] for v in values])
        parts.append(f"{named[i][0]!r} ({' vs '.join(_ranks(rs) for rs in groups.values())})")
    more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
    what = f"sums differing by more than atol={atol:g} per element" if atol else "bitwise"
    raise ReplicaDriftError(f"check_replicas: {len(bad)} of {len(named)} parameters differ "
                            f"across ranks ({what}): {', '.join(parts)}{more}")


# -- non-finite gradients -------------------------------------------------------------------------

def nonfinite(buckets) -> list:
    """[(name, NaN count, Inf count)] of the (reduced) gradients that are not finite."""
    bad = []
    for b in buckets:
        host = b.host
        if np.isfinite(host.sum(dtype=np.float64)):  # NOTE: one pass; overflow checked below
            continue
        for name, off, n in zip(b.names, b.offsets, b.numels, strict=True):
            g = host[off:off + n]
            nan = int(np.count_nonzero(np.isnan(g)))
            inf = int(np.count_nonzero(np.isinf(g)))
            if nan or inf:
                bad.append((name, nan, inf))
    return bad


def nonfinite_message(bad, step) -> str:
    shown = ", ".join(f"{n!r} ({nan} NaN, {inf} Inf)" for n, nan, inf in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    return (f"DistributedOptimizer: the reduced gradients of {len(bad)} parameter(s) are not "
            f"finite at step {step}: {shown}{more} (the same on every rank; "
            f"skip_nonfinite=True skips such steps instead)")

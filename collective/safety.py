"""Mismatch safety: every collective call starts by agreeing on what it is.

Each call describes itself (collective, shape, dtype, op, algorithm, root ...) and hashes that
description into a 63-bit fingerprint; every rank learns whether all fingerprints are equal,
and all ranks learn the same thing, before any data moves. Two protocols, chosen by topology
(the same on every rank):

- one node (the usual case): a round through the shared-memory window (``shared_window``,
  ``algorithms.shared_memory``): each rank publishes its fingerprint and reads everyone
  else's; ~1-2 us, no MPI message. Its allreduce ("shared_memory") carries the data in the same
  round, so the check then costs nothing extra.
- across nodes (or ``COLLECTIVE_SHM=0``): the fingerprints are combined with the monoid
  ``merge(a, b) = a if a == b else MISMATCH`` along a recursive-doubling butterfly of MPI
  messages (``algorithms.recursive_doubling``), each received into a buffer of fixed capacity,
  so a rank that sends more than its peer expects can never cause a "message truncated"
  abort. Recursive doubling carries payloads of up to SMALL_MAX bytes in the same messages.

Either way the handshake has the same message pattern whatever the arguments were, so a
mismatch can never hang. On ``MISMATCH`` every rank joins one ``allgather`` of the
descriptions (the error path only) and raises ``ValueError`` naming the ranks and the fields
that differed. A rank whose own arguments were invalid (bad dtype, read-only buffer ...) raises
its own ``TypeError``/``ValueError`` and the others a ``ValueError`` naming that rank and its
error, so no rank is left waiting.

``check_same_everywhere`` applies the same idea to a whole list (DistributedOptimizer's
parameters and settings, the names broadcast_parameters fills): one handshake on its
fingerprint, and the lists are gathered only to name the difference.

Collective calls of one rank must not run concurrently from two threads (as for MPI
collectives on one communicator); one communication thread is fine.
"""

from __future__ import annotations

import hashlib
import time

from .algorithms import handshake
from .context import MISMATCH

_FP_CACHE: dict = {}  # description -> fingerprint (descriptions repeat: hashing costs ~1 us)


def _digest(obj) -> int:
    digest = hashlib.blake2b(repr(obj).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def digest(obj) -> int:
    """``fingerprint`` without the cache, for values that change from call to call."""
    return _digest(obj)


def fingerprint(desc: tuple) -> int:
    """A deterministic (not Python-``hash``-randomised) 63-bit fingerprint of a description."""
    fp = _FP_CACHE.get(desc)
    if fp is None:
        fp = _digest(desc)
        if len(_FP_CACHE) > 4096:
            _FP_CACHE.clear()
        _FP_CACHE[desc] = fp
    return fp


def error_fingerprint() -> int:
    return fingerprint(("<local error>",))


FIELDS = ("collective", "shape", "dtype", "op", "algorithm", "root", "name", "options")

#: the collective a rank that has joined (``col.join``) publishes in every handshake; its
#: description's options list the DistributedOptimizer steps (``STEP``) it takes part in
JOIN = "join"
#: the handshake that starts each DistributedOptimizer step under ``with col.join(opt)``
STEP = "join_step"


def describe(collective, shape=None, dtype=None, op=None, algorithm=None, root=None, name=None,
             options=None) -> tuple:
    """The call's description (hashable, picklable, with a process-independent repr).
    ``name``: the user's name for the call (Horovod's ``name=``); ``options``: a tuple of
    (key, value) pairs of further arguments that must agree (scale factors, splits given)."""
    if shape is not None and type(shape) is not tuple:
        shape = tuple(int(s) for s in shape)
    return (collective, shape, dtype, op, algorithm, root, name, options)


def _group(pairs):
    """{value: [ranks]} in first-seen order, from (rank, value) pairs."""
    out: dict = {}
    for r, v in pairs:
        out.setdefault(v, []).append(r)
    return out


def _ranks(rs):
    return f"rank {rs[0]}" if len(rs) == 1 else "ranks " + ", ".join(map(str, rs))


def agree(ctx, desc: tuple, error: BaseException | None = None, shadowable: bool = False):
    """Handshake on ``desc``; raises on every rank when the ranks disagree or one failed
    (``error``: this rank's own failure, raised here after the others learned of it).
    ``shadowable``: a call that ranks which have joined (``col.join``) take part in; when
    they are the only difference, they have agreed to run it too and the handshake is done
    again (see ``disagreement``). Returns the ranks of the call's communicator that have
    joined (empty when none has). With asynchronous calls in flight on the communicator
    (``collective.handles``) it waits for its turn after them."""
    ex = ctx.executor
    if ex is not None and ex.must_route():
        return ex.blocking(desc[0] or "collective", agree, ctx, desc, error, shadowable)
    fp = error_fingerprint() if error is not None else fingerprint(desc)
    if ctx.size > 1:
        return _checked_handshake(ctx, fp, desc[0] or "collective", desc, error, None,
                                  shadowable)
    if error is not None:
        raise error
    return ()


def check_same_everywhere(ctx, signature: list, what: str):
    """Raise ValueError on every rank, naming the first entry that differs and the ranks,
    unless every rank passes an equal ``signature`` (a list of entries with a stable repr)."""
    ex = ctx.executor
    if ex is not None and ex.must_route():  # asynchronous calls in flight go first
        return ex.blocking(what, check_same_everywhere, ctx, signature, what)
    if ctx.size > 1:
        _checked_handshake(ctx, _digest((what, signature)), what.split(":")[0].split(" (")[0],
                           describe(what), None, signature)


def _checked_handshake(ctx, fp, name, desc, error, detail, shadowable=False):
    """The handshake, watched by the stall watchdog and recorded on the timeline (NOTE:
    observability: ``ctx.monitor``, ``ctx.timeline``); raises on a mismatch (``error``, this
    rank's own failure, after the others learned of it), or returns the ranks that have joined
    (see ``agree``)."""
    token, tl = ctx.monitor.enter(name), ctx.timeline
    try:
        joined = ()
        while True:
            t0 = time.perf_counter() if tl is not None else 0.0
            agreed = handshake(ctx, fp)
            if tl is not None:
                tl.span(2, f"{name} handshake", t0, time.perf_counter())
            if agreed != MISMATCH:
                break
            joined = disagreement(ctx.comm, desc, error, detail=detail, ranks=ctx.ranks,
                                  shadowable=shadowable)
    finally:
        ctx.monitor.exit(token)
    if error is not None:
        raise error
    return joined


def _first_difference(what, details):
    """The first entry that differs, from (world rank, signature) pairs."""
    r0, ref = details[0]
    for r, sig in details[1:]:
        if sig == ref:
            continue
        for pos, (a, b) in enumerate(zip(ref, sig, strict=False)):
            if a != b:
                return (f"{what} differ across ranks: entry {pos} is {a} on rank {r0} but {b} "
                        f"on rank {r}")
        return (f"{what} differ across ranks: rank {r0} has {len(ref)} entries, rank {r} has "
                f"{len(sig)} (first extra entry: "
                f"{(ref if len(ref) > len(sig) else sig)[min(len(ref), len(sig))]})")
    return None


def exchange(comm, desc: tuple, error: BaseException | None = None, detail=None) -> list:
    """Every rank's (description, error text, detail): the allgather that every rank of a
    failed handshake enters (ranks that have joined too, from their loop in ``collective.join``)."""
    errtext = None if error is None else f"{type(error).__name__}: {error}"
    return comm.allgather((desc, errtext, detail))


def disagreement(comm, desc: tuple, error: BaseException | None, detail=None, *, ranks=None,
                 shadowable=False):
    """The error path, entered by every rank together: gather and raise. ``detail``: what
    ``check_same_everywhere`` compares (None for a collective call). ``ranks``: the world
    ranks of ``comm``'s members (a process set; None for the world), so that messages name
    world ranks.

    Ranks that have joined (``col.join``) publish ``JOIN`` in every handshake and enter this
    allgather from their loop. When they are the only difference and the call is
    ``shadowable`` (the ranks still active agree on it and none failed), this returns their
    ranks (of ``comm``) instead of raising: they take part in the call with neutral inputs,
    and the caller does its handshake again. Every rank decides from the same gathered
    descriptions, so all make the same choice."""
    gathered = exchange(comm, desc, error, detail)
    joined = [r for r, (d, _, _) in enumerate(gathered) if d and d[0] == JOIN]
    world = list(range(len(gathered))) if ranks is None else list(ranks)
    # (world rank, (description, error text, detail)) of the ranks still active
    infos = [(world[r], i) for r, i in enumerate(gathered) if r not in joined]
    same = len({d for _, (d, _, _) in infos}) == 1
    failed = [(r, e) for r, (_, e, _) in infos if e is not None]
    if joined and same and not failed:
        # an optimizer step only with the ranks that joined inside `with col.join(opt)`
        if shadowable and (desc[0] != STEP
                           or all(desc in (gathered[r][0][7] or ()) for r in joined)):
            return joined
        raise RuntimeError(
            f"{desc[0]}: {_ranks([world[r] for r in joined])} joined (col.join()) and cannot "
            f"take part in {desc[0]}(); while a rank has joined, the others may run only "
            "allreduce, grouped_allreduce and, under `with col.join(optimizer)`, "
            "DistributedOptimizer steps")
    name = next((d[0] for _, (d, _, _) in infos if d and d[0]), "collective")
    if failed:
        if error is not None:
            raise error
        lines = "; ".join(f"rank {r}: {e}" for r, e in failed)
        raise ValueError(f"{name}: {_ranks([r for r, _ in failed])} failed before the collective "
                         f"could start ({lines})")
    if same and infos[0][1][2] is not None:
        message = _first_difference(name, [(r, x) for r, (_, _, x) in infos])
        if message is not None:
            raise ValueError(message)
    parts = []
    for i, field in enumerate(FIELDS):
        groups = _group([(r, d[i] if len(d) > i else None) for r, (d, _, _) in infos])
        if len(groups) > 1:
            vals = "; ".join(f"{_fmt(field, v)} on {_ranks(rs)}" for v, rs in groups.items())
            parts.append(f"{field} differs: {vals}")
    if not parts:  # cannot happen unless fingerprints collide or descriptions are unhashable
        parts.append("the call descriptions differ: " + "; ".join(
            f"rank {r}: {d}" for r, (d, _, _) in infos))
    raise ValueError(f"{name}: the ranks passed mismatched arguments: " + " | ".join(parts))


def _fmt(field, v):
    if field == "shape" and v is not None:
        if v and v[0] == -1:  # allgather: the first dimension may differ
            return "shape (*, " + ", ".join(map(str, v[1:])) + ")"
        return f"shape {v}"
    if field == "options" and v is not None:
        return ", ".join(f"{k}={val}" for k, val in v)
    return f"{field} {v}" if field != "collective" else f"{v}()"

"""Every setting of collective, read from the environment once (at the first ``get()``).

==========================  ==================  =================================================
variable                    default             meaning
==========================  ==================  =================================================
COLLECTIVE_SHM              1                   0: no shared-memory window on one node; the
                                                mismatch handshake and small allreduces then use
                                                MPI messages, as across nodes
COLLECTIVE_SHM_SLOT         2097152             payload bytes per shared-memory slot (each rank
                                                has two; capped at 8 MiB / P, >= 64 KiB)
COLLECTIVE_WAIT             poll                how a rank waits for a message: ``poll`` tests
                                                and yields the CPU between tests (ranks sharing
                                                cores let the peer run), ``block`` MPI_Wait
COLLECTIVE_TUNING           on                  ``off`` (also 0/default/defaults): ``auto``
                                                uses built-in costs, nothing is measured
COLLECTIVE_RETUNE           0                   1: measure again even when a cached table exists
COLLECTIVE_CACHE_DIR        ~/.cache/collective  where the measured tuning tables are kept
COLLECTIVE_EXIT_TIMEOUT     20                  seconds a finished rank waits at exit for the
                                                others before aborting the job
COLLECTIVE_ABORT_GRACE      0.5                 seconds an aborting rank waits for the launcher
                                                to forward its last output
COLLECTIVE_STALL_WARN       60                  seconds a rank waits in a collective before rank
                                                0 sends every waiting rank a stall report (the
                                                ranks missing and where they are); 0: no
                                                watchdog at all (collective/stall.py)
COLLECTIVE_STALL_ABORT      600                 seconds of waiting after which the job is aborted
                                                with that report; 0: never
COLLECTIVE_TIMELINE         (none)              a path: record a Chrome-trace timeline from
                                                ``col.init()`` to exit (collective/timeline.py)
COLLECTIVE_STEP_CHECK       1                   0: DistributedOptimizer steps carry no layout
                                                check (collective/checks.py; for measuring it)
COLLECTIVE_RANKS_FILE       (none)              set by ./mpirun.sh: rank 0 writes "pid host
                                                rank" lines there at init, so the launcher can
                                                name a rank killed by a signal
==========================  ==================  =================================================

No other module of collective reads ``os.environ``. A value that does not parse raises
``ValueError`` naming the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TUNING_OFF = ("off", "0", "default", "defaults")


@dataclass(frozen=True)
class Config:
    shm: bool
    shm_slot_bytes: int
    wait: str  # "poll" | "block"
    tuning: bool  # False: built-in costs, no measurement
    retune: bool
    cache_dir: Path
    exit_timeout_s: float
    abort_grace_s: float
    stall_warn_s: float  # 0: no watchdog
    stall_abort_s: float  # 0: never abort
    timeline: str  # "" : no timeline at start-up
    step_check: bool
    ranks_file: str  # "": none


def _number(env, name, default, kind):
    text = env.get(name, "")
    if text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise ValueError(f"{name}={text!r} must not be negative")
    return value


def _choice(env, name, default, choices):
    value = env.get(name, "") or default
    if value not in choices:
        raise ValueError(f"{name}={value!r}: choose one of {', '.join(choices)}")
    return value


def from_environ(env=None) -> Config:
    """The settings in ``env`` (default ``os.environ``); see the table above."""
    env = os.environ if env is None else env
    cache = env.get("COLLECTIVE_CACHE_DIR") or Path.home() / ".cache" / "collective"
    return Config(
        shm=_choice(env, "COLLECTIVE_SHM", "1", ("0", "1")) == "1",
        shm_slot_bytes=_number(env, "COLLECTIVE_SHM_SLOT", 2 << 20, int),
        wait=_choice(env, "COLLECTIVE_WAIT", "poll", ("poll", "block")),
        tuning=env.get("COLLECTIVE_TUNING", "").lower() not in _TUNING_OFF,
        retune=_choice(env, "COLLECTIVE_RETUNE", "0", ("0", "1")) == "1",
        cache_dir=Path(cache),
        exit_timeout_s=_number(env, "COLLECTIVE_EXIT_TIMEOUT", 20.0, float),
        abort_grace_s=_number(env, "COLLECTIVE_ABORT_GRACE", 0.5, float),
        stall_warn_s=_number(env, "COLLECTIVE_STALL_WARN", 60.0, float),
        stall_abort_s=_number(env, "COLLECTIVE_STALL_ABORT", 600.0, float),
        timeline=env.get("COLLECTIVE_TIMELINE", ""),
        step_check=_choice(env, "COLLECTIVE_STEP_CHECK", "1", ("0", "1")) == "1",
        ranks_file=env.get("COLLECTIVE_RANKS_FILE", ""),
    )


_config: Config | None = None  # this process's settings, read at the first get()


def get() -> Config:
    global _config
    if _config is None:
        _config = from_environ()
    return _config

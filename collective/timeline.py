"""``col.start_timeline(path)`` / ``col.stop_timeline()`` (Horovod's names): record a
Chrome-trace / Perfetto timeline of every rank (what it holds: ``collective/trace.py``).

    col.start_timeline("timeline.json")     # every rank
    for step in ...: train_step()
    col.stop_timeline()                     # every rank; rank 0 writes the merged file
    # python -m collective.explain timeline.json

``COLLECTIVE_TIMELINE=path`` records from ``col.init()`` to the end of the program instead.
"""

from __future__ import annotations

from . import trace
from .comm import context


def start_timeline(file_path, mark_cycles=False):
    """Start recording a timeline that ``stop_timeline()`` writes to ``file_path`` (rank 0's
    path is the one used). Every rank calls it. ``mark_cycles`` is accepted for Horovod's
    signature and has no effect."""
    trace.begin(context(), file_path)


def stop_timeline(timeout: float = 60.0):
    """Stop recording; rank 0 writes the merged file and returns its path (None on the other
    ranks, and when nothing was recorded). Every rank calls it; a rank whose events do not
    reach rank 0 within ``timeout`` seconds is left out, with a warning."""
    return trace.end(context(), timeout)

"""The stall watchdog and faults (DESIGN.md guarantee 8, issue 15): a rank that stops taking
part is named, with where it is, and the job ends; a rank killed by SIGKILL ends the job with a
message naming it."""

from __future__ import annotations

import re

import pytest
from mpi_harness import RANKS, run_ranks

from collective import stall

STALL_ENV = {"COLLECTIVE_STALL_WARN": "1.5", "COLLECTIVE_STALL_ABORT": "5"}


def _line_of(marker, path=RANKS / "faults.py"):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


@pytest.mark.mpi
def test_stuck_rank_is_named_with_its_line_and_the_job_aborts(tmp_path):
    res = run_ranks("faults", 3, timeout=40, tmp_path=tmp_path, env={"FAULT": "stuck",
                                                                      **STALL_ENV})
    out = res.output
    assert res.returncode != 0, out
    assert res.elapsed < 30, res.elapsed
    assert "training ended" not in out, out
    # every waiting rank's log gets rank 0's report, once, before the abort
    warn = re.findall(r"\[rank (\d)/3\] collective stall report \(from rank 0\): ranks 0, 1 "
                      r"have waited [\d.]+ s in DistributedOptimizer.synchronize", out)
    assert sorted(warn) == ["0", "1"], out
    assert "aborting the job: ranks 0, 1 have waited" in out, out
    report = out[out.index("collective stall report"):]
    assert "1 of 3 ranks has not entered it" in report, report
    assert "faults.py" in report and "in main)" in report, report  # the waiting ranks' call
    line = _line_of("# the stuck line")  # a loop's frame is at its first line or its body
    stuck = f"faults.py:({line - 1}|{line}) in spin_forever"
    assert re.search(r"rank 2 \([^)]*\): not in a collective call; last completed: "
                     r"allreduce \(#\d+\); now at\n\s+\S*" + stuck, report), report
    assert "frozen runpy" not in report, report


@pytest.mark.mpi
def test_stopped_rank_that_cannot_answer_is_named_and_the_job_aborts(tmp_path):
    res = run_ranks("faults", 2, timeout=40, tmp_path=tmp_path, env={"FAULT": "stopped",
                                                                      **STALL_ENV})
    assert res.returncode != 0, res.output
    assert res.elapsed < 30, res.elapsed
    assert "rank 1: did not answer within" in res.output, res.output
    assert "aborting the job: rank 0 has waited" in res.output, res.output


@pytest.mark.mpi
def test_sigkill_of_a_rank_ends_the_job_naming_it(tmp_path):
    res = run_ranks("faults", 2, timeout=40, tmp_path=tmp_path, env={"FAULT": "sigkill"})
    assert res.returncode != 0, res.output
    assert res.elapsed < 30, res.elapsed
    assert "training ended" not in res.output, res.output
    assert re.search(r"RANK 1, PID \d+ RUNNING AT", res.output), res.output


def _state(rank, active, seq, name, frames, waited=3.0):
    return {"rank": rank, "host": "h", "pid": 100 + rank, "active": active, "seq": seq,
            "name": name, "waited": waited if active else 0.0, "last_seq": seq - 1,
            "last_name": "allreduce", "frames": frames}


def test_report_names_missing_ranks_and_where_they_are():
    lib = stall.__file__
    user = ("/job/train.py", 40, "train_step")
    waiting = [(lib, 10, "round"), (lib, 20, "allreduce"), user, ("/job/train.py", 90, "main")]
    states = {0: _state(0, True, 7, "allreduce", waiting),
              1: _state(1, False, 6, "allreduce", [("/job/train.py", 12, "save"), user]),
              2: None,
              3: _state(3, True, 7, "barrier", waiting)}
    text = stall.compose(states[0], states, 4, warn=2, abort_s=0, answer_s=1, aborting=False)
    assert "rank 0 has waited 3.0 s in allreduce (collective call #7, called at " \
           "/job/train.py:40 in train_step)" in text, text
    assert "3 of 4 ranks have not entered it" in text, text
    assert "rank 1 (h, pid 101): not in a collective call; last completed: allreduce (#5)" in text
    assert "/job/train.py:12 in save" in text, text
    assert "rank 2: did not answer within 1 s" in text, text
    assert "rank 3 (h, pid 103): waiting for 3.0 s in another collective call, barrier" in text
    assert "is aborted never (COLLECTIVE_STALL_ABORT=0)" in text, text
    # resolved meanwhile: no report
    states[0] = _state(0, False, 7, "allreduce", [user])
    assert stall.compose(_state(0, True, 7, "allreduce", waiting), states, 4, 2, 0, 1,
                         False) is None


def test_monitor_tracks_the_outermost_call_of_the_main_thread_only():
    import threading

    m = stall.Monitor()
    m.exit(m.enter("barrier"))
    outer = m.enter("allreduce")
    assert outer and m.active and m.seq == 2 and m.last_completed() == (1, "barrier")
    assert not m.enter("broadcast")  # nested: not tracked
    m.exit(False)
    assert m.active and m.name == "allreduce"
    m.exit(outer)
    assert not m.active and m.last_completed() == (2, "allreduce")
    seen = []
    t = threading.Thread(target=lambda: seen.append(m.enter("broadcast")))
    t.start()
    t.join()
    assert seen == [False] and m.seq == 2


def test_observability_settings():
    from collective import config

    cfg = config.from_environ({})
    assert (cfg.stall_warn_s, cfg.stall_abort_s, cfg.timeline, cfg.step_check) == \
        (60.0, 600.0, "", True)
    cfg = config.from_environ({"COLLECTIVE_STALL_WARN": "0", "COLLECTIVE_STALL_ABORT": "2.5",
                               "COLLECTIVE_TIMELINE": "/tmp/t.json",
                               "COLLECTIVE_STEP_CHECK": "0"})
    assert (cfg.stall_warn_s, cfg.stall_abort_s, cfg.timeline, cfg.step_check) == \
        (0.0, 2.5, "/tmp/t.json", False)
    with pytest.raises(ValueError, match="COLLECTIVE_STALL_ABORT"):
        config.from_environ({"COLLECTIVE_STALL_ABORT": "-1"})
    with pytest.raises(ValueError, match="COLLECTIVE_STEP_CHECK"):
        config.from_environ({"COLLECTIVE_STEP_CHECK": "yes"})

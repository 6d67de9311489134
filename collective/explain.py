"""Explain my scaling: ``python -m collective.explain TIMELINE.json [--png PATH] [--json PATH]``.

Reads a timeline written by ``col.stop_timeline()`` (or ``COLLECTIVE_TIMELINE``) and prints one
table: per step (medians over the steps, the first one left out as warm-up when there are more
than two; each step's numbers are those of its slowest rank, the one that waited least in
``step()``) the time in forward, backward, update and the rest, the communication that was
exposed (that rank's wait in ``step()`` for reductions backward did not hide), how much longer
the other ranks waited for it (load imbalance), the time the reductions were in flight and
the bus bandwidth that gives (bytes over time in flight, which includes waiting for peers)
against the link's (the ring's costs in the tuning table the timeline carries, i.e. what
``col.init()`` measured), the bucket size an alpha-beta fit of those costs recommends and the
weak-scaling efficiency it predicts at 2x and 4x the ranks. Plus a PNG of one step (the
median one) when matplotlib is installed (the ``plot`` extra).

The model (stated so it can be judged): the ring's measured time per call is fitted as
T(n) = alpha + beta n (sizes >= 256 KiB), then scaled to P' ranks as a ring scales:
alpha (P'-1)/(P-1) (2(P'-1) latency steps) and beta (P'-1)/P' * P/(P-1) (bytes per rank),
assuming each rank keeps the same link (more nodes, not more ranks per core). Buckets are
reduced one at a time and the last can only start when backward ends, so the exposed time is
max(T(last bucket), sum of T(buckets) - backward). What the engine loses beyond that model at
the measured size (progress only between gradients, scheduling) is carried over as a constant.
Efficiency = compute / (compute + exposed), compute being the step time minus the exposed time.

``summarize(doc)`` returns the numbers as a dict and ``table(summary)`` the text, for scripts
(e.g. ``benchmarks/scaling.py``) that want to print the table after their own runs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

_MB = 1 << 20


def load(path) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if "traceEvents" not in doc or "collective" not in doc.get("otherData", {}):
        raise ValueError(f"{path}: not a collective timeline (no otherData.collective)")
    return doc


def _per_rank(doc):
    """{rank: {"steps": {n: {phase: (ts, dur)}}, "buckets": [(ts, dur, bytes)]}} in us."""
    out: dict = {}
    for ev in doc["traceEvents"]:
        if ev.get("ph") != "X":
            continue
        r = out.setdefault(ev["pid"], {"steps": {}, "buckets": [], "events": []})
        r["events"].append(ev)
        args = ev.get("args", {})
        if ev["tid"] == 0 and "step" in args:
            r["steps"].setdefault(args["step"], {})[ev["name"]] = (ev["ts"], ev["dur"])
        elif ev["tid"] == 1 and "bytes" in args:
            r["buckets"].append((ev["ts"], ev["dur"], args["bytes"]))
    return out


def _step_rows(rank):
    """{n: row} of complete steps: durations (s) of the phases, the period since the previous
    step's end, the buckets in flight (s) and their bytes."""
    steps = {n: s for n, s in rank["steps"].items() if "step" in s}
    ends = sorted((s["step"][0] + s["step"][1], n) for n, s in steps.items())
    buckets = sorted(rank["buckets"], key=lambda b: b[0] + b[1])
    rows, k, prev = {}, 0, None
    for end, n in ends:
        s, flight, nbytes, sizes = steps[n], 0.0, 0, []
        while k < len(buckets) and buckets[k][0] + buckets[k][1] <= end + 1e-3:
            flight += buckets[k][1]
            nbytes += buckets[k][2]
            sizes.append(buckets[k][2])
            k += 1
        if prev is not None:
            dur = {p: s[p][1] * 1e-6 if p in s else 0.0
                   for p in ("forward", "backward", "synchronize", "update")}
            rows[n] = dict(dur, period=(end - prev) * 1e-6, flight=flight * 1e-6, bytes=nbytes,
                           sizes=sizes, start=prev, end=end)
        prev = end
    return rows


def _ring_fit(tuning, size):
    """(alpha s, beta s/B, best measured bus bandwidth B/s) of the ring, or None."""
    if not tuning or "ring" not in tuning.get("times", {}):
        return None
    n = np.asarray(tuning["sizes"], float)
    t = np.asarray(tuning["times"]["ring"], float)
    keep = n >= 256 << 10
    if keep.sum() < 2:
        keep = np.ones_like(n, bool)
    beta, alpha = np.polyfit(n[keep], t[keep], 1)
    factor = 2 * (size - 1) / size
    return max(alpha, 0.0), max(beta, 1e-15), float(np.max(factor * n / t))


def _scaled(fit, size, to):
    alpha, beta, _ = fit
    return (alpha * (to - 1) / (size - 1),
            beta * ((to - 1) / to) / ((size - 1) / size))


def _exposed(sizes, backward, alpha, beta):
    times = [alpha + beta * n for n in sizes]
    return max(times[-1], sum(times) - backward) if times else 0.0


def _split(total, cap):
    k = max(1, math.ceil(total / cap))
    return [cap] * (k - 1) + [total - cap * (k - 1)]


def summarize(doc) -> dict:
    meta = doc["otherData"]["collective"]
    size = int(meta["size"])
    ranks = _per_rank(doc)
    rows = {r: _step_rows(v) for r, v in ranks.items()}
    common = sorted(set.intersection(*(set(x) for x in rows.values()))) if rows else []
    if len(common) > 2:
        common = common[1:]  # warm-up
    if not common:
        raise ValueError("the timeline holds fewer than two DistributedOptimizer steps on every "
                         "rank: record more steps (col.start_timeline before the loop)")
    # NOTE: the rank that waited least in step() is the one the others waited for: its wait
    # is the communication nobody hid; the others' extra wait is load imbalance
    slowest = [min(rows, key=lambda r, n=n: rows[r][n]["synchronize"]) for n in common]
    picked = [rows[r][n] for r, n in zip(slowest, common, strict=True)]
    for p, n in zip(picked, common, strict=True):
        p["imbalance"] = max(rows[r][n]["synchronize"] for r in rows) - p["synchronize"]

    def med(key):
        return float(np.median([p[key] for p in picked]))

    out = {"size": size, "hosts": len(set(meta["hosts"])), "steps": len(common),
           "step_s": med("period"), "forward_s": med("forward"), "backward_s": med("backward"),
           "update_s": med("update"), "exposed_s": med("synchronize"),
           "imbalance_s": med("imbalance"),
           "in_flight_s": med("flight"), "bytes": int(np.median([p["bytes"] for p in picked])),
           "buckets": int(np.median([len(p["sizes"]) for p in picked]))}
    out["other_s"] = max(0.0, out["step_s"] - out["forward_s"] - out["backward_s"]
                         - out["update_s"] - out["exposed_s"])
    out["compute_s"] = max(out["step_s"] - out["exposed_s"], 1e-12)
    out["hidden"] = (max(0.0, 1 - out["exposed_s"] / out["in_flight_s"])
                     if out["in_flight_s"] else None)
    factor = 2 * (size - 1) / size if size > 1 else 0.0
    out["busbw"] = factor * out["bytes"] / out["in_flight_s"] if out["in_flight_s"] else None
    out["efficiency"] = out["compute_s"] / out["step_s"]
    median = picked[int(np.argsort([p["period"] for p in picked])[len(picked) // 2])]
    out["median_step"] = {"rank": slowest[picked.index(median)],
                          "window_us": [median["start"], median["end"]]}
    fit = _ring_fit(meta.get("tuning"), size) if size > 1 else None
    out["fit"] = None
    if fit is not None:
        alpha, beta, best = fit
        sizes = median["sizes"] or [out["bytes"]]
        model_now = _exposed(sizes, out["backward_s"], alpha, beta)
        offset = max(0.0, out["exposed_s"] - model_now)
        candidates = [64 << 10 << k for k in range(11)]  # 64 KiB .. 64 MiB
        scores = {c: _exposed(_split(out["bytes"], c), out["backward_s"], alpha, beta)
                  for c in candidates if c <= max(out["bytes"], 64 << 10)}
        best_cap = min(scores, key=lambda c: (round(scores[c], 9), -c))
        predict = {}
        for mult in (2, 4):
            to = size * mult
            a2, b2 = _scaled(fit, size, to)
            exposed = _exposed(sizes, out["backward_s"], a2, b2) + offset
            predict[to] = out["compute_s"] / (out["compute_s"] + exposed)
        out["fit"] = {"alpha_s": alpha, "beta_s_per_byte": beta, "link_busbw": factor / beta,
                      "best_measured_busbw": best, "model_exposed_s": model_now,
                      "recommended_bucket_bytes": best_cap,
                      "recommended_exposed_s": scores[best_cap], "predicted": predict}
    return out


def _ms(s):
    return f"{s * 1e3:8.2f} ms"


def _gbs(b):
    return f"{b / 1e9:.2f} GB/s"


def table(s: dict, source: str = "") -> str:
    step = s["step_s"]

    def row(name, sec, note=""):
        share = f"{100 * sec / step:5.0f}%" if step else ""
        return f"  {name:<28}{_ms(sec)}  {share}  {note}".rstrip()

    lines = [f"collective.explain {source}".rstrip(),
             f"  {s['size']} ranks on {s['hosts']} host(s); {s['steps']} steps, medians "
             f"(each step's slowest rank)", "",
             f"  {'per step':<28}{'time':>11}  {'share':>6}",
             row("forward (+ data, loss)", s["forward_s"]),
             row("backward", s["backward_s"]),
             row("optimizer update", s["update_s"]),
             row("other (between phases)", s["other_s"]),
             row("exposed communication", s["exposed_s"], "the slowest rank's wait in step()"),
             f"  {'+ waiting for that rank':<28}{_ms(s['imbalance_s'])}          the others' "
             f"extra wait (load imbalance)",
             f"  {'step time':<28}{_ms(step)}",
             f"  {'reductions in flight':<28}{_ms(s['in_flight_s'])}          {s['buckets']} "
             f"buckets, {s['bytes'] / _MB:.2f} MiB"
             + (f", {100 * s['hidden']:.0f}% hidden behind backward"
                if s["hidden"] is not None else "")]
    fit = s["fit"]
    if s["busbw"] is not None:
        link = (f"   link: {_gbs(fit['link_busbw'])} (ring fit), best measured "
                f"{_gbs(fit['best_measured_busbw'])} ({100 * s['busbw'] / fit['link_busbw']:.0f}"
                f"% of the fit)") if fit else ""
        lines.append(f"  {'bus bandwidth in flight':<28}{_gbs(s['busbw']):>11}{link}")
    lines.append("")
    if fit is None:
        lines.append("  no ring costs in the timeline (one rank, or COLLECTIVE_TUNING=off "
                     "without a ring entry): no model")
    else:
        pred = "   ".join(f"{p} ranks: {100 * e:.0f}%" for p, e in fit["predicted"].items())
        lines += [f"  alpha-beta fit of the ring: alpha {fit['alpha_s'] * 1e6:.0f} us, beta "
                  f"{fit['beta_s_per_byte'] * 1e9:.3f} ns/B; model exposed at {s['size']} ranks "
                  f"{fit['model_exposed_s'] * 1e3:.2f} ms (measured {s['exposed_s'] * 1e3:.2f})",
                  f"  recommended bucket size: bucket_cap_mb="
                  f"{fit['recommended_bucket_bytes'] / _MB:g} (model exposed "
                  f"{fit['recommended_exposed_s'] * 1e3:.2f} ms)",
                  f"  weak-scaling efficiency: {s['size']} ranks (measured): "
                  f"{100 * s['efficiency']:.0f}%   predicted {pred}"]
    return "\n".join(lines)


COLORS = {"forward": "#4c72b0", "backward": "#dd8452", "synchronize": "#c44e52",
          "update": "#55a868", "step": "#dddddd"}


def plot(doc, summary, path) -> str | None:
    """A PNG of the median step, every rank; None (with a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("collective.explain: matplotlib is not installed (pip install "
              "'dlsys-collective[plot]'): no PNG written", file=sys.stderr)
        return None
    lo, hi = summary["median_step"]["window_us"]
    lo -= 0.02 * (hi - lo)
    ranks = sorted(_per_rank(doc).items())
    tracks = ("steps", "buckets", "collectives")
    fig, ax = plt.subplots(figsize=(12, 1 + 0.9 * len(ranks)))
    labels = []
    for i, (r, data) in enumerate(ranks):
        for j, _ in enumerate(tracks):
            y = (len(ranks) - 1 - i) * (len(tracks) + 0.5) + (len(tracks) - 1 - j)
            labels.append((y, f"rank {r} {tracks[j]}"))
            for ev in data["events"]:
                if ev["tid"] != j or ev["ts"] + ev["dur"] < lo or ev["ts"] > hi:
                    continue
                name = ev["name"].split()[0]
                if name == "step" and j == 0:
                    continue
                color = COLORS.get(name, "#8172b3" if j == 1 else "#937860")
                ax.broken_barh([((ev["ts"] - lo) / 1e3, ev["dur"] / 1e3)], (y, 0.8),
                               facecolors=color, edgecolor="black", linewidth=0.3)
    ax.set_yticks([y + 0.4 for y, _ in labels], [lab for _, lab in labels], fontsize=8)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=n) for n, c in COLORS.items() if n != "step"]
              + [Patch(color="#8172b3", label="bucket in flight"),
                 Patch(color="#937860", label="collective")], fontsize=7, ncol=6,
              loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.set_xlabel("ms")
    ax.set_title(f"one step (the median), {summary['size']} ranks", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m collective.explain", description=__doc__
                                .split("\n")[0])
    p.add_argument("timeline", help="a timeline JSON written by col.stop_timeline()")
    p.add_argument("--png", default=None, help="default: TIMELINE with .png; '' for none")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    try:
        doc = load(args.timeline)
        summary = summarize(doc)
    except (OSError, ValueError) as exc:
        sys.exit(f"collective.explain: {exc}")
    print(table(summary, args.timeline))
    png = args.png if args.png is not None else str(Path(args.timeline).with_suffix(".png"))
    if png:
        written = plot(doc, summary, png)
        if written:
            print(f"\n  one step's timeline: {written}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

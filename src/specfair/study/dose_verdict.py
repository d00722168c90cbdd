"""The data dose's answer per dose task (issue 29), from the summary's numbers alone (no
records, no statistics of its own): ``rises``, ``saturates`` or ``undecided``, and why.

* ``rises``: a dose whose paired change in the predicted speed-up against the base drafter is
  above 0 beyond its 95 % CI (``d_speedup`` of the dose point: over the point's seeds and the
  prompts); the first such dose is where it rises. The predicted speed-up is the replay's (the
  headline policy replayed with greedy acceptance on the teacher-forced passes, priced with the
  measured costs): only the largest dose is timed, and the report shows that measurement
  beside it.
* ``saturates``: no dose rises, and over the task's last segment of its own data -- the two
  largest distinct supervised-token counts it reached (a task whose data ran out before the
  largest dose: where they stopped growing) -- the slopes of greedy alpha and of the predicted
  speed-up both have CIs that include 0 (paired: the same prompts at both doses, the first
  seed), with the overfit check passing (greedy alpha on its training sequences rose by at
  least :data:`OVERFIT_GAIN`: the pipeline can learn what it is given). It saturates at the
  segment's lower end: no measured gain from there to its upper end.
* ``undecided`` otherwise: still rising or falling over the last segment, no segment of its own
  (its data ran out by the first dose, or fewer than two doses), or no passing overfit check.
"""

from __future__ import annotations

from specfair.study.power import TARGET_ALPHA

OVERFIT_GAIN = TARGET_ALPHA  # the check must move its own sequences by the smallest target


def overfit_check(o: dict | None) -> dict | None:
    """``overfit.json`` as a pass/fail: ``{"task", "gain" (greedy alpha on its training
    sequences, after - before), "threshold", "passed"}``; None without a check."""
    if not o:
        return None
    gain = o["greedy_after"] - o["greedy_before"]
    return {"task": o["task"], "gain": gain, "threshold": OVERFIT_GAIN,
            "passed": bool(gain >= OVERFIT_GAIN)}


def _first_rise(d: dict, t: str, key: str) -> dict | None:
    """The first dose point whose paired change ``key`` of task ``t`` is above 0 beyond its
    CI: ``{"point", "dose_tokens", "supervised_tokens", "change"}``."""
    for k, p in enumerate(d["points"]):
        c = p["tasks"][t][key]
        if c["claimed"] and c["value"] > 0:
            return {"point": k, "dose_tokens": d["dose_tokens"][k],
                    "supervised_tokens": d["supervised_tokens"][t][k + 1], "change": c}
    return None


def _moves(ci: dict) -> str | None:
    """``"rising"`` / ``"falling"`` where a slope's CI excludes 0, else None."""
    return None if not ci["claimed"] else "rising" if ci["value"] > 0 else "falling"


def verdict(d: dict, t: str, check: dict | None) -> dict:
    """Task ``t``'s verdict from ``data_dose`` (its ``points`` and ``segments``) and the
    overfit check (:func:`overfit_check`); see the module."""
    seg = d["segments"][t]
    last = d["points"][-1]
    out = {"verdict": "undecided", "why": "", "metric": "predicted speed-up (replayed)",
           "rises_at": _first_rise(d, t, "d_speedup"),
           "greedy_rises_at": _first_rise(d, t, "d_greedy"), "saturates_at": None,
           "largest": {"dose_tokens": d["dose_tokens"][-1],
                       "supervised_tokens": d["supervised_tokens"][t][-1],
                       "seeds": last.get("seeds", [0]),
                       "d_speedup": last["tasks"][t]["d_speedup"],
                       "d_greedy": last["tasks"][t]["d_greedy"],
                       "speedup": last["tasks"][t]["speedup"]},
           "overfit_passed": None if check is None else check["passed"]}
    if (r := out["rises_at"]) is not None:
        out |= {"verdict": "rises", "why": f"the predicted speed-up is above the base drafter's "
                f"beyond its paired CI from {r['supervised_tokens']:,} supervised tokens on"}
        return out
    if seg["segment"] is None:
        out["why"] = seg["why"]
        return out
    s = seg["segment"]
    moves = {m: _moves(s[f"{m}_per_10k"]) for m in ("greedy", "speedup")}
    span = f"from {s['supervised_tokens'][0]:,} to {s['supervised_tokens'][1]:,}"
    if any(moves.values()):
        what = " and ".join(f"{'greedy alpha' if m == 'greedy' else 'the predicted speed-up'} "
                            f"is {v}" for m, v in moves.items() if v)
        out["why"] = (f"over its last segment ({span} supervised tokens) {what} beyond the "
                      "slope's CI: no plateau measured yet")
    elif check is None:
        out["why"] = (f"flat over its last segment ({span} supervised tokens), but no overfit "
                      "check was recorded: a flat curve may be the pipeline's")
    elif not check["passed"]:
        out["why"] = (f"flat over its last segment ({span} supervised tokens), but the overfit "
                      f"check did not pass (greedy alpha on its training sequences "
                      f"{check['gain']:+.3f}, below +{check['threshold']}): a flat curve may be "
                      "the pipeline's")
    else:
        out |= {"verdict": "saturates", "saturates_at": s["supervised_tokens"][0],
                "why": f"no dose rises beyond its paired CI, and over its last segment ({span} "
                       "supervised tokens) the slopes of greedy alpha and of the predicted "
                       "speed-up both include 0, with the overfit check passing"}
    return out


def verdicts(d: dict, overfit: dict | None) -> dict:
    """``{"overfit_check", "tasks": {dose task: verdict}}`` (:func:`verdict`)."""
    check = overfit_check(overfit)
    return {"overfit_check": check,
            "tasks": {t: verdict(d, t, check) for t in d["dose_tasks"]}}

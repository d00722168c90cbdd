"""The plain-language answer to the research question — templated sentences built only from the
stored summaries (measured speed-ups where they exist, estimated α otherwise).

Question: *does fine-tuning the drafter close the gap between the tasks that speculative
decoding speeds up and those it does not?* A variant "helps" when it raises the worst task's
speed-up (the floor); the narrative also reports the mean, the spread metrics and the CIs, and
says plainly when a variant did not help or made things worse.
"""

from __future__ import annotations

import math

from specfair.report import compare
from specfair.report.doc import Block, Bullets, Para
from specfair.report.load import Arm, Run, num

QUESTION = ("Does fine-tuning the drafter close the gap between the tasks that speculative "
            "decoding speeds up and those it does not?")


def x(v, digits: int = 2) -> str:
    v = num(v)
    return f"{v:.{digits}f}×" if math.isfinite(v) else "n/a"


def f(v, digits: int = 3) -> str:
    v = num(v)
    return f"{v:.{digits}f}" if math.isfinite(v) else "n/a"


def overlap(a: tuple, b: tuple) -> bool | None:
    """Whether two (mean, lo, hi) CIs overlap (None if either is unknown)."""
    vals = [num(v) for v in (*a[1:], *b[1:])]
    if not all(math.isfinite(v) for v in vals):
        return None
    return not (a[2] < b[1] or b[2] < a[1])


def _change(before: float, after: float, noun: str, down_good: bool = True) -> str:
    p = compare.rel_change(before, after)
    if not math.isfinite(p):
        return f"{noun} could not be compared (missing on one side)"
    if abs(p) < 0.05:
        return f"{noun} did not change ({f(before, 4)})"
    verb = "fell" if p < 0 else "rose"
    good = (p < 0) == down_good
    return (f"{noun} {verb} by {abs(p):.1f}% ({f(before, 4)} → {f(after, 4)}"
            f"{'' if good else ', i.e. less fair'})")


def measured_sentence(base: Arm, arm: Arm) -> str:
    bd, vd = compare.speedup_disparity(base), compare.speedup_disparity(arm)
    t = bd["worst_task"]
    before = compare.task_value(base, t)
    after = compare.task_value(arm, t)
    worst_after = vd["worst_speedup"]
    s = (f"**{arm.name}**: the worst task ({t}) went from {x(before[0])} to {x(after[0])}")
    ov = overlap(before, after)
    if ov:
        s += " (the 95% CIs overlap, so this change may be noise)"
    if vd["worst_task"] != t:
        s += f"; the slowest task is now {vd['worst_task']} at {x(worst_after)}"
    s += f"; {_change(bd['ce_spread'], vd['ce_spread'], 'cross-entropy-spread unfairness')}"
    s += (f"; max/min went from {f(bd['max_min_ratio'], 2)} to {f(vd['max_min_ratio'], 2)}; "
          f"mean speed-up went from {x(bd['mean'])} to {x(vd['mean'])}; mean acceptance α "
          f"from {f(bd['mean_alpha'])} to {f(vd['mean_alpha'])}.")
    a, b = num(bd["worst_speedup"]), num(worst_after)
    if not (math.isfinite(a) and math.isfinite(b)):
        return s
    if b > a:
        s += f" It raised the floor from {x(a)} to {x(b)}"
        s += (" and also the mean." if num(vd["mean"]) >= num(bd["mean"])
              else ", but at the cost of a lower mean speed-up.")
    elif b == a:
        s += f" Fine-tuning did not help: the worst-task speed-up stayed at {x(a)}."
    else:
        s += (f" Fine-tuning did not help — it hurt: the worst-task speed-up fell from {x(a)} "
              f"to {x(b)}.")
    return s


def estimated_sentence(base: Arm, arm: Arm) -> str:
    bd, vd = compare.alpha_disparity(base), compare.alpha_disparity(arm)
    t = bd["worst_task"]
    before, after = compare.task_estimate(base, t), compare.task_estimate(arm, t)
    s = (f"**{arm.name}** (estimated only, not benchmarked): the worst task by estimated "
         f"acceptance ({t}) went from α = {f(before[0])} to {f(after[0])}")
    if vd["worst_task"] != t:
        s += f"; the lowest is now {vd['worst_task']} at {f(vd['worst_alpha'])}"
    s += f"; {_change(bd['ce_spread'], vd['ce_spread'], 'cross-entropy-spread unfairness')}"
    s += f"; mean estimated α went from {f(bd['mean'])} to {f(vd['mean'])}."
    a, b = num(bd["worst_alpha"]), num(vd["worst_alpha"])
    if math.isfinite(a) and math.isfinite(b) and b <= a:
        s += (" By this estimate fine-tuning did not help the worst task"
              + (" — it hurt." if b < a else "."))
    return s


def _slow_tasks(arm: Arm) -> list[str]:
    if not arm.has_bench:
        return []
    return [t for t, b in arm.bench_summary["tasks"].items()
            if num(compare.ci(b.get("speedup"))[0]) < 1.0]


def verdict(run: Run) -> str:
    base = run.baseline
    name, criterion = compare.best_variant(run)
    if base is None or not (base.has_bench or base.has_estimate):
        return "No baseline measurements were found, so the question cannot be answered."
    if name is None:
        return ("No fine-tuned variant has been benchmarked or estimated yet, so the question "
                "cannot be answered.")
    best = run.variants[name]
    if base.has_bench and best.has_bench:
        bd, vd = compare.speedup_disparity(base), compare.speedup_disparity(best)
        a, b = num(bd["worst_speedup"]), num(vd["worst_speedup"])
        ci_a = compare.task_value(base, bd["worst_task"])
        ci_b = compare.task_value(best, vd["worst_task"])
        head = (f"Best variant by {criterion}: **{name}**. ")
        if b > a:
            noisy = overlap(ci_a, ci_b)
            s = (head + f"**{'Possibly' if noisy else 'Yes'}**: it lifted the worst-task "
                 f"speed-up from {x(a)} ({bd['worst_task']}) to {x(b)} ({vd['worst_task']}), "
                 f"and max/min went from {f(bd['max_min_ratio'], 2)} to "
                 f"{f(vd['max_min_ratio'], 2)}.")
            if noisy:
                s += (" The 95% CIs of the two worst-task speed-ups overlap, so the "
                      "improvement is not conclusive.")
            return s
        return (head + f"**No**: fine-tuning did not help the worst task — no variant raised the "
                f"worst-task speed-up above the baseline's {x(a)} ({bd['worst_task']}); the best "
                f"reaches {x(b)}.")
    if base.has_estimate and best.has_estimate:
        bd, vd = compare.alpha_disparity(base), compare.alpha_disparity(best)
        a, b = num(bd["worst_alpha"]), num(vd["worst_alpha"])
        noisy = overlap(compare.task_estimate(base, bd["worst_task"]),
                        compare.task_estimate(best, vd["worst_task"]))
        if b > a and not noisy:
            word = "predicted to help"
        elif b > a:
            word = "not shown to help (the rise is within the 95% CIs, which overlap)"
        else:
            word = "not predicted to help"
        return (f"Best variant by {criterion}: **{name}**. Fine-tuning is {word}: the worst "
                f"estimated α went from {f(a)} ({bd['worst_task']}) to {f(b)} "
                f"({vd['worst_task']}). Benchmark it to confirm.")
    return (f"Best variant by {criterion}: **{name}**, but the baseline and this variant were "
            "measured in different ways (one benchmarked, one only estimated), so no "
            "before/after is possible.")


def narrative(run: Run) -> list[Block]:
    """The answer: a verdict paragraph, one sentence per variant, and caveats."""
    blocks: list[Block] = [Para(f"*{QUESTION}*"), Para(verdict(run), kind="answer")]
    base = run.baseline
    items = []
    for arm in run.variants.values():
        if base is not None and base.has_bench and arm.has_bench:
            items.append(measured_sentence(base, arm))
        elif base is not None and base.has_estimate and arm.has_estimate:
            items.append(estimated_sentence(base, arm))
        else:
            items.append(f"**{arm.name}**: no benchmark or estimate to compare with the "
                         "baseline.")
    if items:
        blocks.append(Bullets(items))
    slow = {a.name: _slow_tasks(a) for a in run.arms}
    slow = {k: v for k, v in slow.items() if v}
    if slow:
        blocks.append(Para(
            "Speculative decoding was *slower* than plain decoding (speed-up < 1) on: "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in slow.items()) + ".", kind="note"))
    return blocks

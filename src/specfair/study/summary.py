"""The study's numbers: per arm and budget, each task's greedy alpha and predicted speed-up (the
primary metrics: the top-k buckets the loss trains on cannot inflate them), sampled alpha as
[lower, upper] bounds and the residual mass, their paired changes against the base drafter and
their spread across tasks with bootstrap CIs; dose-response curves over training tokens and,
with ``prompt_fractions``, over distinct training prompts and supervised tokens, with slope CIs;
nothing is projected beyond twice the largest measured dose.

Seeds: an arm trained with several seeds (the largest budget) is the mean over them, and each
replicate draws seeds with replacement before it draws prompt groups (a hierarchical bootstrap),
so a CI covers the training's randomness as well as the prompts'. A change is claimed only when
its CI excludes 0 (``"claimed"``).

Pairing: every arm is evaluated on the same test sequences as the base drafter; a bootstrap
resample draws prompts once and applies the draw to both, so the CI of a change is the CI of a
paired difference. Shared sources are resampled jointly: the unit of a draw is a prompt's split
group (``group`` in ``eval.jsonl``: one MGSM problem in mgsm_zh, mgsm_ja and translation_en_fr;
one ShareGPT conversation in chat/code and summarization), drawn within the stratum of groups
that span the same tasks, so every task keeps its number of groups and correlated tests are not
counted as independent. Without shared groups this is the per-task prompt bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from specfair.atomic import write_text
from specfair.measure.io import read_json, read_jsonl
from specfair.measure.replay import POLICIES, pass_of, replay
from specfair.study.config import StudyConfig
from specfair.study.dose import point_name
from specfair.study.dose_verdict import verdicts
from specfair.study.epochs import training_runs
from specfair.study.policies import study_policies
from specfair.study.power import power_summary, timed_dtype


def _by_prompt(records: list[dict], arm: str, budget: float) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["arm"] == arm and r["budget"] == budget:
            out.setdefault(r["task"], {})[r["id"]] = r
    return out


def group_draws(base, arm, tasks, n_boot, seed) -> tuple[dict, dict, np.ndarray]:
    """The paired prompt ids per task, each one's group column, and ``[B, G]`` multiplicities
    of the groups in each replicate (stratified by the set of tasks a group spans). A record
    without ``group`` (runs before it was recorded) is its own group."""
    ids = {t: sorted(set(base[t]) & set(arm[t])) for t in tasks}
    group = {(t, i): base[t][i].get("group") or f"{t}/{i}" for t in tasks for i in ids[t]}
    col = {g: k for k, g in enumerate(sorted(set(group.values())))}
    spans: dict[str, set] = {}
    for (t, _), g in group.items():
        spans.setdefault(g, set()).add(t)
    strata: dict[tuple, list[int]] = {}
    for g, k in col.items():
        strata.setdefault(tuple(sorted(spans[g])), []).append(k)
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, len(col)))
    rows = np.arange(n_boot)[:, None]
    for key in sorted(strata):
        cols = np.array(strata[key])
        np.add.at(w, (rows, cols[rng.integers(0, len(cols), (n_boot, len(cols)))]), 1)
    return ids, {t: np.array([col[group[(t, i)]] for i in ids[t]], int) for t in tasks}, w


def seed_draws(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """``[B, S]`` weights of the training seeds in each replicate (seeds drawn with
    replacement, each row sums to 1): the outer level of the hierarchical bootstrap (seeds,
    then groups of prompts). One seed: all weight on it."""
    rng = np.random.default_rng([seed, 1])
    w = np.zeros((n_boot, n_seeds))
    np.add.at(w, (np.arange(n_boot)[:, None], rng.integers(0, n_seeds, (n_boot, n_seeds))), 1)
    return w / n_seeds


def _resampled_means(base, arm, tasks, metric, draws, sw=None):
    """``(point_base [K], point_arm [K], boot_base [B, K], boot_arm [B, K])`` task means.
    ``arm`` is one seed's ``{task: {id: record}}`` or a list of them (one per training seed,
    weighted per replicate by ``sw`` [B, S], :func:`seed_draws`): the arm's point is the mean
    over seeds, its replicates resample seeds and, with the same draw as the base, groups."""
    arms = arm if isinstance(arm, list) else [arm]
    sw = np.ones((draws[2].shape[0], 1)) if sw is None else sw
    ids, cols, w = draws
    pb, pa, bb, ba = [], [], [], []
    for t in tasks:
        xb = np.array([base[t][i][metric] for i in ids[t]])
        xa = np.array([[a[t][i][metric] for i in ids[t]] for a in arms])  # [S, n]
        wt = w[:, cols[t]]
        den = wt.sum(1)
        pb.append(xb.mean())
        pa.append(xa.mean())
        bb.append(wt @ xb / den)
        ba.append(((wt @ xa.T) / den[:, None] * sw).sum(1))
    return np.array(pb), np.array(pa), np.stack(bb, 1), np.stack(ba, 1)


def _replay_costs(recs: dict, ids: list[str], c: float, v: float) -> tuple[np.ndarray, ...]:
    """Per prompt: the tokens and the cost (target-step units) of greedy decoding with the
    headline policy (:data:`specfair.measure.replay.POLICIES` [0]), replayed on its pass."""
    rs = [replay(*pass_of(recs[i]), POLICIES[0]) for i in ids]
    return (np.array([r.tokens for r in rs], float),
            np.array([r.cost(c, v) for r in rs], float))


def _resampled_speedups(base, arms, tasks, draws, sw, costs):
    """Like :func:`_resampled_means` for the predicted speed-up (tokens / cost, pooled over a
    task's prompts, as :func:`specfair.measure.replay.replay_all`): replayed greedy
    acceptance, so it moves only with greedy agreement (``match``)."""
    ids, cols, w = draws
    c, v = costs["c"], costs["verify_slope"]
    pb, pa, bb, ba = [], [], [], []
    for t in tasks:
        tok, cb = _replay_costs(base[t], ids[t], c, v)
        ca = np.stack([_replay_costs(a[t], ids[t], c, v)[1] for a in arms])  # [S, n]
        wt = w[:, cols[t]]
        pb.append(tok.sum() / cb.sum())
        pa.append(float(np.mean(tok.sum() / ca.sum(1))))
        bb.append(wt @ tok / (wt @ cb))
        ba.append((((wt @ tok)[:, None] / (wt @ ca.T)) * sw).sum(1))
    return np.array(pb), np.array(pa), np.stack(bb, 1), np.stack(ba, 1)


def _ci(point: float, boot: np.ndarray) -> dict:
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"value": float(point), "lo": float(lo), "hi": float(hi)}


def _dci(point: float, boot: np.ndarray) -> dict:
    """A paired change's CI and whether it is claimed (the CI excludes 0)."""
    ci = _ci(point, boot)
    return ci | {"claimed": bool(ci["lo"] > 0 or ci["hi"] < 0)}


def _ce_spread(ce: np.ndarray) -> np.ndarray:
    """Population variance across tasks (last axis) of the per-task mean cross-entropy. On the
    full-vocabulary CE (``ce_full``) this is Sandler et al.'s unfairness U (``U_sandler``); on
    the top-k + 1 buckets (``ce``: a lower bound of each task's CE, and what the ``fkl`` loss
    trains) it is ``ce_spread_topk``, the training objective's own spread."""
    return ce.var(-1)


def _spread(p: np.ndarray, b: np.ndarray, p0: np.ndarray, b0: np.ndarray) -> dict:
    """Spread across tasks of per-task values (point ``p`` [K], replicates ``b`` [B, K]) and
    its paired change against the base drafter's (``p0``, ``b0``): max/min ratio and
    max - min."""
    ratio = lambda x: x.max(-1) / x.min(-1)  # noqa: E731
    rng = lambda x: x.max(-1) - x.min(-1)  # noqa: E731
    return {"max_min": _ci(ratio(p), ratio(b)), "range": _ci(rng(p), rng(b)),
            "d_max_min": _dci(ratio(p) - ratio(p0), ratio(b) - ratio(b0)),
            "d_range": _dci(rng(p) - rng(p0), rng(b) - rng(b0))}


def _by_seed(records: list[dict], arm: str, budget: float) -> dict[int, dict]:
    """``{seed: {task: {id: record}}}`` (records without ``seed``, older runs: seed 0)."""
    out: dict[int, dict] = {}
    for r in records:
        if r["arm"] == arm and r["budget"] == budget:
            out.setdefault(r.get("seed", 0), {}).setdefault(r["task"], {})[r["id"]] = r
    return out


def _first_seed(by_seed: dict[int, dict], cfg: StudyConfig) -> int:
    """The seed that trains the whole budget curve (``cfg.seeds[0]``) where present."""
    return cfg.seeds[0] if cfg.seeds[0] in by_seed else min(by_seed)


def compare(records, arm, budget, tasks, cfg: StudyConfig, costs: dict,
            held_records: list[dict] = ()) -> dict:
    """One arm at one budget against the base drafter, on the same test prompts.

    Primary (the loss cannot fill them): greedy alpha (exact greedy agreement) and the predicted
    speed-up (the headline policy replayed with greedy acceptance on the teacher-forced passes,
    with the measured c and v(k): :mod:`specfair.measure.replay`), per task with paired CIs over
    training seeds and prompt groups (hierarchical bootstrap); their spread across tasks.
    Secondary: sampled alpha as [``alpha_lo``, ``alpha``] bounds (top-k only / with the residual
    bucket), each task's residual mass, and the CE spread on the buckets (the training
    objective's own quantity). Drafting policies (:mod:`specfair.study.policies`) are replayed on
    the first seed's passes; gamma is chosen in sample and on ``held_records``."""
    base = _by_prompt(records, "base", 0.0)
    seeds = _by_seed(records, arm, budget)
    seeds = {k: v for k, v in seeds.items() if k in cfg.seeds} or seeds
    first = _first_seed(seeds, cfg)
    order = [first] + sorted(k for k in seeds if k != first)
    arms = [seeds[k] for k in order]
    # the prompts every seed was evaluated on (all of them, unless a run was cut short)
    common = {t: {i: r for i, r in arms[0].get(t, {}).items()
                  if all(i in a.get(t, {}) for a in arms[1:])} for t in tasks}
    draws = group_draws(base, common, tasks, cfg.bootstrap, cfg.seed)
    sw = seed_draws(len(arms), cfg.bootstrap, cfg.seed)
    has = lambda k: all(k in r for a in [base, *arms] for t in tasks  # noqa: E731
                        for r in a[t].values())
    mean = {m: _resampled_means(base, arms, tasks, m, draws, sw)
            for m in ("alpha", "greedy", "ce", "resid", "alpha_lo", "alpha_full", "ce_full")
            if m in ("alpha", "greedy", "ce", "resid") or has(m)}
    a_pb, a_pa, a_bb, a_ba = mean["alpha"]
    g_pb, g_pa, g_bb, g_ba = mean["greedy"]
    c_pb, c_pa, c_bb, c_ba = mean["ce"]
    s_pb, s_pa, s_bb, s_ba = _resampled_speedups(base, arms, tasks, draws, sw, costs)
    worst = int(np.argmin(a_pb))
    gworst = int(np.argmin(g_pb))
    held = _by_prompt(held_records, arm, budget)
    policies, held_scores = study_policies(
        {t: [pass_of(r) for r in arms[0][t].values()] for t in tasks},
        {t: [pass_of(r) for r in held.get(t, {}).values()] for t in tasks},
        costs["c"], costs["verify_slope"])
    sp = [policies[POLICIES[0].label][t]["speedup"] for t in tasks]

    def task_row(k: int) -> dict:
        row = {"alpha": float(a_pa[k]), "greedy": float(g_pa[k]), "ce": float(c_pa[k]),
               "resid": float(mean["resid"][1][k]),
               "d_alpha": _dci(a_pa[k] - a_pb[k], a_ba[:, k] - a_bb[:, k]),
               "d_greedy": _dci(g_pa[k] - g_pb[k], g_ba[:, k] - g_bb[:, k]),
               "speedup": _ci(s_pa[k], s_ba[:, k]),
               "d_speedup": _dci(s_pa[k] - s_pb[k], s_ba[:, k] - s_bb[:, k]),
               "predicted_speedup": sp[k]}
        if "alpha_lo" in mean:
            lo_pb, lo_pa, lo_bb, lo_ba = mean["alpha_lo"]
            row["alpha_bounds"] = [float(lo_pa[k]), float(a_pa[k])]
            row["d_alpha_lo"] = _dci(lo_pa[k] - lo_pb[k], lo_ba[:, k] - lo_bb[:, k])
        if "alpha_full" in mean:
            x_pb, x_pa, x_bb, x_ba = mean["alpha_full"]
            row["alpha_exact"] = float(x_pa[k])
            row["d_alpha_exact"] = _dci(x_pa[k] - x_pb[k], x_ba[:, k] - x_bb[:, k])
            row["ce_full"] = float(mean["ce_full"][1][k])
        return row

    sandler = {}
    if "ce_full" in mean:
        f_pb, f_pa, f_bb, f_ba = mean["ce_full"]
        x_pb, x_pa, x_bb, x_ba = mean["alpha_full"]
        sandler = {"U_sandler": _ci(float(_ce_spread(f_pa)), _ce_spread(f_ba)),
                   "U_sandler_change": _dci(float(_ce_spread(f_pa) / _ce_spread(f_pb) - 1),
                                            _ce_spread(f_ba) / _ce_spread(f_bb) - 1),
                   "alpha_exact_spread": _spread(x_pa, x_ba, x_pb, x_bb)}

    first_rec = next(r for r in records if r["arm"] == arm and r["budget"] == budget
                     and r.get("seed", 0) == first)
    return {
        "arm": arm, "budget": budget, "seeds": order,
        # training tokens seen (first seed): all positions, and apart, the supervised (response)
        # and prompt positions (None in runs before they were counted)
        "tokens": first_rec["tokens"],
        "supervised_tokens": first_rec.get("supervised_tokens"),
        "prompt_tokens": first_rec.get("prompt_tokens"),
        "tasks": {t: task_row(k) for k, t in enumerate(tasks)},
        "mean_greedy": _ci(g_pa.mean(), g_ba.mean(1)),
        "d_mean_greedy": _dci(g_pa.mean() - g_pb.mean(), g_ba.mean(1) - g_bb.mean(1)),
        "base_worst_greedy_task": tasks[gworst],
        "d_base_worst_greedy": _dci(g_pa[gworst] - g_pb[gworst],
                                    g_ba[:, gworst] - g_bb[:, gworst]),
        "greedy_spread": _spread(g_pa, g_ba, g_pb, g_bb),
        "speedup_spread": _spread(s_pa, s_ba, s_pb, s_bb),
        "mean_alpha": _ci(a_pa.mean(), a_ba.mean(1)),
        "d_mean_alpha": _dci(a_pa.mean() - a_pb.mean(), a_ba.mean(1) - a_bb.mean(1)),
        "base_worst_task": tasks[worst],
        "d_base_worst_alpha": _dci(a_pa[worst] - a_pb[worst], a_ba[:, worst] - a_bb[:, worst]),
        "worst_alpha": _ci(a_pa.min(), a_ba.min(1)),
        "d_worst_alpha": _dci(a_pa.min() - a_pb.min(), a_ba.min(1) - a_bb.min(1)),
        "ce_spread_topk": _ci(float(_ce_spread(c_pa)), _ce_spread(c_ba)),
        "ce_spread_topk_change": _dci(float(_ce_spread(c_pa) / _ce_spread(c_pb) - 1),
                                      _ce_spread(c_ba) / _ce_spread(c_bb) - 1),
        **sandler,
        "max_min_speedup": float(max(sp) / min(sp)),
        "policies": policies,
        "policies_heldout": held_scores,
        "n_heldout_passes": {t: len(held.get(t, {})) for t in tasks},
    }


def paired_changes(base: dict, arm: dict, tasks: list[str], cfg: StudyConfig, costs: dict,
                   metrics: tuple[str, ...] = ("greedy", "alpha")) -> dict:
    """``arm`` against ``base`` (one seed each, ``{task: {id: record}}``) on the prompts both
    hold: per metric and for the predicted speed-up (``"speedup"``, as in :func:`compare`),
    ``{"base": {task: value, "mean": value}, "arm": {...}, "change": {task: paired CI, "mean":
    paired CI}}``, ``"mean"`` the mean over tasks; the bootstrap draws prompt groups as
    :func:`compare` does."""
    draws = group_draws(base, arm, tasks, cfg.bootstrap, cfg.seed)
    sw = seed_draws(1, cfg.bootstrap, cfg.seed)
    per = lambda x: {t: float(x[k]) for k, t in enumerate(tasks)} | {"mean": float(x.mean())}  # noqa: E731

    def side(m: str, x: dict) -> tuple:
        """``(point [K], replicates [B, K])`` of one side, each through an arm's arithmetic:
        the same records on both sides give a change of exactly 0."""
        return (_resampled_speedups(base, [x], tasks, draws, sw, costs) if m == "speedup"
                else _resampled_means(base, x, tasks, m, draws))[1::2]

    out = {}
    for m in (*metrics, "speedup"):
        (pb, bb), (pa, ba) = side(m, base), side(m, arm)
        out[m] = {"base": per(pb), "arm": per(pa),
                  "change": {t: _dci(pa[k] - pb[k], ba[:, k] - bb[:, k])
                             for k, t in enumerate(tasks)}
                  | {"mean": _dci(pa.mean() - pb.mean(), ba.mean(1) - bb.mean(1))}}
    return out


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope (per token) through the points."""
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.array(xs, float), np.array(ys, float), 1)[0])


def _ls(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``(slope, intercept)`` of ``y [..., P]`` on ``x [P]`` (last axis)."""
    xc = x - x.mean()
    slope = ((y - y.mean(-1, keepdims=True)) * xc).sum(-1) / (xc ** 2).sum()
    return slope, y.mean(-1) - slope * x.mean()


PROJECTION_LIMIT = 2.0  # no projection beyond this many times the largest measured dose


def curve(records: list[dict], points: list[tuple[str, float]], x: np.ndarray,
          tasks: list[str], cfg: StudyConfig, metric: str = "greedy",
          per: float = 1e4) -> dict:
    """A dose-response curve: ``points`` are ``(arm, budget)`` (the first training seed's
    records; ``("base", 0.0)`` the undosed drafter), ``x [P, K]`` each point's dose per task.
    Per task, and for the mean over tasks against the mean dose: the least-squares slope of
    ``metric`` per ``per`` units of dose, with a bootstrap CI (prompt groups drawn once for
    every point: the points are paired), and the value fitted at twice the largest measured
    dose (:data:`PROJECTION_LIMIT`; clipped to [0, 1]): nothing is projected further."""
    base = _by_prompt(records, "base", 0.0)
    recs = []
    for arm, b in points:
        seeds = _by_seed(records, arm, b) if arm != "base" else {0: base}
        recs.append(seeds[_first_seed(seeds, cfg)] if arm != "base" else base)
    common = {t: {i: r for i, r in base.get(t, {}).items()
                  if all(i in p.get(t, {}) for p in recs)} for t in tasks}
    draws = group_draws(base, common, tasks, cfg.bootstrap, cfg.seed)
    ys, boots = [], []
    for p in recs:
        _, pa, _, ba = _resampled_means(base, p, tasks, metric, draws)
        ys.append(pa)
        boots.append(ba)
    y, yb = np.stack(ys), np.stack(boots, 1)  # [P, K], [B, P, K]
    out: dict = {"metric": metric, "per": per, "limit": PROJECTION_LIMIT, "tasks": {}}
    for k, t in enumerate(tasks):
        xk = x[:, k].astype(float)
        if np.ptp(xk) == 0:
            continue
        s0, i0 = _ls(xk, y[:, k])
        sb, ib = _ls(xk, yb[:, :, k])
        far = PROJECTION_LIMIT * xk.max()
        fit = lambda v: np.clip(v, 0.0, 1.0)  # noqa: E731  (alphas are probabilities)
        out["tasks"][t] = {"slope": _dci(s0 * per, sb * per), "max_dose": float(xk.max()),
                           "fitted_at_limit": _ci(fit(i0 + s0 * far), fit(ib + sb * far))}
    xm = x.mean(1).astype(float)
    if np.ptp(xm) > 0:
        s0, _ = _ls(xm, y.mean(1))
        sb, _ = _ls(xm, yb.mean(2))
        out["mean"] = {"slope": _dci(s0 * per, sb * per), "max_dose": float(xm.max())}
    out["points"] = [{"arm": a, "budget": b, "dose": [float(v) for v in x[j]],
                      "value": [float(v) for v in y[j]]} for j, (a, b) in enumerate(points)]
    return out


def dose_response(rows: list[dict], base: dict, tasks: list[str],
                  greedy: dict | None = None) -> dict:
    """Slopes per 10k training tokens (base at 0 tokens included) of greedy alpha (primary)
    and of sampled alpha (upper bound), and the projection of the tokens until the base-worst
    task's greedy alpha reaches the base mean greedy alpha at the measured slopes, omitted
    when it lies beyond :data:`PROJECTION_LIMIT` times the largest measured budget.
    ``greedy``: the budget curve of greedy alpha with slope CIs (:func:`curve`); when given,
    the projection uses its slopes (the ones the report shows)."""
    xs = [0.0] + [r["tokens"] for r in rows]

    def slopes(key: str, mean_key: str) -> tuple[dict, float]:
        per = {t: 1e4 * _slope(xs, [base["tasks"][t][key]] + [r["tasks"][t][key] for r in rows])
               for t in tasks}
        return per, 1e4 * _slope(xs, [base[mean_key]["value"]] +
                                 [r[mean_key]["value"] for r in rows])

    per_task, mean_s = slopes("alpha", "mean_alpha")
    g_task, g_mean = slopes("greedy", "mean_greedy")
    ce_s = 1e4 * _slope(xs, [base["ce_spread_topk"]["value"]] +
                        [r["ce_spread_topk"]["value"] for r in rows])
    w = base["base_worst_greedy_task"]
    gap = base["mean_greedy"]["value"] - base["tasks"][w]["greedy"]
    # the projection reads the slopes the report shows with their CIs (the curve's, of the
    # first seed's records) where the curve is given, else the budget rows' (seed means)
    w_slope, m_slope, source = g_task[w], g_mean, "budget rows (seed means)"
    if greedy and w in greedy.get("tasks", {}) and "mean" in greedy:
        scale = 1e4 / greedy.get("per", 1e4)
        w_slope = greedy["tasks"][w]["slope"]["value"] * scale
        m_slope = greedy["mean"]["slope"]["value"] * scale
        source = "greedy curve (first seed)"
    closing = w_slope - m_slope
    # only a rising worst task that gains on the mean is projected (a falling one "closes" the
    # gap only when the mean falls faster: no budget makes it reach the base mean)
    proj = gap / closing * 1e4 if closing > 0 and w_slope > 0 else None
    limit = PROJECTION_LIMIT * max(xs)
    beyond = proj is not None and proj > limit
    return {"greedy_per_10k": g_task, "mean_greedy_per_10k": g_mean,
            "alpha_per_10k": per_task, "mean_alpha_per_10k": mean_s,
            "ce_spread_topk_per_10k": ce_s, "worst_task": w, "gap": gap,
            "projected_tokens_worst_reaches_mean": None if beyond else proj,
            "projection_limit_tokens": limit, "projection_beyond_limit": beyond,
            "projection_slopes": {"worst": w_slope, "mean": m_slope, "source": source},
            "greedy_curve": greedy}


def data_dose(records: list[dict], tasks: list[str], cfg: StudyConfig,
              costs: dict) -> dict | None:
    """The data-dose curves of ``cfg.dose_arm``: one point per dose (``prompt_fractions`` or
    ``dose_tokens``: :mod:`specfair.study.dose`; trained at fixed epochs), the base drafter at
    0. Per task, greedy alpha against the task's distinct training prompts (slope per 100
    prompts) and against its supervised tokens (response positions trained on, one epoch:
    slope per 10k), with bootstrap CIs; with ``dose_tokens`` also against log2 of the
    supervised tokens over the dose points (slope per doubling: the doses are log-spaced) and
    the last segment (the two largest doses: where a curve saturates or still rises); each
    point's paired comparison against the base (over every seed it has: the largest dose's
    seeds). Supervised and prompt tokens are counted apart (``prompt_tokens``: None in records
    of runs before they were)."""
    by_tokens = bool(cfg.dose_tokens)
    pts = [(point_name(cfg, f), f) for f in cfg.dose_points]
    pts = [(a, f) for a, f in pts if any(r["arm"] == a for r in records)]
    if not pts:
        return None
    dose: dict[str, dict[str, dict]] = {}
    for r in records:
        if any(r["arm"] == a for a, _ in pts):
            dose.setdefault(r["arm"], {})[r["task"]] = r
    col = lambda key: {t: [0] + [dose[a][t].get(key) for a, _ in pts] for t in tasks}  # noqa: E731
    points = [("base", 0.0)] + [(a, 1.0) for a, _ in pts]
    n = np.array([[0] * len(tasks)] + [[dose[a][t]["dose_prompts"] for t in tasks]
                                       for a, _ in pts])
    sup = np.array([[0] * len(tasks)] + [[dose[a][t]["dose_supervised_tokens"] for t in tasks]
                                         for a, _ in pts])
    out = {"arm": cfg.dose_arm, "unit": "supervised_tokens" if by_tokens else "prompt_fraction",
           "fractions": None if by_tokens else [f for _, f in pts],
           "dose_tokens": [f for _, f in pts] if by_tokens else None,
           "dose_tasks": [t for t in tasks if cfg.doses_task(t)],
           "prompts": {t: [int(v) for v in n[:, k]] for k, t in enumerate(tasks)},
           "supervised_tokens": {t: [int(v) for v in sup[:, k]] for k, t in enumerate(tasks)},
           "prompt_tokens": col("dose_prompt_tokens"),
           "vs_prompts": curve(records, points, n, tasks, cfg, "greedy", 100.0),
           "vs_supervised_tokens": curve(records, points, sup, tasks, cfg, "greedy", 1e4)}
    if by_tokens:
        out["reached"] = {t: [dose[a][t].get("dose_reached") for a, _ in pts] for t in tasks}
        if len(pts) >= 2:
            out["vs_log2_supervised_tokens"] = curve(
                records, points[1:], np.log2(np.maximum(sup[1:], 1)), tasks, cfg, "greedy",
                1.0)
            out["last_segment"] = curve(records, points[-2:], sup[-2:], tasks, cfg, "greedy",
                                        1e4)
    key = "dose_tokens" if by_tokens else "prompt_fraction"
    out["points"] = [compare(records, a, 1.0, tasks, cfg, costs) | {key: f} for a, f in pts]
    if by_tokens:
        out["segments"] = own_segments(records, tasks, cfg, costs, out)
    return out


def _scaled(ci: dict, k: float) -> dict:
    """A paired CI times ``k`` > 0 (a change over a segment as a slope)."""
    return ci | {"value": ci["value"] * k, "lo": ci["lo"] * k, "hi": ci["hi"] * k}


def own_segments(records: list[dict], tasks: list[str], cfg: StudyConfig, costs: dict,
                 d: dict) -> dict:
    """Per dose task, the last segment of its own data: between the two largest distinct
    supervised-token counts its dose points reached (a task whose data ran out before the
    largest dose stops growing at the first point that took all of it; after it, its curve is
    the other tasks' collateral). ``{task: {"segment": {"points": [i, j] (indices of
    ``d["points"]``), "dose_tokens", "supervised_tokens" ([at i, at j]), "d_greedy", "d_speedup"
    (the change from i to j: paired on the same prompts, the first seed at both, prompt groups
    resampled as in :func:`compare`), "greedy_per_10k", "speedup_per_10k" (those changes per
    10k supervised tokens)} | None, "why" (why None), "ran_out": {"dose_tokens",
    "supervised_tokens"} | None}}``."""
    out: dict[str, dict] = {}
    done: dict[tuple[int, int], dict] = {}
    for t in d["dose_tasks"]:
        sup = d["supervised_tokens"][t][1:]
        j = sup.index(max(sup))
        ran_out = ({"dose_tokens": d["dose_tokens"][j], "supervised_tokens": sup[j]}
                   if j < len(sup) - 1 else None)
        below = [i for i in range(j) if sup[i] < sup[j]]
        if not below:
            why = ("one dose point: no segment" if len(sup) < 2 else
                   f"its data ran out by the first dose ({sup[j]:,} supervised tokens at every "
                   "dose): no segment of its own")
            out[t] = {"segment": None, "why": why, "ran_out": ran_out}
            continue
        i = below[-1]
        if (i, j) not in done:
            side = [_by_seed(records, d["points"][k]["arm"], 1.0) for k in (i, j)]
            a, b = (x[_first_seed(x, cfg)] for x in side)
            done[(i, j)] = paired_changes(a, b, tasks, cfg, costs, ("greedy",))
        ch, per = done[(i, j)], 1e4 / (sup[j] - sup[i])
        g, sp = ch["greedy"]["change"][t], ch["speedup"]["change"][t]
        out[t] = {"segment": {"points": [i, j],
                              "dose_tokens": [d["dose_tokens"][i], d["dose_tokens"][j]],
                              "supervised_tokens": [sup[i], sup[j]], "d_greedy": g,
                              "d_speedup": sp, "greedy_per_10k": _scaled(g, per),
                              "speedup_per_10k": _scaled(sp, per)},
                  "why": None, "ran_out": ran_out}
    return out


def vs_uniform(records: list[dict], arm: str, budget: float, tasks: list[str],
               cfg: StudyConfig, costs: dict) -> dict | None:
    """``arm`` against ``uniform`` at ``budget``, paired on the same test prompts, the first
    seed at both (:func:`paired_changes`: greedy alpha and the predicted speed-up, the change
    uniform -> arm); None where either lacks records there."""
    a, b = _by_seed(records, "uniform", budget), _by_seed(records, arm, budget)
    if not a or not b:
        return None
    sa, sb = _first_seed(a, cfg), _first_seed(b, cfg)
    ch = paired_changes(a[sa], b[sb], tasks, cfg, costs, ("greedy",))
    return {"seeds": [sa, sb], "d_greedy": ch["greedy"]["change"],
            "d_speedup": ch["speedup"]["change"]}


def _bootstrap_info(records: list[dict], cfg: StudyConfig) -> dict:
    base = [r for r in records if r["arm"] == "base"]
    tasks_of: dict[str, set] = {}
    for r in base:
        tasks_of.setdefault(r.get("group") or r["id"], set()).add(r["task"])
    seeds = sorted({r.get("seed", 0) for r in records if r["arm"] != "base"} & set(cfg.seeds))
    return {"replicates": cfg.bootstrap, "grouped": all(r.get("group") for r in base),
            "shared_groups": sum(len(t) > 1 for t in tasks_of.values()), "seeds": seeds}


def _json_or_none(path: Path):
    return read_json(path) if path.is_file() else None


def complete(records: list[dict]) -> list[dict]:
    """The records of each (arm, budget, seed) that has one for every prompt the base drafter
    has: a stage stopped part-way (its records not all there until the run resumes) is left
    out."""
    ids = {r["id"] for r in records if r["arm"] == "base"}
    have: dict[tuple, set] = {}
    for r in records:
        have.setdefault((r["arm"], r["budget"], r.get("seed", 0)), set()).add(r["id"])
    return [r for r in records if have[(r["arm"], r["budget"], r.get("seed", 0))] >= ids]


def write_summary(run_dir: Path, cfg: StudyConfig) -> Path:
    records = complete(read_jsonl(run_dir / "eval.jsonl"))
    held = complete(read_jsonl(run_dir / "policy_eval.jsonl"))
    costs = read_json(run_dir / "costs.json")
    tasks = list(cfg.tasks)
    base = compare(records, "base", 0.0, tasks, cfg, costs, held)
    arms = {}
    for arm in cfg.arms:
        rows = [compare(records, arm, b, tasks, cfg, costs, held) for b in cfg.budgets
                if any(r["arm"] == arm and r["budget"] == b for r in records)]
        if rows:
            pts = [("base", 0.0)] + [(arm, r["budget"]) for r in rows]
            x = np.array([[0.0] * len(tasks)] + [[r["tokens"]] * len(tasks) for r in rows])
            arms[arm] = {"budgets": rows, "dose_response": dose_response(
                rows, base, tasks, curve(records, pts, x, tasks, cfg))}
    for arm, v in arms.items():  # issue 29 item 4: each arm against uniform, paired
        if arm != "uniform" and "uniform" in arms:
            v["vs_uniform"] = vs_uniform(records, arm, max(cfg.budgets), tasks, cfg, costs)
    dose = data_dose(records, tasks, cfg, costs)
    overfit = _json_or_none(run_dir / "overfit.json")
    if dose and "segments" in dose:  # the dose's answer per dose task (study.dose_verdict)
        dose["verdicts"] = verdicts(dose, overfit)
    summary = {"config": cfg.to_dict(), "costs": costs, "base": base, "arms": arms,
               "data_dose": dose, "overfit": overfit,
               "methods": _json_or_none(run_dir / "methods.json"),
               "same_data": _json_or_none(run_dir / "same_data.json"),  # study.same_data
               "leakage": _json_or_none(run_dir / "leakage.json"),
               "train_data": _json_or_none(run_dir / "train_data.json"),
               "power": power_summary(run_dir, records, cfg, {
                   t: base["tasks"][t]["speedup"]["value"] for t in tasks}),
               "training": training_runs(run_dir, records, cfg),  # study.epochs
               "timed_dtype": timed_dtype(run_dir),
               "bootstrap": _bootstrap_info(records, cfg)}
    path = run_dir / "summary.json"
    write_text(path, json.dumps(summary, indent=2, allow_nan=False,
                                default=lambda x: None))
    return path

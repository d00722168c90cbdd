"""The experiment's report from stored records alone, without models: synthetic ``eval.jsonl``
records (two seeds, a data dose, the full-vocabulary metrics or not) → ``summary.json`` →
``report.md`` and ``report.html`` carry the same sections: the primary metrics first, sampled
alpha as an upper bound, the CE spread on the buckets never called U, Sandler et al.'s U where
the run recorded it, the data dose and its figure, the leak checks."""

from __future__ import annotations

import json

import numpy as np

from specfair.report.study import write_report
from specfair.study.config import StudyConfig
from specfair.study.summary import write_summary

TASKS = ["a", "b"]


def _records(rng, full: bool) -> list[dict]:
    out = []

    def add(arm, budget, tokens, gain, seed=None, **extra):
        for t, base in (("a", 0.5), ("b", 0.8)):
            for j in range(8):
                x = float(np.clip(base + gain + rng.normal(0, 0.02), 0.05, 0.95))
                match = [int(k < round(10 * x)) for k in range(10)]
                r = {"arm": arm, "budget": budget, "tokens": tokens, "id": f"{t}-{j}",
                     "task": t, "group": f"g{t}{j}", "alpha": x, "alpha_lo": x - 0.02,
                     "greedy": sum(match) / 10, "ce": 1 - x, "resid": 0.03, "n": 10,
                     "match": match, "conf": [0.8] * 10} | extra
                if full:
                    r |= {"alpha_full": x - 0.01, "ce_full": 1.2 - x}
                out.append(r | ({} if seed is None else {"seed": seed}))

    add("base", 0.0, 0, 0.0)
    add("uniform", 0.5, 100, 0.02, 0)
    add("uniform", 1.0, 200, 0.05, 0)
    add("uniform", 1.0, 200, 0.04, 1)
    for f, n in ((0.5, 4), (1.0, 8)):
        add(f"uniform@{f:g}", 1.0, int(200 * f), 0.05 * f, 0, prompt_fraction=f,
            dose_prompts=n, dose_supervised_tokens=10 * n)
    return out


def _run_dir(tmp_path, full: bool):
    d = tmp_path / ("full" if full else "old")
    d.mkdir()
    recs = _records(np.random.default_rng(0), full)
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "costs.json").write_text(json.dumps({"c": 0.3, "verify_slope": 0.02}))
    (d / "leakage.json").write_text(json.dumps({
        "n_dropped": 1, "per_task": {"a": 1}, "dropped": [{"id": "x", "task": "a",
                                                           "test_id": "a-0"}],
        "training_texts": {"n_checked": 16, "n_dropped": 2, "per_task": {"b": 2},
                           "dropped": []}}))
    cfg = StudyConfig(tasks=TASKS, arms=["uniform"], budgets=[0.5, 1.0], seeds=[0, 1],
                      prompt_fractions=[0.5, 1.0], bootstrap=200)
    write_summary(d, cfg)
    return d


def test_the_report_leads_with_the_primary_metrics_and_names_each_one(tmp_path):
    d = _run_dir(tmp_path, full=True)
    md_path, html_path = write_report(d)
    md, html = md_path.read_text(), html_path.read_text()
    order = ["## Answer", "## Primary: greedy alpha and predicted speed-up per task",
             "## Dose-response", "## Dose in data", "## Sampled alpha per task (secondary)",
             "## Measured speed-ups (timed)", "## Drafting policy", "## Setup"]
    assert [md.index(h) for h in order] == sorted(md.index(h) for h in order)
    answer = md[md.index("## Answer"):md.index("## Primary")]
    # per arm: the primary metrics (over both seeds), then the secondary ones
    assert answer.index("greedy alpha (primary") < answer.index("predicted speed-up (primary")
    assert answer.index("predicted speed-up (primary") < answer.index("secondary")
    assert "over 2 seed(s) and the prompts" in answer
    assert "secondary: U (Sandler et al., full-vocabulary CE variance" in answer
    assert "data dose (uniform, fixed epochs): the base-worst task by greedy alpha (a)" in answer
    assert "one gamma against a gamma per task" in answer
    # the bucketed CE spread is never labelled U; U is Sandler et al.'s, defined and tabled
    assert "CE spread (top-k)" in md and "| U |" not in md and "U change" not in md
    assert "**U (Sandler et al.)**: the population variance across tasks" in md
    assert "*U (Sandler et al., full-vocabulary CE variance across tasks)*" in md
    assert "| sampled alpha [lower, upper] |" in md and "| residual mass |" in md
    assert "Sampled alpha, upper bound (top-k + residual bucket" in md
    # the curves: slopes with CIs per task, nothing projected past the limit
    assert "uniform: greedy alpha per 10k training tokens" in md
    assert "greedy alpha per 100 distinct training prompts" in md
    assert "| a | 0 / 4 / 8 | 0 / 40 / 80 |" in md
    # leak checks of both kinds, seeds resampled
    assert "Leak check: 1 train-split prompt(s) dropped" in md
    assert "2 of 16 contained one and were dropped before training (b 2)" in md
    assert "training seeds 0, 1 resampled first" in md
    for fig in ("dose_response.png", "data_dose.png"):
        assert f"figures/{fig}" in md and (d / "figures" / fig).stat().st_size > 1000
    assert not (d / "figures/speedup.png").exists() and "Nothing timed in this run" in md
    # the HTML carries the same blocks
    for text in ("Primary: greedy alpha", "U (Sandler et al.", "CE spread (top-k)",
                 "Dose in data", "data dose (uniform, fixed epochs)", "Training texts as "
                 "trained on", "<strong>greedy alpha</strong> (primary)"):
        assert text in html, text
    assert html.count("data:image/png;base64,") == 2


def test_a_run_without_full_vocabulary_states_says_u_was_not_computed(tmp_path):
    d = _run_dir(tmp_path, full=False)
    s = json.loads((d / "summary.json").read_text())
    assert "U_sandler" not in s["base"] and "ce_spread_topk" in s["base"]
    md = write_report(d)[0].read_text()
    assert "U (Sandler et al., full-vocabulary CE variance across tasks): not computed" in md
    assert "secondary: U (Sandler et al.) not computed" in md
    assert "U (Sandler et al., full-vocabulary CE variance;" not in md
    assert "| exact sampled alpha |" in md and "| – | 0.0300 |" in md  # no exact value


def test_slopes_line_of_a_summary_from_before_greedy_alpha():
    """A stored summary without greedy-alpha slopes (older runs) still reports its slopes: the
    greedy part is left out, nothing raises."""
    from specfair.report.study import _slopes

    d = {"projected_tokens_worst_reaches_mean": None, "projection_limit_tokens": 10.0,
         "projection_beyond_limit": False, "worst_task": "a", "alpha_per_10k": {"a": 0.1},
         "mean_alpha_per_10k": 0.0, "ce_spread_topk_per_10k": 0.0}
    (line,) = _slopes({"arms": {"uniform": {"dose_response": d}}})
    assert "+0.1000 sampled alpha" in line and "greedy alpha/10k" not in line


def test_a_dose_task_whose_data_ended_is_drawn_at_the_others_dose_from_its_first_short_point():
    """The data-dose figure's x: a sentence task holding 4,650 supervised tokens keeps its own
    count up to its first short point, then sits at the dose the paragraph tasks got (its own
    data fixed), instead of stacking its last points on one x; a task that reached every dose
    and a collateral task keep their old places."""
    from specfair.report.study_figures import data_dose_figure, dose_xs

    d = {"unit": "supervised_tokens", "dose_tokens": [1500, 4000, 11000],
         "supervised_tokens": {"para": [0, 1620, 4007, 11104], "sent": [0, 1507, 3311, 3311],
                               "other": [0, 900, 900, 900]},
         "prompts": {"para": [0, 10, 30, 90], "sent": [0, 100, 500, 500],
                     "other": [0, 50, 50, 50]},
         "reached": {"para": [True] * 3, "sent": [True, False, False]}}
    dosed = {"para", "sent"}
    assert dose_xs(d, "para", "supervised_tokens", dosed) == ([0, 1620, 4007, 11104], None)
    assert dose_xs(d, "sent", "supervised_tokens", dosed) == ([0, 1507, 3311, 11000], 3)
    assert dose_xs(d, "sent", "prompts", dosed) == ([0, 100, 500, 500], None)
    xs, cut = dose_xs(d, "other", "supervised_tokens", dosed)
    assert cut is None and xs == [0, 1563.5, 3659.0, 7207.5]
    ci = {"value": 0.01, "lo": 0.0, "hi": 0.02}
    s = {"config": {"tasks": ["para", "sent", "other"]},
         "data_dose": d | {"arm": "uniform", "dose_tasks": ["para", "sent"],
                           "points": [{"tasks": {t: {"d_greedy": ci} for t in d["prompts"]}}
                                      for _ in range(3)]}}
    assert data_dose_figure(s)[:8] == b"\x89PNG\r\n\x1a\n"

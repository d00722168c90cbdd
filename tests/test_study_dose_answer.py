"""The data dose's answer (issue 29 items 3, 4 and 7), from stored records alone: synthetic
``eval.jsonl`` records of a dose in supervised tokens where each task's answer is known by
construction (one rises, one is flat, one still climbs over its last segment without leaving
the base drafter's CI, one whose data runs out early and is flat) → ``summary.json``'s
segments and verdicts, the power checks, the replayed draws per task → the report's first
paragraph (present for a dose run, absent for others), its table and its figure."""

from __future__ import annotations

import json

import numpy as np
import pytest

from specfair.distill.weighting import TaskSampler
from specfair.report.study import write_report
from specfair.report.study_dose_answer import dose_answer_blocks, gap, gap_table
from specfair.study.config import StudyConfig
from specfair.study.dose_verdict import verdict
from specfair.study.epochs import replay_draws, training_runs
from specfair.study.summary import write_summary

TASKS = ["rise", "flat", "climb", "short"]
DOSES = [1000, 3000, 9000, 27000]
# greedy-alpha gain over the base drafter at each dose point, per task
GAIN = {"rise": [0.0, 0.0, 0.2, 0.25], "flat": [0.0] * 4, "climb": [-0.2, -0.2, -0.2, 0.0],
        "short": [0.0] * 4}
N, POS = 40, 20  # test prompts per task, positions per answer


def _sup(t: str) -> list[int]:
    """Supervised tokens achieved at each dose: 'short' holds 2,500 in all."""
    return [min(n, 2500) for n in DOSES] if t == "short" else [n + 7 for n in DOSES]


def _records() -> list[dict]:
    rng = np.random.default_rng(0)
    x0 = {t: rng.uniform(0.35, 0.55, N) for t in TASKS}
    out = []

    def add(arm, budget, gains, seed=None, extra=lambda t: {}):
        for t in TASKS:
            for j in range(N):
                x = float(np.clip(x0[t][j] + gains[t] + rng.normal(0, 0.02), 0.0, 1.0))
                match = [int(k < round(POS * x)) for k in range(POS)]
                r = {"arm": arm, "budget": budget, "tokens": 0 if arm == "base" else 5000,
                     "id": f"{t}-{j}", "task": t, "group": f"g{t}{j}", "alpha": x,
                     "alpha_lo": x - 0.01, "greedy": sum(match) / POS, "ce": 1 - x,
                     "resid": 0.02, "n": POS, "match": match, "conf": [0.8] * POS} | extra(t)
                out.append(r | ({} if seed is None else {"seed": seed}))

    add("base", 0.0, dict.fromkeys(TASKS, 0.0))
    for k, n in enumerate(DOSES):
        def fields(t, k=k, n=n):
            return {"dose_prompts": 10 * (k + 1), "dose_supervised_tokens": _sup(t)[k],
                    "dose_prompt_tokens": 3 * _sup(t)[k], "dose_tokens": n,
                    "dose_reached": _sup(t)[k] >= n}
        gains = {t: GAIN[t][k] for t in TASKS}
        seeds = [0, 1] if n == DOSES[-1] else [0]
        for seed in seeds:
            if n == DOSES[-1]:  # the largest dose is the arm itself, both seeds
                add("uniform", 1.0, gains, seed)
            add(f"uniform@{n}tok", 1.0, gains, seed, fields)
    return out


def _cfg(**kw) -> StudyConfig:
    return StudyConfig(**{"tasks": TASKS, "arms": ["uniform"], "budgets": [1.0],
                          "seeds": [0, 1], "dose_tokens": DOSES, "bootstrap": 400,
                          "test_response_tokens": 128} | kw)


def _run(tmp_path, overfit_gain: float = 0.2, timed: bool = True):
    d = tmp_path / "run"
    d.mkdir()
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    (d / "costs.json").write_text(json.dumps({"c": 0.3, "verify_slope": 0.02}))
    (d / "overfit.json").write_text(json.dumps({
        "task": "flat", "n_sequences": 10, "epochs": 3.0, "lr": 1e-4, "tokens": 100,
        "supervised_tokens": 60, "prompt_tokens": 40, "tokens_per_s": 50.0,
        "greedy_before": 0.5, "greedy_after": 0.5 + overfit_gain}))
    last = {t: {"prompts": 40, "supervised_tokens": _sup(t)[-1],
                "prompt_tokens": 3 * _sup(t)[-1]} for t in TASKS}  # the largest dose's
    (d / "train_data.json").write_text(json.dumps(last))
    if timed:
        ci = lambda m: {"mean": m, "lo": m - 0.1, "hi": m + 0.1}  # noqa: E731
        tasks = lambda m, vs: {t: {"n": 30, "speedup": ci(m), "alpha": 0.5,  # noqa: E731
                                   "predicted": m, "predicted_prefill": None,
                                   "vs_base": vs} for t in TASKS}
        (d / "timed.json").write_text(json.dumps({
            "policy": "fixed gamma=5", "gamma": 5, "budget": 1.0, "max_new_tokens": 128,
            "n_per_task": 30, "costs": {"c": 0.3, "verify_slope": 0.02}, "machines": [],
            "drafters": {"base": {"drafter": "d", "tasks": tasks(1.2, None),
                                  "overall": ci(1.2), "max_min": 1.0, "sd_matches_ar": 0.9},
                         "uniform": {"drafter": "u", "tasks": tasks(1.4, ci(1.17)),
                                     "overall": ci(1.4), "max_min": 1.0,
                                     "sd_matches_ar": 0.8, "new_policy_field": {"x": 1}}}}))
    cfg = _cfg()
    return d, json.loads(write_summary(d, cfg).read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("dose"))


def test_verdicts_on_records_whose_answer_is_known(run):
    _, s = run
    d = s["data_dose"]
    v = d["verdicts"]["tasks"]
    assert v["rise"]["verdict"] == "rises"
    assert v["rise"]["rises_at"]["dose_tokens"] == 9000
    assert v["rise"]["rises_at"]["supervised_tokens"] == 9007
    assert v["rise"]["rises_at"]["change"]["lo"] > 0
    assert v["flat"]["verdict"] == "saturates" and v["flat"]["saturates_at"] == 9007
    assert v["climb"]["verdict"] == "undecided"
    assert "greedy alpha is rising and the predicted speed-up is rising" in v["climb"]["why"]
    # 'short' ran out at 2,500 tokens from the second dose: its own segment is 1,000 -> 2,500
    seg = d["segments"]["short"]
    assert seg["ran_out"] == {"dose_tokens": 3000, "supervised_tokens": 2500}
    assert seg["segment"]["supervised_tokens"] == [1000, 2500]
    assert seg["segment"]["points"] == [0, 1]
    assert v["short"]["verdict"] == "saturates" and v["short"]["saturates_at"] == 1000
    # the last segment's slopes: paired, per 10k supervised tokens, the change scaled
    flat = d["segments"]["flat"]["segment"]
    assert flat["supervised_tokens"] == [9007, 27007]
    k = 1e4 / (27007 - 9007)
    assert flat["greedy_per_10k"]["value"] == pytest.approx(flat["d_greedy"]["value"] * k)
    assert flat["speedup_per_10k"]["lo"] == pytest.approx(flat["d_speedup"]["lo"] * k)
    assert flat["greedy_per_10k"]["lo"] <= 0 <= flat["greedy_per_10k"]["hi"]
    climb = d["segments"]["climb"]["segment"]
    assert climb["greedy_per_10k"]["lo"] > 0 and climb["speedup_per_10k"]["lo"] > 0
    assert d["verdicts"]["overfit_check"]["passed"]


def test_a_failed_or_missing_overfit_check_leaves_a_flat_task_undecided(run):
    _, s = run
    d = s["data_dose"]
    failed = verdict(d, "flat", {"task": "flat", "gain": 0.0, "threshold": 0.02,
                                 "passed": False})
    assert failed["verdict"] == "undecided" and "did not pass" in failed["why"]
    missing = verdict(d, "flat", None)
    assert missing["verdict"] == "undecided" and "no overfit check" in missing["why"]
    # a rise needs no overfit check: it is measured against the base drafter
    assert verdict(d, "rise", None)["verdict"] == "rises"


def test_the_power_targets_are_checked_per_lagging_task_with_n(run):
    _, s = run
    c = s["power"]["checks"]
    assert c["tasks"] == TASKS and c["alpha_source"] == "uniform@27000tok"
    assert len(c["two_worst"]) == 2
    for t in TASKS:
        a = c["per_task"][t]["alpha"]
        assert a["n"] == N and a["min_n"] == 100 and a["target"] == 0.02
        assert a["met"] is False  # 40 prompts < 100, whatever the MDE
        assert a["mde"] == s["power"]["alpha"]["arms"]["uniform@27000tok"][t]["mde"]
        sp = c["per_task"][t]["speedup"]
        assert sp["source"] is None and not sp["met"]  # no timed bench records here
        assert sp["applies"] == (t in c["two_worst"]) and sp["new_tokens"] == 128


def test_the_first_paragraph_is_there_for_a_dose_run(run):
    d, s = run
    md = write_report(d)[0].read_text()
    answer = md[md.index("## Answer"):md.index("## Primary")]
    first = answer.split("\n\n")[1]  # the paragraph right under the heading
    assert first.startswith("> ") or "In short" in first
    assert "In short: uniform fine-tuned at fixed epochs on 1,000, 3,000, 9,000, 27,000" in first
    assert "**rise: rises** from 9,007 supervised tokens" in first
    assert "**flat: saturates at 9,007 supervised tokens**" in first
    assert "**climb: undecided**" in first
    assert "its data ran out at 2,500 supervised tokens" in first
    assert "only the largest dose is timed" in first
    assert ("measured (timed), the tuned drafter's speed-up ÷ the base drafter's (paired 95% "
            "CI): 1.170 [1.070, 1.270] under fixed gamma=5, above 1 beyond its CI") in first
    assert "not met" in first  # the power of 40 prompts against the 100 asked
    assert "What would overturn it:" in answer and "What to do:" in answer
    assert "fine-tune on at least 9,007 supervised tokens" in answer
    assert "the share of timed SD answers equal to plain decoding's is base 90% of 120, " \
           "uniform 80% of 120" in answer
    assert "float32's: not timed in this run" in answer
    assert ("| task | base drafter, fixed gamma=5 | base drafter, best policy (replayed) | "
            "tuned (uniform, largest dose), fixed gamma=5 |") in answer
    assert (d / "figures" / "dose_answer.png").stat().st_size > 1000
    assert "figures/dose_answer.png" in answer
    # the power targets and what each drafter trained on
    assert "The power targets per lagging task" in md
    assert "| rise | 40 |" in md
    assert "## What each drafter trained on" in md
    # 5,000 tokens seen over one epoch's 3 x (1,007 + 3,021) + (1,000 + 3,000) = 16,084
    assert "| uniform@1000tok (seed 0; seen 5,000 tokens, 0.31 epochs) | rise | 10 | 1,007 " \
           "| 3,021 | – | – |" in md  # no train log here: no draws
    assert "| uniform 1.00 (seed 0; seen 5,000 tokens, 0.01 epochs) | rise | 40 | 27,007 |" in md
    assert "| max/min |" in answer


def test_no_first_paragraph_without_a_dose_in_tokens(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    recs = [r for r in _records() if r["arm"] in ("base", "uniform")]
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (d / "costs.json").write_text(json.dumps({"c": 0.3, "verify_slope": 0.02}))
    s = json.loads(write_summary(d, _cfg(dose_tokens=[])).read_text())
    assert s["data_dose"] is None
    md = write_report(d)[0].read_text()
    assert "In short" not in md and "dose_answer.png" not in md
    assert not (d / "figures" / "dose_answer.png").exists()
    assert md.split("## Answer\n\n")[1].startswith("- **uniform**")  # the bullets, as before


def test_draws_per_task_are_replayed_and_checked_against_the_log():
    pool = {"a": 7, "b": 3, "c": 12}
    labels = [t for t, n in pool.items() for _ in range(n)]
    sampler = TaskSampler(labels, "uniform", seed=4)
    steps, truth = [], dict.fromkeys(pool, 0)
    for k in range(25):
        drawn = [labels[i] for i in sampler.sample(4)]
        for t in drawn:
            truth[t] += 1
        steps.append({"step": k + 1, "tokens": 10 * (k + 1), "tasks": sorted(set(drawn))})
    got, why = replay_draws(steps, pool, "uniform", 4, 4)
    assert got == truth and why is None and sum(got.values()) == 100
    wrong, why = replay_draws(steps, pool, "uniform", 5, 4)  # another seed's draws
    assert wrong is None and "differ" in why


def test_training_rows_replay_a_logged_run(tmp_path, run):
    """A train log written by the sampler the arm used: the rows' draws are exact; a log cut
    short of the record's tokens gives no draws, and says why."""
    d, s = run
    cfg = _cfg()
    recs = [json.loads(x) for x in (d / "eval.jsonl").read_text().splitlines()]
    name = "uniform@1000tok"
    pool = {t: 10 for t in TASKS}
    labels = [t for t, n in pool.items() for _ in range(n)]
    sampler, counts = TaskSampler(labels, "uniform", seed=0), dict.fromkeys(TASKS, 0)
    log = []
    for k in range(50):  # 50 steps x 8 = 400 draws, 5,000 tokens in the records
        drawn = [labels[i] for i in sampler.sample(cfg.batch_size)]
        for t in drawn:
            counts[t] += 1
        log.append({"step": k + 1, "tokens": 100 * (k + 1), "tasks": sorted(set(drawn))})
    root = tmp_path / "logged"
    (root / "arms" / "dose" / name).mkdir(parents=True)
    path = root / "arms" / "dose" / name / "train_log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in log))
    row = next(r for r in training_runs(root, recs, cfg) if r["arm"] == name)
    assert {t: v["draws"] for t, v in row["tasks"].items()} == counts
    assert row["tasks"]["rise"]["epochs"] == pytest.approx(counts["rise"] / 10)
    assert row["draws_from"].startswith("replayed")
    path.write_text("".join(json.dumps(r) + "\n" for r in log[:-1]))
    row = next(r for r in training_runs(root, recs, cfg) if r["arm"] == name)
    assert row["tasks"]["rise"]["draws"] is None and "does not run whole" in row["draws_from"]


def test_the_matched_arms_table_puts_each_arm_beside_uniform_per_dose_task(run):
    """Item 4: per dose task one row per arm at the largest dose, its paired changes, seeds,
    and the supervised tokens and epochs the task gave it; none with one arm."""
    import copy

    from specfair.report.doc import to_markdown
    from specfair.report.study_dose import matched_arms_blocks

    _, s = run
    assert matched_arms_blocks(s) == []  # one arm: nothing to match
    s = copy.deepcopy(s)
    other = copy.deepcopy(s["arms"]["uniform"]["budgets"][-1]) | {"arm": "per-task",
                                                                  "seeds": [0]}
    other["tasks"]["rise"]["d_greedy"] = {"value": 0.1, "lo": 0.05, "hi": 0.15,
                                          "claimed": True}
    ci = {"value": -0.02, "lo": -0.03, "hi": -0.01, "claimed": True}
    s["arms"]["per-task"] = {"budgets": [other], "vs_uniform": {
        "seeds": [0, 0], "d_greedy": dict.fromkeys(TASKS, ci),
        "d_speedup": dict.fromkeys(TASKS, ci)}}
    s["config"]["arms"] = ["uniform", "per-task"]
    s["training"] = [{"arm": "per-task", "budget": 1.0, "tasks": {
        "rise": {"supervised_tokens": 27007, "epochs": 2.0}}}]
    md = to_markdown(matched_arms_blocks(s))
    assert "## The arms matched per task" in md and "(the largest dose)" in md
    rows = [x for x in md.splitlines() if x.startswith("| ")][1:]
    assert len(rows) == 2 * len(TASKS) + 1  # the header's separator, then arm x task
    u = s["arms"]["uniform"]["budgets"][-1]["tasks"]["rise"]["d_greedy"]
    assert rows[1].startswith(f"| rise | uniform | 2 | – | – | {u['value']:+.3f}")
    assert rows[1].endswith("| – | – |")  # uniform against itself: nothing
    assert rows[2].startswith("|  | per-task | 1 | 27,007 | 2.00 | +0.100 [+0.050, +0.150]*")
    assert rows[2].endswith("| -0.020 [-0.030, -0.010]* | -0.02 [-0.03, -0.01]* |")


# --- the gap from timed.json's blocks (issue 29 items 5 and 7) -------------------------------

# per task the measured speed-up of: base at fixed gamma, base under the policy, tuned at fixed
# gamma, tuned under the policy, HF assisted; and the tuned drafter's paired gain over the base
# (mean, lo, hi) at fixed gamma and under the policy: above 1, within, below 1 beyond its CI
SPEED = {"rise": (1.10, 1.30, 1.40, 1.60, 0.90), "flat": (1.00, 1.20, 1.02, 1.21, 0.85),
         "climb": (0.80, 1.05, 0.90, 1.00, 0.70), "short": (0.70, 0.95, 0.72, 0.94, 0.60)}
GAINS = {"rise": ((1.27, 1.20, 1.35), (1.23, 1.15, 1.31)),
         "flat": ((1.02, 0.97, 1.07), (1.01, 0.96, 1.06)),
         "climb": ((1.12, 1.05, 1.20), (0.95, 0.91, 0.99)),
         "short": ((1.03, 0.99, 1.08), (0.99, 0.93, 1.04))}


def _m(m: float) -> dict:
    return {"mean": m, "lo": m - 0.1, "hi": m + 0.1}


def _block(k: int, gain: int | None, skip: str | None = None, **kw) -> dict:
    tasks = {t: {"n": 10, "speedup": _m(SPEED[t][k]), "alpha": 0.5,
                 "vs_base": None if gain is None else dict(zip(("mean", "lo", "hi"),
                                                               GAINS[t][gain], strict=True))}
             for t in TASKS if t != skip}
    return {"drafter": "x", "tasks": tasks, "overall": _m(1.0), "max_min": 2.0,
            "worst_task": "short", "sd_matches_ar": 1.0} | kw


def _timed_doc(policies: str | None = "adaptive+hybrid", hf: bool = True,
               skip: str | None = None) -> dict:
    own = {"base": _block(0, None, sd_matches_ar=0.9), "uniform": _block(2, 0, sd_matches_ar=0.8)}
    for v in own.values():  # the stage's own policy: with the replay's predictions
        for t, x in v["tasks"].items():
            x |= {"predicted": SPEED[t][0] - 0.05, "predicted_prefill": None}
    doc = {"policy": "fixed gamma=5", "gamma": 5, "budget": 1.0, "max_new_tokens": 128,
           "n_per_task": 30, "costs": {"c": 0.3, "verify_slope": 0.02}, "machines": [],
           "drafters": own}
    if policies:
        doc["policies"] = {
            "fixed:5+model": {"policy": "fixed:5", "proposer": "model", "own": True,
                              "drafters": own},
            policies: {"policy": policies.split("+")[0], "proposer": "hybrid", "own": False,
                       "drafters": {"base": _block(1, None),
                                    "uniform": _block(3, 1, skip, sd_matches_ar=0.95)}}}
        doc["hf_assisted"] = _block(4, None, settings={"num_assistant_tokens": 20}) if hf else None
    return doc


def _text(v: tuple[float, float, float] | float, nd: int = 2) -> str:
    m, lo, hi = v if isinstance(v, tuple) else (v, v - 0.1, v + 0.1)
    return f"{m:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}]"


def _paragraph(s: dict, timed: dict | None) -> tuple[str, list[list[str]], str]:
    blocks = dose_answer_blocks(s, timed)
    return blocks[0].text, blocks[1].rows, blocks[2].text


def test_the_gap_shows_the_measured_numbers_under_each_policy_and_hf(run):
    _, s = run
    timed = _timed_doc()
    g = gap(s, timed)
    assert g["policy"] == "adaptive+hybrid" and g["why"] == "the policy users deploy"
    for t in TASKS:
        row = g["cells"][t]
        for k, key in enumerate("abcde"):  # each speed-up as timed.json holds it, its CI
            assert row[key]["source"] == "measured" and row[key]["value"] == SPEED[t][k]
            assert row[key]["text"] == _text(SPEED[t][k])
        for j, key in enumerate(("g_fixed", "g_policy")):
            assert row[key]["source"] == "measured"
            assert row[key]["text"] == _text(GAINS[t][j], 3)
    table = gap_table(s, timed)
    assert table.headers == ["task", "base drafter, fixed gamma=5",
                             "base drafter, adaptive+hybrid",
                             "tuned (uniform, largest dose), fixed gamma=5",
                             "tuned, adaptive+hybrid", "HF assisted (defaults, base drafter)",
                             "tuned ÷ base, fixed gamma=5", "tuned ÷ base, adaptive+hybrid"]
    assert not any("predicted" in c for r in table.rows for c in r)
    spread = [max(v[k] for v in SPEED.values()) / min(v[k] for v in SPEED.values())
              for k in range(5)]
    assert table.rows[-1] == ["max/min", *(f"{x:.2f}" for x in spread), "–", "–"]
    para, _, after = _paragraph(s, timed)
    assert "the policy: adaptive+hybrid: the policy users deploy" in para
    assert "timed on up to 30 prompts per task at 128 new tokens" in para
    assert (f"the base drafter at fixed gamma=5 0.70–1.10x, max/min {spread[0]:.2f} (measured)"
            in para)
    assert (f"both (uniform, adaptive+hybrid) 0.94–1.60x, max/min {spread[3]:.2f} (measured)"
            in para)
    assert f"HF assisted generation's defaults 0.60–0.90x, max/min {spread[4]:.2f} (measured)" \
        in para
    # the tuned drafter's gain beyond its CI (or not), said per task and policy
    assert ("**rise: rises**" in para and "1.270 [1.200, 1.350] under fixed gamma=5, above 1 "
            "beyond its CI: the tuned drafter is faster; 1.230 [1.150, 1.310] under "
            "adaptive+hybrid, above 1 beyond its CI" in para)
    assert "1.020 [0.970, 1.070] under fixed gamma=5, 1 within its CI" in para
    assert ("0.950 [0.910, 0.990] under adaptive+hybrid, below 1 beyond its CI: the tuned "
            "drafter is slower" in para)
    assert "use adaptive+hybrid instead" in after
    assert "uniform under adaptive+hybrid 95% of 40, HF assisted 100% of 40" in after
    assert "predicted" not in para.split("The gap over")[1]


def test_an_old_timed_json_gives_the_policy_and_gain_as_predicted(run):
    """timed.json of a run timed before the policies (no ``policies``/``hf_assisted``): the
    fixed γ measured, the policy columns the replay's best policy, labelled predicted."""
    _, s = run
    timed = _timed_doc(policies=None)
    assert "policies" not in timed and "hf_assisted" not in timed
    g = gap(s, timed)
    assert g["policy"] is None
    big = s["data_dose"]["points"][-1]
    for t in TASKS:
        row = g["cells"][t]
        assert row["a"]["text"] == _text(SPEED[t][0]) and row["a"]["source"] == "measured"
        assert row["c"]["text"] == _text(SPEED[t][2]) and row["c"]["source"] == "measured"
        assert row["g_fixed"]["text"] == _text(GAINS[t][0], 3)
        for key, comp in (("b", s["base"]), ("d", big)):
            name = row[key]["text"].split("(predicted: ")[1][:-1]
            assert row[key]["source"] == "predicted"
            assert row[key]["value"] == comp["policies"][name][t]["speedup"]
            assert row[key]["value"] == max(p[t]["speedup"] for p in comp["policies"].values())
            assert row[key]["text"] == f"{row[key]['value']:.2f} (predicted: {name})"
        assert row["e"]["text"] == "–" and row["e"]["source"] is None
        gp = row["g_policy"]
        assert gp["source"] == "predicted" and gp["text"].startswith("Δ")
        assert gp["value"] == pytest.approx(row["d"]["value"] - row["b"]["value"])
    para, rows, _ = _paragraph(s, timed)
    assert "the policy: no deployed policy timed: the best replayed policy per task" in para
    assert "HF assisted generation's defaults not timed" in para
    assert "the best policy alone (the replay's best policy per task)" in para
    assert "(predicted)" in para.split("the best policy alone")[1].split(";")[0]
    assert "(measured)" in para.split("the base drafter at fixed gamma=5")[-1].split(";")[0]
    assert "under fixed gamma=5, above 1 beyond its CI" in para
    assert "under adaptive+hybrid" not in para
    assert rows[-1][2].endswith("(predicted)") and not rows[-1][1].endswith("(predicted)")


def test_nothing_timed_gives_every_gap_cell_as_predicted(run):
    _, s = run
    g = gap(s, None)
    big = s["data_dose"]["points"][-1]
    for t in TASKS:
        row = g["cells"][t]
        for key, ci in (("a", s["base"]["tasks"][t]["speedup"]),
                        ("c", big["tasks"][t]["speedup"])):
            assert row[key]["source"] == "predicted" and row[key]["value"] == ci["value"]
            assert row[key]["text"] == (f"{ci['value']:.2f} [{ci['lo']:.2f}, {ci['hi']:.2f}] "
                                        "(predicted)")
        d = big["tasks"][t]["d_speedup"]
        assert row["g_fixed"]["text"] == (f"Δ{d['value']:+.2f} [{d['lo']:+.2f}, "
                                          f"{d['hi']:+.2f}] (predicted)")
        assert all(row[k]["source"] == "predicted" for k in "abcd")
    para, rows, after = _paragraph(s, None)
    assert "measured (timed)" not in para and "(measured)" not in para
    assert "timed on up to" not in para
    assert all(c.endswith("(predicted)") for c in rows[-1][1:5])
    assert "not measured in this run (nothing timed)" in after


def test_another_policy_is_chosen_as_the_fastest_and_says_so(run):
    _, s = run
    timed = _timed_doc(policies="heuristic+hybrid")
    timed["policies"]["confidence:0.4+model"] = {
        "policy": "confidence:0.4", "proposer": "model", "own": False,
        "drafters": {"base": _block(0, None, overall=_m(1.5))}}
    g = gap(s, timed)
    assert g["policy"] == "confidence:0.4+model" and "chosen on the timed prompts" in g["why"]
    # only the base drafter timed under it: the tuned drafter's cells fall back, predicted
    assert g["cells"]["rise"]["b"]["source"] == "measured"
    assert g["cells"]["rise"]["d"]["source"] == "predicted"
    assert g["cells"]["rise"]["g_policy"]["source"] == "predicted"
    timed["policies"]["confidence:0.4+model"]["drafters"]["base"]["overall"] = _m(0.5)
    assert gap(s, timed)["policy"] == "heuristic+hybrid"


def test_a_partly_timed_or_malformed_timed_json_is_read_defensively(run):
    _, s = run
    timed = _timed_doc(skip="short")  # the tuned drafter under the policy lacks 'short'
    g = gap(s, timed)
    assert g["cells"]["short"]["d"]["source"] == "predicted"
    assert g["cells"]["rise"]["d"]["source"] == "measured"
    para, rows, _ = _paragraph(s, timed)
    assert "both (uniform, adaptive+hybrid) partly measured (the table)" in para
    assert rows[-1][4] == "–"
    for bad in ({"drafters": None, "policies": None, "hf_assisted": None},
                {"drafters": {"base": {"tasks": None}}, "policies": ["x"]},
                {"policies": {"adaptive+hybrid": {"drafters": None}, "x": "y"},
                 "hf_assisted": {"tasks": {"rise": {"speedup": {"mean": None}}}}}):
        g = gap(s, bad)
        assert g["policy"] is None
        assert all(r[k]["source"] == "predicted" for r in g["cells"].values() for k in "abcd")
        assert _paragraph(s, bad)[0].startswith("In short")

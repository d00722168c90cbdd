"""The study's data hygiene and statistics on synthetic records, without models: the leak
check of the train prompts, the bootstrap that resamples shared sources jointly, and drafting
policies chosen in sample and out of sample."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from specfair.measure.replay import POLICIES
from specfair.report.study import policy_answer
from specfair.study.config import StudyConfig
from specfair.study.data import study_prompts
from specfair.study.policies import (
    ONE_HELD,
    ONE_ORACLE,
    TASK_HELD,
    TASK_ORACLE,
    study_policies,
)
from specfair.study.summary import compare, dose_response
from specfair.tasks.prompt import Prompt

SUMMARIZE = "Summarize the following text in three sentences.\n\n"


class _Suite:
    """A suite whose splits are given (the study only asks for ``prompts(split, tasks)``)."""

    def __init__(self, train: list[Prompt], test: list[Prompt]) -> None:
        self.split = {"train": train, "test": test}

    def prompts(self, split: str, tasks) -> list[Prompt]:
        return [p for p in self.split[split] if p.task in tasks]


def test_study_prompts_drop_train_items_that_share_a_text_with_the_test():
    answer = ("Cats sleep most of the day because they hunt at night.\n\n"
              "They also spend hours grooming their fur.")
    test = [Prompt("sum-t", "summarization", (SUMMARIZE + answer,)),
            Prompt("chat-t", "chat", ("What do dogs like to eat for breakfast?",))]
    train = [Prompt(f"chat-{i}", "chat", (f"Question {i}: what do animals do all day long?",),
                    reference=f"Answer {i}: animals do many different things every day.")
             for i in range(6)]
    train.append(Prompt("chat-leak", "chat", ("Why do cats sleep so much?",), reference=answer))
    train += [Prompt(f"sum-{i}", "summarization", (SUMMARIZE + f"Passage {i} about the "
                                                   "weather in spring and in autumn.",))
              for i in range(6)]  # the instruction they share with the test is a template
    cfg = StudyConfig(tasks=["chat", "summarization"], n_train=3, n_test=1, n_heldout=1)
    sp = study_prompts(cfg, _Suite(train, test))
    assert sp.dropped == [{"id": "chat-leak", "task": "chat", "test_id": "sum-t"}]
    kept = [p.id for p in sp.train + sp.heldout]
    assert "chat-leak" not in kept
    assert sum(k.startswith("chat") for k in kept) == 4  # n_train + n_heldout, from the rest
    assert sum(k.startswith("sum") for k in kept) == 4
    # the leak is the reference, which only reference+drafter training text trains on
    other = study_prompts(dataclasses.replace(cfg, train_text="drafter"), _Suite(train, test))
    assert other.dropped == []


def _records(arm: str, budget: float, values: dict[str, np.ndarray], grouped: bool,
             seed: int = 0, match=(1, 1, 0, 1, 1)) -> list:
    return [{"arm": arm, "budget": budget, "tokens": 0, "id": f"{t}-{j}", "task": t,
             "seed": seed, "group": f"problem{j}" if grouped else None, "alpha": float(x),
             "alpha_lo": float(x) - 0.01, "greedy": float(x), "ce": float(1 - x),
             "resid": 0.02, "match": list(match), "conf": [0.9] * len(match)}
            for t, xs in values.items() for j, x in enumerate(xs)]


def test_shared_problems_are_resampled_jointly():
    """Three tasks test the same 40 problems (as mgsm_zh, mgsm_ja and translation_en_fr do),
    with per-problem effects shared across them: resampled by problem, the CI of the mean over
    tasks is about sqrt(3) wider than when the tasks count as independent samples; a single
    task's CI does not change."""
    rng = np.random.default_rng(1)
    tasks = ["mgsm_zh", "mgsm_ja", "translation_en_fr"]
    x = rng.uniform(0.5, 0.9, 40)
    d = rng.normal(0.0, 0.05, 40)
    base = {t: x + 0.01 * k for k, t in enumerate(tasks)}
    arm = {t: base[t] + d for t in tasks}
    cfg = StudyConfig(tasks=tasks, bootstrap=2000)
    costs = {"c": 0.4, "verify_slope": 0.02}
    width = lambda ci: ci["hi"] - ci["lo"]  # noqa: E731
    res = {}
    for grouped in (True, False):
        recs = _records("base", 0.0, base, grouped) + _records("uniform", 1.0, arm, grouped)
        res[grouped] = compare(recs, "uniform", 1.0, tasks, cfg, costs)
    assert res[True]["d_mean_alpha"]["value"] == res[False]["d_mean_alpha"]["value"]
    for key in ("d_mean_alpha", "mean_alpha"):
        ratio = width(res[True][key]) / width(res[False][key])
        assert 1.4 < ratio < 2.1, (key, ratio)
    for t in tasks:
        ratio = width(res[True]["tasks"][t]["d_alpha"]) / width(res[False]["tasks"][t]["d_alpha"])
        assert 0.8 < ratio < 1.25, (t, ratio)


def _passes(match_rate: float, n: int, rng) -> list[tuple[list, list]]:
    out = []
    for _ in range(n):
        m = (rng.random(33) < match_rate).astype(int).tolist()
        out.append((m, [0.9 if k else 0.2 for k in m]))
    return out


def test_gamma_is_chosen_out_of_sample_and_the_oracle_is_labelled():
    """Task ``a``'s test passes reward long drafts and its held-out passes short ones: the
    gamma chosen on the held-out passes differs from the test oracle's and scores lower on the
    test; the oracle is an upper bound per task; one gamma cannot beat a gamma per task."""
    rng = np.random.default_rng(0)
    test = {"a": _passes(0.97, 30, rng), "b": _passes(0.5, 30, rng)}
    held = {"a": _passes(0.3, 10, rng), "b": _passes(0.5, 10, rng)}
    pol, scores = study_policies(test, held, 0.1, 0.02)
    assert {TASK_ORACLE, ONE_ORACLE, TASK_HELD, ONE_HELD} <= set(pol)
    assert pol[TASK_HELD]["a"]["gamma"] < pol[TASK_ORACLE]["a"]["gamma"]
    assert pol[TASK_HELD]["a"]["speedup"] < pol[TASK_ORACLE]["a"]["speedup"]
    for t in test:
        assert all(pol[TASK_ORACLE][t]["speedup"] >= pol[lab][t]["speedup"] - 1e-12
                   for lab in (ONE_ORACLE, TASK_HELD, ONE_HELD))
    assert len({pol[ONE_HELD][t]["gamma"] for t in test}) == 1
    assert TASK_ORACLE not in scores and ONE_ORACLE not in scores  # chosen on the test
    fixed5 = POLICIES[0].label
    assert all(scores[TASK_HELD][t] >= max(scores[fixed5][t], scores[ONE_HELD][t])
               for t in test)  # the best fixed gamma on the held-out passes, per task
    # runs without held-out passes get no out-of-sample choice
    none_pol, none_scores = study_policies(test, {"a": held["a"]}, 0.1, 0.02)
    assert none_scores is None and TASK_HELD not in none_pol and TASK_ORACLE in none_pol
    # the report names both choices
    r = {"arm": "base", "budget": 0.0, "tokens": 0, "base_worst_task": "b",
         "policies": pol, "policies_heldout": scores}
    head, items = policy_answer({"base": r, "arms": {"uniform": {"budgets": [
        r | {"arm": "uniform", "budget": 1.0}]}}})
    text = "\n".join([head, *items])
    assert "out of sample (chosen on the held-out passes" in text
    assert "in-sample oracle (chosen on the test passes themselves)" in text
    assert "policy best on the held-out passes" in text and "in-sample oracle best" in text


def test_seeds_are_resampled_and_primary_metrics_have_paired_cis():
    """Three training seeds that disagree (one gains, two do not): the CI of the change resamples
    seeds as well as prompts, so it is wider than any one seed's and is not claimed; with
    three seeds that agree it is claimed. Greedy alpha and the predicted speed-up (replayed
    greedy acceptance) carry paired CIs, sampled alpha its [lower, upper] bounds."""
    rng = np.random.default_rng(2)
    tasks = ["a", "b"]
    x = {t: rng.uniform(0.4, 0.6, 30) for t in tasks}
    noise = {t: rng.normal(0, 0.01, 30) for t in tasks}
    cfg = StudyConfig(tasks=tasks, bootstrap=1000, seeds=[0, 1, 2])
    costs = {"c": 0.3, "verify_slope": 0.02}
    base = _records("base", 0.0, x, True, match=(1, 0, 1, 0, 1, 0, 1, 0))
    width = lambda ci: ci["hi"] - ci["lo"]  # noqa: E731

    def arm(gains):
        recs = []
        for seed, g in enumerate(gains):
            noisy = {t: v + g + noise[t] for t, v in x.items()}
            recs += _records("uniform", 1.0, noisy, True, seed,
                             match=(1, 1, 1, 1, 1, 1, 1, 0) if g > 0 else
                             (1, 0, 1, 0, 1, 0, 1, 0))
        return recs

    agree = compare(base + arm([0.05, 0.05, 0.05]), "uniform", 1.0, tasks, cfg, costs)
    split = compare(base + arm([0.15, 0.0, 0.0]), "uniform", 1.0, tasks, cfg, costs)
    one = compare(base + arm([0.15]), "uniform", 1.0, tasks, cfg, costs)
    assert agree["seeds"] == [0, 1, 2] and one["seeds"] == [0]
    for t in tasks:
        assert agree["tasks"][t]["d_greedy"]["claimed"]
        assert agree["tasks"][t]["d_speedup"]["claimed"] and \
            agree["tasks"][t]["d_speedup"]["value"] > 0
        d = split["tasks"][t]["d_greedy"]
        assert abs(d["value"] - 0.05 - noise[t].mean()) < 1e-9  # the mean over seeds
        assert not d["claimed"] and d["lo"] <= 0.0 and d["hi"] > 0.1  # one seed gained
        assert width(d) > 3 * width(one["tasks"][t]["d_greedy"]) > 0
        lo, hi = agree["tasks"][t]["alpha_bounds"]
        assert lo < hi and abs(hi - lo - 0.01) < 1e-9
        assert abs(agree["tasks"][t]["resid"] - 0.02) < 1e-12
        sp = agree["tasks"][t]["speedup"]
        assert sp["lo"] <= sp["value"] <= sp["hi"]
    for key in ("greedy_spread", "speedup_spread"):
        assert {"max_min", "range", "d_max_min", "d_range"} <= set(agree[key])
    assert "ce_spread_topk" in agree and "U" not in agree


def test_a_training_text_that_contains_a_test_prompt_or_answer_is_caught():
    """The text check sees what training actually trains on (the cut prompt and the reference
    or generated continuation) and what the test scores (the target's answers): a planted
    continuation that quotes a test answer mid-sentence, a reference equal to a test prompt's
    paragraph, are caught; an instruction many texts repeat, a stock opening of many test
    answers, a short common answer, a number inside a longer number are not."""
    from specfair.study.data import Seq, training_text_leaks

    enc = lambda text: tuple(ord(c) for c in text)  # noqa: E731
    decode = lambda ids: "".join(map(chr, ids))  # noqa: E731
    prompt = "Translate into French.\n\nThe weather in spring is mild and the days grow long 1"
    test_prompts = [Prompt("t-1", "translation_en_fr", (prompt,)),
                    Prompt("t-2", "chat", ("Which fruit is the sweetest one of all?",),
                           reference="Mangoes are the sweetest fruit of all in my view.")]
    answer = "Le temps au printemps est doux et les jours rallongent."
    test = [Seq("t-1", "translation_en_fr", enc(prompt + answer), len(prompt), "target"),
            Seq("t-2", "chat", enc("Which fruit?" + "Yes"), 12, "target")]

    def seq(i, task, p, r):
        return Seq(f"s-{i}", task, enc(p + r), len(p), "drafter")

    train = [seq(0, "chat", "Say something.", f"Well, {answer.lower()} So it goes."),  # planted
             seq(1, "chat", "Write about seasons.\n\n",
                 "The weather in spring is mild and the days grow long 1"),  # a test paragraph
             seq(2, "chat", "Anything?", "Mangoes are the sweetest fruit of all in my view"),
             seq(3, "chat", "Count.", "The weather in spring is mild and the days grow long 12"),
             seq(4, "chat", "Short.", "Yes")]
    train += [seq(10 + i, "translation_en_fr", f"Translate into French.\n\nSentence {i}.", "Ok")
              for i in range(6)]  # the shared instruction is a template
    stock = "To solve this problem we need to follow these steps."
    for i in range(5):  # a stock paragraph of many test answers and of one training text
        test_prompts.append(Prompt(f"m-{i}", "math", (f"Problem {i}?",)))
        test.append(Seq(f"m-{i}", "math", enc(f"Problem {i}?" + stock + f"\n\nIt is {i}."),
                        len(f"Problem {i}?"), "target"))
    train.append(seq(20, "math", "A problem?", stock + "\n\nFirst, add."))
    leaks = training_text_leaks(train, test, test_prompts, decode)
    assert {d["id"]: d["test_id"] for d in leaks} == {"s-0": "t-1", "s-1": "t-1", "s-2": "t-2"}
    assert all(len(d["sha256"]) == 64 for d in leaks)
    assert training_text_leaks(train[3:], test, test_prompts, decode) == []


def test_data_dose_subsets_are_nested_per_task():
    from specfair.study.arms import dose_subset
    from specfair.study.data import Seq

    seqs = [Seq(f"{t}-{i}", t, (1, 2, 3), 1, "reference") for i in range(10) for t in "ab"]
    seqs += [Seq(f"c-{i}", "c", (1, 2), 1, "reference") for i in range(3)]
    subs = {f: dose_subset(seqs, ["a", "b", "c"], f) for f in (0.25, 0.5, 1.0)}
    count = lambda sub, t: sum(s.task == t for s in sub)  # noqa: E731
    assert [count(subs[f], "a") for f in subs] == [3, 5, 10]
    assert [count(subs[f], "c") for f in subs] == [1, 2, 3]
    assert subs[1.0] == [s for t in "abc" for s in seqs if s.task == t]
    for small, big in ((0.25, 0.5), (0.5, 1.0)):
        assert set(subs[small]) < set(subs[big])
        for t in "abc":  # the first prompts of each task, in the train order
            mine = [s for s in seqs if s.task == t]
            assert [s for s in subs[small] if s.task == t] == mine[: count(subs[small], t)]


def test_dose_response_projects_on_greedy_alpha_not_the_upper_bound():
    """The projection is of the primary metric: a worst task whose greedy alpha rises toward the
    mean is projected even when its sampled alpha (upper bound) is flat, and not the reverse."""
    def row(tokens, greedy_a, alpha_a):
        return {"tokens": tokens,
                "tasks": {"a": {"greedy": greedy_a, "alpha": alpha_a},
                          "b": {"greedy": 0.9, "alpha": 0.9}},
                "mean_greedy": {"value": (greedy_a + 0.9) / 2},
                "mean_alpha": {"value": (alpha_a + 0.9) / 2},
                "ce_spread_topk": {"value": 0.1}}

    base = row(0, 0.6, 0.6) | {"base_worst_greedy_task": "a", "base_worst_task": "a"}
    rising = dose_response([row(10_000, 0.62, 0.6), row(20_000, 0.64, 0.6)], base, ["a", "b"])
    assert rising["worst_task"] == "a"
    assert rising["greedy_per_10k"]["a"] == pytest.approx(0.02)
    assert rising["alpha_per_10k"]["a"] == pytest.approx(0.0, abs=1e-12)
    # gap 0.15 (base mean 0.75 - 0.6), closing 0.02 - 0.01 per 10k -> 150k tokens: beyond 2x 20k
    assert rising["projection_beyond_limit"]
    assert rising["projected_tokens_worst_reaches_mean"] is None
    flat = dose_response([row(10_000, 0.6, 0.62), row(20_000, 0.6, 0.64)], base, ["a", "b"])
    assert flat["projected_tokens_worst_reaches_mean"] is None
    assert not flat["projection_beyond_limit"]  # never: greedy alpha does not rise
    near = dose_response([row(10_000, 0.7, 0.6), row(20_000, 0.8, 0.6)], base, ["a", "b"])
    assert near["projected_tokens_worst_reaches_mean"] == pytest.approx(30_000)
    assert near["projection_slopes"]["source"].startswith("budget rows")
    # given the greedy curve (the slopes the report shows with CIs), the projection reads it,
    # not the budget rows: here a curve whose worst task gains 0.06/10k on a flat mean
    def ci(v):
        return {"value": v, "lo": v, "hi": v}

    curve_ = {"per": 1e4, "tasks": {"a": {"slope": ci(0.06)}, "b": {"slope": ci(0.0)}},
              "mean": {"slope": ci(0.0)}}
    by_curve = dose_response([row(10_000, 0.7, 0.6), row(20_000, 0.8, 0.6)], base, ["a", "b"],
                             curve_)
    assert by_curve["projection_slopes"]["worst"] == pytest.approx(0.06)
    assert by_curve["projected_tokens_worst_reaches_mean"] == pytest.approx(25_000)
    assert by_curve["greedy_per_10k"]["a"] == pytest.approx(0.1)  # the rows' slopes still shown

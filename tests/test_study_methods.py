"""The method comparison (specfair.study.methods): paired at equal tokens on the compared tasks,
the choice by held-out greedy alpha beyond its CI, and arms that train with the chosen method."""

from __future__ import annotations

import json

import pytest
from study_data import write_study_sources
from tiny import make_tiny_model, make_tokenizer

from specfair.study import methods
from specfair.study.config import StudyConfig
from specfair.study.methods import Method, _choose
from specfair.study.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_the_comparison_is_paired_and_the_arms_train_with_the_chosen_method(
        long_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    target, _ = long_pair
    drafter = make_tiny_model(tmp_path / "drafter2", 272, seed=1, layers=2,
                              tok=make_tokenizer(), context=4096)
    cfg = StudyConfig(
        target=str(target), drafter=str(drafter), tasks=["chat", "code", "translation_zh_en"],
        n_train=4, n_test=3, n_heldout=2, max_prompt_tokens=24, train_response_tokens=6,
        test_response_tokens=6, topk=8, top_layers=1, batch_size=2, epochs=1.0,
        budgets=[1.0], arms=["uniform"], lr=1e-3, overfit_epochs=2.0, bootstrap=50, n_bench=0,
        gamma=3, method_layers=[1, 2], method_lrs=[1e-2], method_texts=["target"],
        method_budget=0.5)
    forced = Method(2, 1e-2, "reference+drafter")
    # the tiny models' alphas are noise: force the choice, then check the arms follow it
    monkeypatch.setattr(methods, "_choose", lambda recs, ms, tasks, conf, c: (forced, "forced"))
    out = tmp_path / "run"
    summary = json.loads(run_study(cfg, out).read_text())
    res = json.loads((out / "methods.json").read_text())
    names = [m["name"] for m in res["methods"]]
    # layers x lrs on the configured text, then the other text at the best of them
    assert sorted(names) == sorted(["top1-lr0.001-reference+drafter",
                                    "top1-lr0.01-reference+drafter",
                                    "top2-lr0.001-reference+drafter",
                                    "top2-lr0.01-reference+drafter", "top2-lr0.01-target"])
    assert res["configured"] == "top1-lr0.001-reference+drafter"
    assert res["chosen"] == forced.name and len(res["tasks"]) == 2
    assert (out / "train_target_text.jsonl").is_file()  # the target's answers, for that text
    recs = _lines(out / "methods" / "eval.jsonl")
    for split in ("heldout", "test"):
        base = sorted(r["id"] for r in recs if r["method"] == "base" and r["split"] == split)
        assert len(base) == (2 if split == "heldout" else 3) * 2
        for name in names:  # paired: every method on the same prompts
            assert sorted(r["id"] for r in recs
                          if r["method"] == name and r["split"] == split) == base
    for t in _lines(out / "methods" / "train.jsonl"):  # equal tokens (a batch over at most)
        assert res["tokens_per_task"] <= t["tokens"] and t["seconds"] > 0
    for m in res["methods"]:
        for row in m["tasks"].values():
            for split in ("heldout", "test"):
                d = row[f"d_{split}_vs_base"]
                assert 0 <= row[split] <= 1 and d["lo"] <= d["value"] <= d["hi"]
    # the arms trained with the chosen method: two layers, its lr; the run keeps its config
    from safetensors.torch import load_file
    keys = load_file(str(out / "arms" / "uniform" / "checkpoint" / "top.st"))
    assert any(k.startswith("layers.1.") for k in keys)
    assert summary["config"]["top_layers"] == 2 and summary["config"]["lr"] == 1e-2
    assert json.loads((out / "study_config.json").read_text())["top_layers"] == 1
    over = json.loads((out / "overfit.json").read_text())
    st = over["at_study_settings"]
    assert st["lr"] == 1e-2 and 0 <= st["test_greedy_after"] <= 1 and over["n_test"] == 3
    report = (out / "report.md").read_text()
    assert "Method comparison" in report and forced.name in report
    # resumed: nothing compared or trained again, the arms still with the chosen method
    n = len(recs)
    run_study(cfg, out)
    assert len(_lines(out / "methods" / "eval.jsonl")) == n


def _recs(gain: float, noise: list[float]) -> list[dict]:
    out = []
    for task in ("a", "b"):
        for i, e in enumerate(noise):
            out.append({"method": "top4-lr2e-05-x", "task": task, "split": "heldout",
                        "id": f"{task}{i}", "greedy": 0.5})
            out.append({"method": "top8-lr2e-05-x", "task": task, "split": "heldout",
                        "id": f"{task}{i}", "greedy": 0.5 + gain + e})
    return out


def test_a_method_is_chosen_only_beyond_its_ci_over_the_configured_one():
    conf, other = Method(4, 2e-5, "x"), Method(8, 2e-5, "x")
    cfg = StudyConfig(bootstrap=500)
    noise = [0.1, -0.1, 0.05, -0.05, 0.08, -0.08, 0.02, -0.02]
    chosen, why = _choose(_recs(0.1, noise), [conf, other], ["a", "b"], conf, cfg)
    assert chosen == other and "+0.100" in why
    chosen, why = _choose(_recs(0.01, noise), [conf, other], ["a", "b"], conf, cfg)
    assert chosen == conf and "not beyond its CI" in why
    chosen, _ = _choose(_recs(-0.1, noise), [conf, other], ["a", "b"], conf, cfg)
    assert chosen == conf


def test_method_settings_are_checked(tmp_path):
    from specfair.errors import SpecfairError

    with pytest.raises(SpecfairError, match="method_texts"):
        StudyConfig.from_dict({"method_texts": ["mine"]})
    with pytest.raises(SpecfairError, match="method_budget"):
        StudyConfig.from_dict({"method_budget": 2.0})
    cfg = StudyConfig(tasks=["chat"], method_tasks=["code"])
    with pytest.raises(SpecfairError, match="method_tasks"):
        cfg.check_tasks(["chat", "code"])

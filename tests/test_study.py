"""The dose-response study end to end on a tiny pair and small data files: every stage runs,
the records are complete and paired, a rerun resumes without redoing anything, and another
config in the same directory is refused."""

from __future__ import annotations

import json

import pytest
from study_data import write_study_sources

from specfair.errors import SpecfairError
from specfair.study.config import StudyConfig
from specfair.study.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(tiny_pair, **kw) -> StudyConfig:
    target, drafter = tiny_pair
    base = dict(target=str(target), drafter=str(drafter), n_train=4, n_test=3, n_heldout=2,
                max_prompt_tokens=24, train_response_tokens=6, test_response_tokens=6, topk=8,
                top_layers=1, batch_size=2, epochs=1.0, budgets=[0.5, 1.0], lr=1e-3,
                overfit_epochs=2.0, bootstrap=50)
    return StudyConfig(**(base | kw))


def test_the_study_runs_resumes_and_refuses_other_settings(tiny_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = _cfg(tiny_pair, seeds=[0, 1], prompt_fractions=[0.5, 1.0])
    out = tmp_path / "run"
    summary = json.loads(run_study(cfg, out).read_text())
    recs = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    base_ids = {r["id"] for r in recs if r["arm"] == "base"}
    assert len(base_ids) == 3 * len(cfg.tasks)
    for arm in cfg.arms:
        for b in cfg.budgets:
            for seed in (0, 1):
                ids = [r["id"] for r in recs
                       if r["arm"] == arm and r["budget"] == b and r["seed"] == seed]
                # paired, complete, no duplicate; the second seed at the largest budget only
                assert sorted(ids) == (sorted(base_ids) if seed == 0 or b == 1.0 else []), \
                    (arm, b, seed)
    assert (out / "arms" / "seed1" / "uniform" / "checkpoint").is_dir()
    # sampled alpha between its bounds, the residual mass a probability, greedy alpha exact
    for r in recs:
        assert 0.0 <= r["alpha_lo"] <= r["alpha"] <= r["alpha_lo"] + r["resid"] + 1e-6 <= 2
        assert 0.0 <= r["resid"] <= 1.0 and 0.0 <= r["greedy"] <= 1.0
        assert abs(r["greedy"] - sum(r["match"]) / len(r["match"])) < 1e-6
        # exact over the full vocabulary (the target's stored final states and head)
        assert r["alpha_lo"] - 2e-3 <= r["alpha_full"] <= r["alpha"] + 2e-3
        assert r["ce_full"] >= r["ce"] - 2e-3
    # the data dose: nested prompt subsets at fixed epochs, the same test prompts
    half = [r for r in recs if r["arm"] == "uniform@0.5"]
    assert sorted(r["id"] for r in half) == sorted(base_ids)
    assert all(r["dose_prompts"] == 2 and r["dose_supervised_tokens"] > 0 for r in half)
    full = [r for r in recs if r["arm"] == "uniform@1"]
    assert {r["dose_prompts"] for r in full} == {4}
    same = {r["id"]: r["greedy"] for r in recs if r["arm"] == "uniform" and r["budget"] == 1.0
            and r["seed"] == 0}
    assert all(same[r["id"]] == r["greedy"] for r in full)  # fraction 1.0 is budget 1.0
    trained = json.loads((out / "arms" / "dose" / "uniform@0.5" / "prompts.json").read_text())
    assert len(trained) == 2 * len(cfg.tasks) and not set(trained) & base_ids
    dose = summary["data_dose"]
    assert dose["fractions"] == [0.5, 1.0]
    for t in cfg.tasks:
        assert dose["prompts"][t] == [0, 2, 4]
        for key in ("vs_prompts", "vs_supervised_tokens"):
            sl = dose[key]["tasks"][t]["slope"]
            assert sl["lo"] <= sl["value"] <= sl["hi"]
    largest = summary["arms"]["uniform"]["budgets"][-1]
    assert largest["seeds"] == [0, 1] and summary["bootstrap"]["seeds"] == [0, 1]
    for t in cfg.tasks:
        row = largest["tasks"][t]
        for key in ("d_greedy", "d_speedup", "d_alpha"):
            assert row[key]["lo"] <= row[key]["value"] <= row[key]["hi"]
        assert row["alpha_bounds"][0] <= row["alpha_bounds"][1]
        assert row["d_alpha_exact"]["lo"] <= row["d_alpha_exact"]["value"] <= \
            row["d_alpha_exact"]["hi"]
    assert set(largest["alpha_exact_spread"]) == {"max_min", "range", "d_max_min", "d_range"}
    u = largest["U_sandler_change"]
    assert largest["U_sandler"]["value"] >= 0 and u["lo"] <= u["value"] <= u["hi"]
    leak = json.loads((out / "leakage.json").read_text())
    assert leak["training_texts"]["n_checked"] == 4 * len(cfg.tasks)
    assert set(summary["arms"]) == set(cfg.arms)
    # the held-out prompts' passes, for every arm and budget, on which gamma is chosen
    held = [json.loads(x) for x in (out / "policy_eval.jsonl").read_text().splitlines()]
    held_ids = {r["id"] for r in held if r["arm"] == "base"}
    assert len(held_ids) == 2 * len(cfg.tasks) and not held_ids & base_ids
    for arm in cfg.arms:
        for b in cfg.budgets:
            ids = [r["id"] for r in held if r["arm"] == arm and r["budget"] == b]
            assert sorted(ids) == sorted(held_ids), (arm, b)
    # split groups recorded: one MGSM problem is tested in mgsm_zh, mgsm_ja and en->fr
    assert all(r["group"] for r in recs)
    assert summary["bootstrap"]["grouped"] and summary["bootstrap"]["shared_groups"] >= 3
    assert summary["leakage"]["n_dropped"] == 0 and (out / "leakage.json").is_file()
    assert "one gamma (chosen on held-out)" in summary["base"]["policies"]
    assert largest["tokens"] >= int(cfg.epochs * 0.9 * largest["tokens"])
    assert set(largest["policies"]) and largest["d_base_worst_alpha"]["lo"] <= \
        largest["d_base_worst_alpha"]["value"] <= largest["d_base_worst_alpha"]["hi"]
    assert summary["overfit"]["greedy_after"] >= 0.0
    report = (out / "report.md").read_text()
    assert "## Answer" in report and "dose_response.png" in report
    assert "Leak check: 0 train-split prompt(s) dropped" in report
    assert "in-sample oracle" in report and "out of sample" in report
    assert "## Primary: greedy alpha and predicted speed-up per task" in report
    assert "Dose in data" in report and "CE spread (top-k)" in report
    assert "U (Sandler et al., full-vocabulary CE variance across tasks)" in report
    assert "- data dose (uniform, fixed epochs): the base-worst task by greedy alpha" in report
    assert (out / "dose_response.png").stat().st_size > 1000
    assert (out / "data_dose.png").stat().st_size > 1000 and "data_dose.png" in report
    # a rerun redoes nothing
    before = (out / "eval.jsonl").read_text()
    run_study(cfg, out)
    assert (out / "eval.jsonl").read_text() == before
    with pytest.raises(SpecfairError, match="other settings.*lr"):
        run_study(_cfg(tiny_pair, lr=5e-4), out)
    # resume: a finished (arm, budget, seed) is never retrained; records lost from eval.jsonl
    # after training (a crash before they joined) come back from the arm's own file
    logs = {p: p.read_text() for p in (out / "arms").rglob("train_log.jsonl")}
    lines = (out / "eval.jsonl").read_text().splitlines()
    (out / "eval.jsonl").write_text("".join(
        x + "\n" for x in lines if not (json.loads(x).get("seed") == 1
                                        and json.loads(x)["arm"] == "uniform")))
    run_study(cfg, out)
    assert sorted((out / "eval.jsonl").read_text().splitlines()) == sorted(lines)
    # more seeds (the same first one) train only the new seed; another first seed is refused
    more = _cfg(tiny_pair, seeds=[0, 1, 2], prompt_fractions=[0.5, 1.0])
    summary = json.loads(run_study(more, out).read_text())
    assert {p: p.read_text() for p in logs} == logs
    assert summary["arms"]["uniform"]["budgets"][-1]["seeds"] == [0, 1, 2]
    with pytest.raises(SpecfairError, match="other settings.*seeds"):
        run_study(_cfg(tiny_pair, seeds=[1, 2], prompt_fractions=[0.5, 1.0]), out)
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))


def test_study_without_data_is_one_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from specfair import cli

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("sys.argv", ["specfair", "experiment", "study", "--run-dir",
                                     str(tmp_path / "run")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "specfair data fetch" in err[0]
    assert not (tmp_path / "run").exists()


def test_unknown_study_key_suggests_the_closest(tmp_path):
    bad = tmp_path / "s.toml"
    bad.write_text('kind = "study"\nepoch = 2.0\n')
    with pytest.raises(SpecfairError, match="unknown key 'epoch'.*'epochs'"):
        StudyConfig.load(bad)


def test_budgets_closer_than_a_batch_are_refused_and_a_corrected_config_runs_on(
        tiny_pair, tmp_path, monkeypatch):
    """How many tokens a batch holds is known once the training text exists: the refusal
    comes before any training, and the corrected budgets run on in the same directory (the
    cached sequences are reused; nothing is deleted by hand)."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    out = tmp_path / "run"
    with pytest.raises(SpecfairError, match=r"budgets = \[0.01, 1.0\] in the top level must be "
                                            r"fractions at least [0-9.]+ apart and from 0"):
        run_study(_cfg(tiny_pair, budgets=[0.01, 1.0]), out)
    assert not any((out / n).exists() for n in ("eval.jsonl", "overfit.json", "arms"))
    with pytest.raises(SpecfairError, match="other settings.*test_response_tokens"):
        run_study(_cfg(tiny_pair, test_response_tokens=5), out)  # the cached data differ
    summary = json.loads(run_study(_cfg(tiny_pair, budgets=[1.0, 0.5]), out).read_text())
    assert [b["budget"] for b in summary["arms"]["uniform"]["budgets"]] == [0.5, 1.0]


def test_a_training_text_planted_with_a_test_prompt_is_dropped_and_a_trained_run_refused(
        tiny_pair, tmp_path, monkeypatch):
    """The text check runs on the decoded training sequences: one planted with a test prompt's
    text (as a continuation quoting it would be) is dropped before anything trains, and the run
    resumes; a trained run in which a leak appears only later (it trained on that text) is
    refused as contaminated."""
    import specfair.study.run as study_run

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    real = study_run.training_text_leaks
    planted: dict[str, str] = {}

    def plant(train, test, prompts, decode):
        quote = next(t for p in prompts for t in p.turns if len(t) >= 40)
        victim = train[0]
        planted["id"] = victim.id
        return real(train, test, prompts, lambda ids: decode(ids) + (
            f" so, {quote} ok" if ids is victim.ids else ""))  # this sequence alone

    cfg = _cfg(tiny_pair, arms=["uniform"], budgets=[1.0], tasks=["chat", "code", "mgsm_zh"],
               batch_size=1)
    out = tmp_path / "run"
    monkeypatch.setattr(study_run, "training_text_leaks", plant)
    run_study(cfg, out)
    leak = json.loads((out / "leakage.json").read_text())["training_texts"]
    assert [d["id"] for d in leak["dropped"]] == [planted["id"]]
    assert leak["n_dropped"] == 1 and leak["n_checked"] == 4 * len(cfg.tasks)
    assert len(leak["dropped"][0]["sha256"]) == 64
    run_study(cfg, out)  # dropped before it trained: the run resumes
    monkeypatch.setattr(study_run, "training_text_leaks", real)
    out2 = tmp_path / "run2"
    run_study(cfg, out2)  # trained with that text in
    # the dropped sequence was not trained on: fewer training tokens than with it
    def tokens(run_dir):
        s = json.loads((run_dir / "summary.json").read_text())
        return s["arms"]["uniform"]["budgets"][-1]["tokens"]

    assert tokens(out) < tokens(out2)
    monkeypatch.setattr(study_run, "training_text_leaks", plant)
    with pytest.raises(SpecfairError, match="contaminated"):
        run_study(cfg, out2)

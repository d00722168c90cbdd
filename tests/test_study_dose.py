"""The data dose in supervised tokens (issue 29): which training prompts each dose point takes
(a prefix of the next, the achieved counts recorded, the other tasks whole), the arms trained
on the largest dose, resume, and the power block of the summary; per-task test and timed
counts. Unit tests on sequences, then one tiny experiment end to end."""

from __future__ import annotations

import json

import pytest
from study_data import write_study_sources

from specfair.errors import SpecfairError
from specfair.study.config import StudyConfig
from specfair.study.data import Seq
from specfair.study.dose import (
    arms_train,
    counts,
    dose_fields,
    dose_name,
    first_reaching,
    point_name,
    subset,
    token_subset,
)


def _seqs() -> list[Seq]:
    # task a: responses of 3 tokens (prompts of 2); task b: 5 (prompts of 1); task c: 1 each
    out = [Seq(f"a-{i}", "a", tuple(range(5)), 2, "reference") for i in range(10)]
    out += [Seq(f"b-{i}", "b", tuple(range(6)), 1, "drafter") for i in range(4)]
    return out + [Seq(f"c-{i}", "c", (1, 2), 1, "reference") for i in range(6)]


def _cfg(**kw) -> StudyConfig:
    return StudyConfig(tasks=["a", "b", "c"], **kw)


def test_first_reaching_is_the_shortest_prefix_that_reaches_the_dose():
    seqs = [s for s in _seqs() if s.task == "a"]
    assert first_reaching(seqs, 1) == seqs[:1]
    assert first_reaching(seqs, 3) == seqs[:1] and first_reaching(seqs, 4) == seqs[:2]
    assert first_reaching(seqs, 30) == seqs and first_reaching(seqs, 999) == seqs  # all it has


def test_token_doses_are_nested_prefixes_with_the_other_tasks_whole():
    cfg = _cfg(dose_tokens=[4, 9, 17, 1000], dose_tasks=["a", "b"])
    seqs = _seqs()
    subs = {n: token_subset(seqs, cfg, n) for n in cfg.dose_tokens}
    by = lambda sub, t: [s for s in sub if s.task == t]  # noqa: E731
    for small, big in zip(cfg.dose_tokens, cfg.dose_tokens[1:], strict=False):
        for t in "ab":  # a smaller dose is a prefix of a larger one, task by task
            assert by(subs[big], t)[: len(by(subs[small], t))] == by(subs[small], t)
    # the order is a seeded hash of the ids (not the file's), the same on every call
    assert [s.id for s in by(subs[1000], "a")] != [f"a-{i}" for i in range(10)]
    assert token_subset(seqs, cfg, 9) == subs[9]
    assert by(token_subset(seqs, StudyConfig(tasks=["a", "b", "c"], seed=1,
                                             dose_tokens=[9]), 9), "a") != by(subs[9], "a")
    c = {n: counts(sub, cfg.tasks) for n, sub in subs.items()}
    assert [c[n]["a"]["supervised_tokens"] for n in cfg.dose_tokens] == [6, 9, 18, 30]
    assert [c[n]["b"]["supervised_tokens"] for n in cfg.dose_tokens] == [5, 10, 20, 20]
    assert c[4]["a"] == {"prompts": 2, "supervised_tokens": 6, "prompt_tokens": 4}
    assert all(c[n]["c"]["prompts"] == 6 for n in cfg.dose_tokens)  # not a dose task: whole
    # the fields every record of a point carries: the achieved counts beside the target
    f = dose_fields(subs[1000], cfg, 1000)
    assert f["a"] == {"dose_prompts": 10, "dose_supervised_tokens": 30, "dose_prompt_tokens": 20,
                      "dose_tokens": 1000, "dose_reached": False}
    assert dose_fields(subs[9], cfg, 9)["b"]["dose_reached"] is True
    assert f["c"]["dose_tokens"] is None and f["c"]["dose_reached"] is None
    # the arms train on the largest dose; with prompt fractions, on everything
    assert arms_train(seqs, cfg) == subs[1000]
    assert arms_train(seqs, _cfg(prompt_fractions=[0.5, 1.0])) == seqs
    assert subset(seqs, cfg, 9) == subs[9]


def test_prompt_fractions_keep_their_subsets_and_names():
    seqs = _seqs()
    cfg = _cfg(prompt_fractions=[0.25, 1.0])
    sub = subset(seqs, cfg, 0.25)
    assert [sum(s.task == t for s in sub) for t in "abc"] == [3, 1, 2]
    assert [s.id for s in sub if s.task == "a"] == ["a-0", "a-1", "a-2"]  # their order
    assert dose_fields(sub, cfg, 0.25)["a"] == {"dose_prompts": 3, "dose_supervised_tokens": 9,
                                                "dose_prompt_tokens": 6,
                                                "prompt_fraction": 0.25}
    only_a = subset(seqs, _cfg(prompt_fractions=[0.25], dose_tasks=["a"]), 0.25)
    assert [sum(s.task == t for s in only_a) for t in "abc"] == [3, 4, 6]
    assert point_name(cfg, 1) == dose_name("uniform", 1.0) == "uniform@1"
    assert point_name(_cfg(dose_tokens=[1500]), 1500) == "uniform@1500tok"


def test_per_task_counts_pick_what_the_one_count_would():
    from specfair.study.data import sample_each
    from specfair.tasks.prompt import Prompt
    from specfair.tasks.suite import sample_per_task

    ps = [Prompt(f"{t}-{i}", t, (f"text {t} {i}",)) for i in range(20) for t in "xy"]
    assert sample_each(ps, {"x": 5, "y": 5}, 3) == sample_per_task(ps, 5, 3)
    mixed = sample_each(ps, {"x": 2, "y": 7}, 3)
    assert [p for p in mixed if p.task == "x"] == [p for p in sample_per_task(ps, 2, 3)
                                                    if p.task == "x"]
    assert sum(p.task == "y" for p in mixed) == 7


# ----------------------------------------------------------------- one tiny experiment

TASKS = ["chat", "code", "translation_zh_en"]


def _study(long_pair, **kw) -> StudyConfig:
    target, drafter = long_pair
    base = dict(target=str(target), drafter=str(drafter), tasks=TASKS, n_train=6, n_test=3,
                n_heldout=2, max_prompt_tokens=24, train_response_tokens=6,
                test_response_tokens=6, topk=8, top_layers=1, batch_size=2, epochs=2.0,
                budgets=[0.5, 1.0], lr=1e-3, overfit_epochs=2.0, bootstrap=50, n_bench=1,
                n_bench_per_task={"code": 2}, n_test_per_task={"code": 4}, gamma=3,
                arms=["uniform"], seeds=[0, 1], dose_tokens=[5, 12, 200],
                dose_tasks=["code", "translation_zh_en"])
    return StudyConfig(**(base | kw))


def _recs(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.usefixtures("one_thread")
def test_a_dose_in_supervised_tokens_runs_records_its_counts_and_resumes(long_pair, tmp_path,
                                                                        monkeypatch):
    from specfair.study.run import run_study

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = _study(long_pair, dose_tokens=[5, 200])
    out = tmp_path / "run"
    run_study(cfg, out)
    # a point added below the same largest one: only it is trained
    before = _recs(out / "eval.jsonl")
    cfg = _study(long_pair)
    summary = json.loads(run_study(cfg, out).read_text())
    recs = _recs(out / "eval.jsonl")
    assert recs[: len(before)] == before
    assert {r["arm"] for r in recs[len(before):]} == {"uniform@12tok"}
    base_ids = {r["id"] for r in recs if r["arm"] == "base"}
    assert sum(r["task"] == "code" for r in recs if r["arm"] == "base") == 4  # n_test_per_task
    train = json.loads((out / "train_data.json").read_text())
    prompts = {n: json.loads((out / "arms/dose" / f"uniform@{n}tok/prompts.json").read_text())
               for n in (5, 12)}
    for n in cfg.dose_tokens:
        point = [r for r in recs if r["arm"] == f"uniform@{n}tok"]
        assert {r["id"] for r in point if r["seed"] == 0} == base_ids  # paired, complete
        for t in TASKS:
            f = {(r["dose_prompts"], r["dose_supervised_tokens"], r["dose_prompt_tokens"],
                  r["dose_tokens"], r["dose_reached"]) for r in point if r["task"] == t}
            assert len(f) == 1, (n, t)
            k, sup, pro, target, reached = f.pop()
            if t == "chat":  # not a dose task: all of its prompts at every point
                assert (k, sup, target, reached) == (train[t]["prompts"],
                                                     train[t]["supervised_tokens"], None, None)
            else:
                assert target == n and reached == (sup >= n) and pro > 0
                assert sup <= train[t]["supervised_tokens"] and (n == 200 or reached)
    # a smaller dose's prompts are in the larger one's, in the same order (task by task)
    assert [i for i in prompts[12] if i in set(prompts[5])] == prompts[5]
    assert len(prompts[5]) < len(prompts[12])
    # the largest dose is what the arms trained on: the arm's records, both seeds
    largest = [r for r in recs if r["arm"] == "uniform@200tok"]
    arm = {(r["seed"], r["id"]): r["greedy"] for r in recs
           if r["arm"] == "uniform" and r["budget"] == 1.0}
    assert {(r["seed"], r["id"]): r["greedy"] for r in largest} == arm and len(arm) == 2 * len(
        base_ids)
    assert not (out / "arms/dose/uniform@200tok").exists()
    # training tokens seen, split: supervised (response) + prompt positions
    for r in recs:
        if r["arm"] != "base":
            assert r["supervised_tokens"] + r["prompt_tokens"] == r["tokens"] > 0
            assert 0 < r["supervised_tokens"] < r["tokens"]
    # the summary: counts per point, the log-x curve and the last segment, the seeds at the
    # largest dose, the power block
    d = summary["data_dose"]
    assert d["unit"] == "supervised_tokens" and d["dose_tokens"] == [5, 12, 200]
    assert d["dose_tasks"] == ["code", "translation_zh_en"] and d["fractions"] is None
    for t in TASKS:
        assert len(d["supervised_tokens"][t]) == len(d["prompt_tokens"][t]) == 4
        assert d["supervised_tokens"][t][0] == d["prompt_tokens"][t][0] == 0
    assert set(d["vs_log2_supervised_tokens"]["tasks"]) == {"code", "translation_zh_en"}
    assert set(d["last_segment"]["tasks"]) <= {"code", "translation_zh_en"}
    assert d["points"][-1]["seeds"] == [0, 1] and d["points"][0]["seeds"] == [0]
    assert summary["train_data"] == train
    p = summary["power"]
    assert p["z"] == pytest.approx(2.8016, abs=1e-4) and p["targets"]["alpha"] == 0.02
    for t in TASKS:
        plan = p["alpha"]["planning"][t]
        assert plan["n"] == (4 if t == "code" else 3) and plan["sd"] is not None
        diff = p["alpha"]["arms"]["uniform"][t]
        assert diff["n"] == plan["n"] and diff["mde"] == pytest.approx(
            2.80158 * diff["sd"] / diff["n"] ** 0.5, rel=1e-4)
    assert set(p["alpha"]["arms"]) == {"uniform", "uniform@5tok", "uniform@12tok",
                                       "uniform@200tok"}
    sp = p["speedup"]
    assert sp["planning"]["code"]["n"] == 2 and sp["planning"]["chat"]["n"] == 1  # per task
    assert sp["arms"]["uniform"]["code"]["n"] == 2 and sp["arms"]["uniform"]["code"]["sd"] >= 0
    # what each drafter trained on: the sampler replayed against the real train logs, every
    # step's tasks as logged; the draws add up to the steps' batches
    rows = {r["arm"]: r for r in summary["training"]}
    assert set(rows) == {"uniform", "uniform@5tok", "uniform@12tok", "uniform@200tok"}
    for name, r in rows.items():
        assert r["draws_from"].startswith("replayed"), (name, r["draws_from"])
        log = _recs(out / "arms" / ("dose/" + name if name in ("uniform@5tok", "uniform@12tok")
                                    else "uniform") / "train_log.jsonl")
        steps = [x for x in log if x["tokens"] <= r["tokens"]]
        assert sum(v["draws"] for v in r["tasks"].values()) == len(steps) * cfg.batch_size
        for v in r["tasks"].values():
            assert v["epochs"] == pytest.approx(v["draws"] / v["prompts"])
        assert r["epochs"] == pytest.approx(r["tokens"] / sum(
            v["supervised_tokens"] + v["prompt_tokens"] for v in r["tasks"].values()))
    assert rows["uniform"]["tasks"]["chat"]["prompts"] == train["chat"]["prompts"]
    assert {t: v["supervised_tokens"] for t, v in rows["uniform@5tok"]["tasks"].items()} == {
        t: d["supervised_tokens"][t][1] for t in TASKS}
    # the verdicts and the power checks of the dose tasks
    assert set(d["verdicts"]["tasks"]) == {"code", "translation_zh_en"}
    assert all(v["verdict"] in ("rises", "saturates", "undecided")
               for v in d["verdicts"]["tasks"].values())
    assert p["checks"]["tasks"] == ["code", "translation_zh_en"]
    report = (out / "report.md").read_text()
    assert "supervised tokens" in report and "Smallest detectable" in report
    assert "In short: uniform fine-tuned at fixed epochs" in report
    # resume: a dose point stopped before its records joined eval.jsonl is redone, to the
    # same records (training is seeded), and nothing else is
    mid = [json.dumps(r, separators=(",", ":")) for r in recs if r["arm"] == "uniform@12tok"]
    (out / "eval.jsonl").write_text("".join(json.dumps(r, separators=(",", ":")) + "\n"
                                            for r in recs if r["arm"] != "uniform@12tok"))
    import shutil

    point_dir = out / "arms/dose/uniform@12tok"  # its checkpoint and own records gone too
    shutil.rmtree(point_dir / "checkpoint")
    for name in ("eval.jsonl", "policy_eval.jsonl", "train_log.jsonl"):
        (point_dir / name).unlink(missing_ok=True)
    run_study(cfg, out)
    again = {r["id"]: r for r in _recs(out / "eval.jsonl") if r["arm"] == "uniform@12tok"}
    assert {i: r["greedy"] for i, r in again.items()} == {
        json.loads(x)["id"]: json.loads(x)["greedy"] for x in mid}
    # another largest dose changes what the arms trained on: refused
    with pytest.raises(SpecfairError, match="other settings.*dose_tokens"):
        run_study(_study(long_pair, dose_tokens=[5, 12, 300]), out)
    with pytest.raises(SpecfairError, match="other settings.*dose_tasks"):
        run_study(_study(long_pair, dose_tasks=["code"]), out)


# ----------------------------------------------------------------- the packaged dose config


@pytest.mark.usefixtures("one_thread")
def test_a_dose_with_one_seed_and_nothing_timed_trains_and_reports_each_point(long_pair, tmp_path,
                                                                  monkeypatch):
    """The dose run's own order (a session that trains the doses before the further seeds and
    the timing): with one seed and no timed prompts the models the dose trains on are loaded
    again after the first report (seen on the real dose run: the drafter was None), and the
    summary and report are written again after each point."""
    from specfair.study.run import run_study

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    from specfair.study import run as run_module

    out, seen = tmp_path / "run", []
    reported = run_module.write_report
    monkeypatch.setattr(run_module, "write_report", lambda d: (seen.append(
        json.loads((out / "summary.json").read_text())["data_dose"]), reported(d))[1])
    run_study(_study(long_pair, seeds=[0], n_bench=0, n_bench_per_task={},
                     dose_tokens=[5, 12, 200]), out)
    arms = {r["arm"] for r in _recs(out / "eval.jsonl")}
    assert {"uniform", "uniform@5tok", "uniform@12tok", "uniform@200tok"} <= arms
    # the summary and report after each point trained (a run stopped there reports it)
    # the largest point (the arm itself, nothing trained) first: every summary holds its end
    assert [d and d["dose_tokens"] for d in seen] == [None, [200], [5, 200], *[[5, 12, 200]] * 2]


def test_the_packaged_dose_config_is_the_issues_design():
    """`specfair experiment dose`: the lagging translation tasks (sentences and paragraphs),
    >= 100 test prompts each, >= 5 log-spaced doses from ~1.5k to >= 45k supervised tokens, 3
    seeds and the overfit check at the largest (the arms train on it), 128-token answers, 30
    timed prompts on the two paragraph tasks, and an estimated wall time in its comments
    (<= 8 h, or said to be over it)."""
    import re
    from importlib import resources

    from specfair.tasks.study import STUDY_TASKS

    cfg = StudyConfig.load("dose")
    assert {t.name for t in STUDY_TASKS} >= set(cfg.tasks)
    lagging = {"translation_en_ja_para", "translation_en_zh_para", "translation_en_ja_sent",
               "translation_zh_en_sent", "translation_en_zh_sent"}
    assert lagging <= {t for t in cfg.tasks if cfg.doses_task(t)}
    assert all(cfg.per_task("n_test", t) >= 100 for t in lagging)
    d = cfg.dose_tokens
    assert len(d) >= 5 and d[0] <= 1500 and d[-1] >= 45000 and not cfg.prompt_fractions
    ratios = [b / a for a, b in zip(d, d[1:], strict=False)]
    assert all(1.5 <= r <= 3.5 for r in ratios)  # log-spaced
    assert len(cfg.seeds) >= 3 and cfg.dose_arm in cfg.arms and 1.0 in cfg.budgets
    # the four arms matched at the largest dose (item 4), 3 seeds for the one a claim rests on
    assert {"uniform", "per-task", "disparity", "monolingual"} <= set(cfg.arms)
    assert cfg.dose_arm in cfg.arms_seeded and cfg.arms_timed == [cfg.dose_arm]
    assert cfg.test_response_tokens >= 128 and cfg.train_response_tokens >= 128
    assert sorted(cfg.per_task("n_bench", t) for t in cfg.tasks)[-2:] == [30, 30]
    assert cfg.max_prompt_tokens >= 300  # the paragraph prompts whole (at most 299 tokens)
    text = (resources.files("specfair") / "configs" / "experiment_dose.toml").read_text()
    hours = float(re.search(r"total\s+~([0-9.]+) h", text).group(1))
    # the issue's 8 h: met, or the comment says by how much it is over and why (the timed
    # design the issue asks for takes ~3 h of this CPU; see the closing note of issue 29)
    assert hours <= 8.0 or "over the 8 h" in text


def test_check_validates_without_models_and_writes_nothing(cli, long_pair, tmp_path,
                                                           monkeypatch):
    """`specfair experiment CONFIG --check`: the plan printed from the config, the models'
    configs and the data (no weights, no run directory); too few test prompts in the data is
    the run's own error, before anything is written."""
    from test_bad_inputs import tree

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    monkeypatch.chdir(tmp_path)
    target, drafter = long_pair
    toml = (f'target = "{target}"\ndrafter = "{drafter}"\n'
            'tasks = ["translation_zh_en_sent", "translation_en_ja_sent"]\n'
            "n_train = 6\nn_test = 3\nn_heldout = 1\nmax_prompt_tokens = 24\n"
            "train_response_tokens = 6\ntest_response_tokens = 6\ntopk = 8\ntop_layers = 1\n"
            "budgets = [1.0]\narms = [\"uniform\"]\ndose_tokens = [5, 20]\n"
            "[n_bench_per_task]\ntranslation_en_ja_sent = 2\n")
    (tmp_path / "c.toml").write_text(toml)

    def no_load(*a, **k):
        raise AssertionError("--check loaded a model")

    monkeypatch.setattr("specfair.models.load.load_model", no_load)
    before = tree(tmp_path)
    code, out, err = cli("experiment", tmp_path / "c.toml", "--check")
    assert code == 0, err
    assert "translation_en_ja_sent: 6 / 1 / 3 / 2 (dose task)" in out
    assert "uniform@5tok, uniform@20tok" in out
    assert tree(tmp_path) == before  # nothing written
    (tmp_path / "c.toml").write_text(toml.replace("n_test = 3", "n_test = 500"))
    code, out, err = cli("experiment", tmp_path / "c.toml", "--check")
    assert code == 2 and "n_test = 500 in the top level must be at most" in err
    code, out, _ = cli("experiment", "--help")
    assert code == 0 and "dose" in out and "--check" in out

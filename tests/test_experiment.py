"""The whole experiment pipeline on tiny models: stages, caching, resume, --force, report."""

import json

import pytest

from specfair.errors import SpecfairError
from specfair.experiment import ExperimentConfig, run_experiment, stage_names

TASKS = {"alpha": "Say something about {}.", "beta": "Count the letters of {}."}


def write_suite(root):
    rows = []
    for task, template in TASKS.items():
        for i in range(12):
            rows.append({"task": task, "id": f"{task}-{i}", "prompt": template.format(f"w{i}x")})
    data = root / "prompts.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    suite = root / "suite.toml"
    suite.write_text(
        'name = "tiny"\ntest_fraction = 0.4\n[sources.tiny]\nformat = "jsonl"\n'
        'path = "prompts.jsonl"\n'
    )
    return suite


def write_config(root, tiny_pair, suite):
    target, drafter = tiny_pair
    cfg = root / "exp.toml"
    cfg.write_text(f"""
name = "tiny"
target = "{target}"
drafter = "{drafter}"
suite = "{suite}"
dtype = "float32"
gamma = 3
[bench]
n_per_task = 2
max_new_tokens = 6
[estimate]
n_per_task = 3
max_new_tokens = 6
[distill]
loss = "tvd"
steps = 2
batch_size = 2
lora_rank = 2
reestimate_every = 1
heldout_per_task = 1
max_prompts_per_task = 3
response_max_new_tokens = 6
checkpoint_every = 1
[variants.balanced]
weighting = "balanced"
[variants.per-task]
weighting = "per-task"
[variants.topn-per-task]
weighting = "per-task"
method = "topn"
top_layers = 1
topk = 8
[report]
bench_variants = ["balanced", "per-task", "topn-per-task"]
""")
    return cfg


def test_experiment_end_to_end_resume_and_force(tmp_path, tiny_pair):
    cfg = write_config(tmp_path, tiny_pair, write_suite(tmp_path))
    run = tmp_path / "run"
    run_experiment(str(cfg), run)
    for f in ["config.json", "environment.json", "report.html", "report.md",
              "baseline/bench.jsonl", "baseline/estimate_summary.json",
              "variants/balanced/bench_summary.json", "variants/per-task/estimate_summary.json",
              "variants/per-task/drafter/router.json", "variants/balanced/train_log.jsonl",
              "variants/topn-per-task/bench_summary.json", "data/signals/target-top8/meta.json"]:
        assert (run / f).exists(), f
    routed = json.loads((run / "variants/topn-per-task/drafter/router.json").read_text())
    assert routed["mode"] == "top-layers" and routed["top_layers"] == 1
    names = stage_names(ExperimentConfig.load(cfg))
    assert all((run / "stages" / f"{s}.json").is_file() for s in names)
    # Variants reuse the baseline's AR records and bench the same prompts.
    base = [json.loads(x) for x in (run / "baseline/bench.jsonl").read_text().splitlines()]
    var = [json.loads(x) for x in (run / "variants/balanced/bench.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["mode"]) for r in base) == sorted((r["id"], r["mode"]) for r in var)
    ar = {r["id"]: r["tokens"] for r in base if r["mode"] == "ar"}
    assert all(r["tokens"] == ar[r["id"]] for r in var if r["mode"] == "sd")  # lossless

    # A rerun does nothing; --force report redoes only the report.
    before = {p: p.stat().st_mtime_ns for p in (run / "stages").iterdir()}
    run_experiment(str(cfg), run)
    assert {p: p.stat().st_mtime_ns for p in (run / "stages").iterdir()} == before
    run_experiment(str(cfg), run, force=["eval-balanced"])
    after = {p.name: p.stat().st_mtime_ns for p in (run / "stages").iterdir()}
    changed = {p.name for p in before if before[p] != after[p.name]}
    assert changed == {"eval-balanced.json", "report.json"}


def test_killed_stage_resumes(tmp_path, tiny_pair, monkeypatch, capsys):
    import specfair.experiment.stages as exp

    cfg = write_config(tmp_path, tiny_pair, write_suite(tmp_path))
    run = tmp_path / "run"
    real = exp._stage_train

    def crash(run_, variant):
        raise KeyboardInterrupt

    monkeypatch.setattr(exp, "_stage_train", crash)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(str(cfg), run)
    done = {p.stem for p in (run / "stages").iterdir()}
    assert done == {"models", "baseline-bench", "baseline-estimate", "data"}
    smoke = json.loads((run / "stages" / "models.json").read_text())
    assert smoke["smoke_prompt"] and isinstance(smoke["smoke_answer"], str)
    n_bench = len((run / "baseline/bench.jsonl").read_text().splitlines())
    monkeypatch.setattr(exp, "_stage_train", real)
    capsys.readouterr()
    run_experiment(str(cfg), run)
    assert f"smoke answer of {tiny_pair[0]}" in capsys.readouterr().err  # ends with it
    assert len((run / "baseline/bench.jsonl").read_text().splitlines()) == n_bench
    assert (run / "report.html").is_file()


def test_config_errors(tmp_path, tiny_pair):
    with pytest.raises(SpecfairError, match="not found"):
        ExperimentConfig.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('nme = "x"\n[variants.a]\nweighting = "uniform"\n')
    with pytest.raises(SpecfairError, match="unknown key 'nme' in the top level; did you mean "
                                            "'name'"):
        ExperimentConfig.load(bad)
    bad.write_text('[variants.a]\nweighting = "fancy"\n')
    with pytest.raises(SpecfairError):
        ExperimentConfig.load(bad)
    cfg = write_config(tmp_path, tiny_pair, write_suite(tmp_path))
    run_dir = tmp_path / "r"
    with pytest.raises(SpecfairError, match="unknown stage"):
        run_experiment(str(cfg), run_dir, force=["nope"])
    assert not run_dir.exists()  # refused before anything was written
    (run_dir / "stages").mkdir(parents=True)
    (run_dir / "stages" / "models.json").write_text("{}")
    (run_dir / "config.json").write_text(json.dumps(ExperimentConfig.load(cfg).to_dict()))
    other = tmp_path / "other.toml"
    other.write_text(cfg.read_text().replace("gamma = 3", "gamma = 2"))
    with pytest.raises(SpecfairError, match="another configuration"):
        run_experiment(str(other), run_dir)


def test_packaged_configs_load():
    for name in ("default", "full"):
        cfg = ExperimentConfig.load(name)
        assert set(cfg.variants) == {"uniform", "balanced", "disparity", "per-task"}


@pytest.mark.parametrize("edit, message", [
    (("[bench]\nn_per_task = 2", "[bench]\nn_per_tsk = 2"),
     r"unknown key 'n_per_tsk' in \[bench\]; did you mean 'n_per_task'\?"),
    (("[estimate]\nn_per_task = 3", "[estimate]\nn_per_task = 3\nmax_new_token = 2"),
     r"unknown key 'max_new_token' in \[estimate\]; did you mean 'max_new_tokens'\?"),
    (("[report]\nbench_variants", "[report]\nbench_variant"),
     r"unknown key 'bench_variant' in \[report\]; did you mean 'bench_variants'\?"),
    (("[report]\nbench_variants = [\"balanced\", ", "[report]\nbench_variants = [\"balancd\", "),
     r"names 'balancd', not a variant; did you mean 'balanced'\?"),
    (("[distill]\n", "[distill.prompts_per_task]\nalpah = 2\n[distill]\n"),
     r"unknown task 'alpah' in \[distill.prompts_per_task\]; did you mean 'alpha'\?"),
    (("[variants.balanced]\n", "[variants.balanced]\nlora_rnk = 3\n"),
     r"unknown key 'lora_rnk' in \[variants.balanced\]; did you mean 'lora_rank'\?"),
    (("steps = 2", "steps = \"two\""), r"steps = 'two' in \[distill\] should be an integer"),
    (("gamma = 3", "gamma = true"), r"gamma = True in the top level should be an integer"),
    (("gamma = 3", "gamma = 3\nrouting = \"magic\""),
     r"routing = 'magic' in the top level must be one of oracle, classifier"),
    (("max_new_tokens = 6", "max_new_tokens = 0"),
     r"max_new_tokens = 0 in \[bench\] must be an integer >= 1"),
])
def test_whole_config_checked_before_anything_is_written(tmp_path, tiny_pair, edit, message):
    cfg = write_config(tmp_path, tiny_pair, write_suite(tmp_path))
    text = cfg.read_text()
    assert edit[0] in text
    cfg.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(SpecfairError, match=message) as e:
        run_experiment(str(cfg), tmp_path / "run")
    assert str(e.value).startswith(str(cfg))
    assert not (tmp_path / "run").exists()


def test_suite_include_matching_nothing_is_refused(tmp_path, tiny_pair):
    suite = write_suite(tmp_path)
    suite.write_text(suite.read_text() + 'include = ["alpha", "betta"]\n')
    cfg = write_config(tmp_path, tiny_pair, suite)
    with pytest.raises(SpecfairError, match=r"include entry 'betta' matches no category .*"
                                            r"did you mean 'beta'\?"):
        run_experiment(str(cfg), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_classifier_routing_trains_the_task_router_and_evaluates_with_it(tmp_path, tiny_pair):
    cfg = write_config(tmp_path, tiny_pair, write_suite(tmp_path))
    text = cfg.read_text().replace("gamma = 3", 'gamma = 3\nrouting = "classifier"')
    text = text[:text.index("[variants.balanced]")] + text[text.index("[variants.topn"):]
    cfg.write_text(text.replace('["balanced", "per-task", "topn-per-task"]', '"all"'))
    run = tmp_path / "run"
    run_experiment(str(cfg), run)
    drafter = run / "variants/topn-per-task/drafter"
    assert (drafter / "task_router.json").is_file() and (drafter / "router_eval.json").is_file()
    stage = json.loads((run / "stages/train-topn-per-task.json").read_text())
    ev = json.loads((drafter / "router_eval.json").read_text())
    assert stage["routing_accuracy"] == ev["routing_accuracy"] and set(ev["tasks"]) == set(TASKS)
    assert json.loads((run / "config.json").read_text())["routing"] == "classifier"
    bench = [json.loads(x) for x in
             (run / "variants/topn-per-task/bench.jsonl").read_text().splitlines()]
    sd = [r for r in bench if r["mode"] == "sd"]
    assert sd and all(r["settings"]["routing"] == "classifier" for r in sd)
    assert all(r["route"] in (*TASKS, None) for r in sd)
    est = (run / "variants/topn-per-task/estimate.jsonl").read_text().splitlines()
    assert all(json.loads(x)["settings"]["routing"] == "classifier" for x in est)
    first = json.loads((run / "baseline/bench.jsonl").read_text().split("\n")[0])
    assert "routing" not in first["settings"]  # a plain drafter
def test_model_limits_wait_for_models_the_experiment_fetches(tmp_path, monkeypatch):
    """A known model not in the cache yet is fetched by the `models` stage: its limits are
    checked there (before any weights load), not refused up front for a missing cache."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "empty"))
    cfg = ExperimentConfig.load("default")
    cfg.check_models(fetched_only=True)  # nothing to read yet: no error
    with pytest.raises(SpecfairError, match="not in the cache"):
        cfg.check_models()

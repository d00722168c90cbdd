"""The experiment's routing stage: the per-task drafter routed by a task router (no label)
against oracle routing. On synthetic records (no models): routed equals oracle where every
route is right, a wrong route's cost is the matrix's, an unknown route drafts with the base
drafter, the report says whether routed alpha is within 0.005 of oracle. On a tiny study: the
stage's files and their shapes, the export routes by the router, the timed per-task drafter is
classifier-routed, a rerun redoes no copy, and a run made before the stage gains it cheaply."""

from __future__ import annotations

import json

import numpy as np
import pytest
from study_data import write_study_sources

from specfair.report.doc import to_markdown
from specfair.report.study_routing import routing_blocks
from specfair.study.config import StudyConfig
from specfair.study.routing import summarize_routing

TASKS = ["a", "b"]
# greedy agreement of each copy (rows) on each task's prompts: the own copy is best
RATE = {"a": {"a": 0.8, "b": 0.4}, "b": {"a": 0.5, "b": 0.7}, "base": {"a": 0.6, "b": 0.5}}
N = 6  # test prompts per task


def _rec(copy: str, task: str, j: int, rng) -> dict:
    match = [int(x) for x in rng.random(20) < RATE[copy][task]]
    g = sum(match) / len(match)
    return {"copy": copy, "id": f"{task}-{j}", "task": task, "group": f"g{task}{j}",
            "greedy": g, "alpha": g + 0.05, "alpha_lo": g, "ce": 1 - g, "resid": 0.03,
            "n": 20, "match": match, "conf": [0.8] * 20}


def _routing_dir(tmp_path, routes: dict[str, str | None]):
    """A run directory holding only the routing stage's files; ``routes``: ``{id: route}``
    (the rest routed right)."""
    rng = np.random.default_rng(0)
    d = tmp_path / "run"
    (d / "routing").mkdir(parents=True)
    recs = [_rec(c, t, j, rng) for c in RATE for t in TASKS for j in range(N)]
    (d / "routing/eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    ids = [(t, f"{t}-{j}") for t in TASKS for j in range(N)]
    (d / "routing/routes.json").write_text(json.dumps(
        [{"id": i, "task": t, "predicted": routes.get(i, t) or t, "p": 0.9,
          "route": routes.get(i, t)} for t, i in ids]))
    right = sum(routes.get(i, t) == t for t, i in ids)
    (d / "routing/router_eval.json").write_text(json.dumps({
        "n": len(ids), "accuracy": right / len(ids), "routing_accuracy": right / len(ids),
        "threshold": 0.5, "copies": TASKS,
        "tasks": {t: {"n": N, "accuracy": 1.0, "routing_accuracy": 1.0, "base_share": 0.0}
                  for t in TASKS},
        "confusion": {t: {u: N * (u == t) for u in TASKS} for t in TASKS},
        "train": {"n": 24, "accuracy": 1.0}}))
    (d / "costs.json").write_text(json.dumps({"c": 0.3, "verify_slope": 0.02}))
    cfg = StudyConfig(tasks=TASKS, arms=["per-task"], bootstrap=200)
    return json.loads(summarize_routing(d, cfg).read_text()), recs


def _mean(recs, copy, task, key="greedy", ids=None):
    return np.mean([r[key] for r in recs if r["copy"] == copy and r["task"] == task
                    and (ids is None or r["id"] in ids)])


def test_routed_equals_oracle_when_every_route_is_right(tmp_path):
    r, recs = _routing_dir(tmp_path, {})
    assert set(r["matrix"]["greedy"]) == {"a", "b", "base"}
    for c in ("a", "b", "base"):
        for t in TASKS:
            assert r["matrix"]["greedy"][c][t] == pytest.approx(_mean(recs, c, t))
    for m in ("greedy", "alpha", "speedup"):
        for t in [*TASKS, "mean"]:
            assert r["routed"][m][t] == r["oracle"][m][t]
            assert r["change"][m][t] == {"value": 0.0, "lo": 0.0, "hi": 0.0, "claimed": False}
    for t in TASKS:
        assert r["oracle"]["greedy"][t] == pytest.approx(r["matrix"]["greedy"][t][t])
    assert r["routes"] == {"a": {"a": N}, "b": {"b": N}} and r["wrong_routes"] == []
    assert r["within"] == {"greedy": {"value": True, "ci": True},
                           "alpha": {"value": True, "ci": True}}
    md = to_markdown(routing_blocks(r, TASKS))
    assert "## Task routing" in md
    assert "Routed greedy alpha is within 0.005 of oracle routing (its 95% CI lies" in md
    assert "No test prompt was routed away" in md
    assert "| **" in md  # the matrix's diagonal: oracle routing


def test_a_wrong_route_costs_what_the_matrix_says_and_none_is_the_base(tmp_path):
    wrong = {f"a-{j}": "b" for j in range(N)} | {"b-0": None}  # every a to b; one b to base
    r, recs = _routing_dir(tmp_path, wrong)
    mat = r["matrix"]["greedy"]
    # every prompt of a drafted by b's copy: routed is b's row, the cost the matrix's gap
    assert r["routed"]["greedy"]["a"] == pytest.approx(mat["b"]["a"])
    assert r["change"]["greedy"]["a"]["value"] == pytest.approx(mat["b"]["a"] - mat["a"]["a"])
    assert r["change"]["greedy"]["a"]["hi"] < 0 and r["change"]["greedy"]["a"]["claimed"]
    # one prompt of b with no route: the base drafter's pass
    d_b = (_mean(recs, "base", "b", ids={"b-0"}) - _mean(recs, "b", "b", ids={"b-0"})) / N
    assert r["change"]["greedy"]["b"]["value"] == pytest.approx(d_b)
    assert r["routes"] == {"a": {"b": N}, "b": {"base": 1, "b": N - 1}}
    assert [(w["task"], w["copy"], w["n"]) for w in r["wrong_routes"]] == [
        ("a", "b", N), ("b", "base", 1)]
    assert r["wrong_routes"][0]["d_greedy"] == pytest.approx(mat["b"]["a"] - mat["a"]["a"])
    assert r["change"]["speedup"]["a"]["value"] < 0  # fewer accepted tokens, slower
    assert r["within"]["greedy"] == {"value": False, "ci": False}
    md = to_markdown(routing_blocks(r, TASKS))
    assert "Routed greedy alpha is not within 0.005 of oracle routing" in md
    assert "| a | b | 6 |" in md and "| b | base | 1 |" in md  # each wrong route's cost


# ----------------------------------------------------------------------------- tiny study


def _cfg(long_pair) -> StudyConfig:
    target, drafter = long_pair
    return StudyConfig(target=str(target), drafter=str(drafter), n_train=4, n_test=3,
                       n_heldout=2, max_prompt_tokens=24, train_response_tokens=6,
                       test_response_tokens=6, topk=8, top_layers=1, batch_size=2, epochs=1.0,
                       budgets=[1.0], lr=1e-3, overfit_epochs=1.0, bootstrap=50, n_bench=1,
                       gamma=3, arms=["per-task"], tasks=["chat", "code", "translation_zh_en"])


@pytest.fixture(scope="module")
def finished(long_pair, tmp_path_factory):
    """One finished tiny study (per-task arm only, three tasks), made once."""
    from specfair.study.run import run_study

    root = tmp_path_factory.mktemp("routing_study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECFAIR_HOME", str(root / "home"))
        write_study_sources(root / "home" / "data")
        run_study(_cfg(long_pair), root / "run")
    return root


@pytest.fixture
def study(finished, long_pair, tmp_path, monkeypatch):
    """A copy of the finished study for one test to change: ``(cfg, run dir, run_study)``."""
    import shutil

    from specfair.study.run import run_study

    monkeypatch.setenv("SPECFAIR_HOME", str(finished / "home"))
    shutil.copytree(finished / "run", tmp_path / "run")
    return _cfg(long_pair), tmp_path / "run", run_study


def _never(*a, **k):
    raise AssertionError("called on a finished run")


def _jsonl(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_the_routing_stage_on_a_tiny_study(study, monkeypatch):
    from specfair.drafters.routing import check_routing
    from specfair.study.run import Run

    cfg, out, run_study = study
    tasks, n = cfg.tasks, cfg.n_test * len(cfg.tasks)
    r = json.loads((out / "routing.json").read_text())
    assert set(r["tasks"]) == set(tasks) and r["n"] == n
    assert all(sum(r["routes"][t].values()) == cfg.n_test for t in tasks)
    assert {t: sum(row.values()) for t, row in r["confusion"].items()} == dict.fromkeys(
        tasks, cfg.n_test)
    for m in ("greedy", "alpha"):
        assert set(r["matrix"][m]) == {*tasks, "base"}
        assert all(set(row) == set(tasks) for row in r["matrix"][m].values())
    evals = _jsonl(out / "routing/eval.jsonl")
    assert len(evals) == (len(tasks) + 1) * n
    # the diagonal is the per-task arm as the study evaluated it (oracle routing)
    study_recs = [x for x in _jsonl(out / "eval.jsonl") if x["arm"] == "per-task"]
    for t in tasks:
        mine = np.mean([x["greedy"] for x in study_recs if x["task"] == t])
        assert r["matrix"]["greedy"][t][t] == pytest.approx(mine, abs=1e-6)
        assert r["oracle"]["greedy"][t] == pytest.approx(mine, abs=1e-6)
        base = np.mean([x["greedy"] for x in _jsonl(out / "eval.jsonl")
                        if x["arm"] == "base" and x["task"] == t])
        assert r["matrix"]["greedy"]["base"][t] == pytest.approx(base, abs=1e-6)
    # the export routes an unlabelled prompt by the router; the timing used it
    export = out / "drafters/per-task"
    assert check_routing("classifier", str(export)) == "classifier"
    assert (export / "router_eval.json").is_file()
    sd = [x for x in _jsonl(out / "timed/per-task/bench.jsonl") if x["mode"] == "sd"]
    assert sd and all(x["settings"]["routing"] == "classifier" and "route" in x for x in sd)
    timed = json.loads((out / "timed.json").read_text())["drafters"]["per-task"]
    assert timed["routing"] == "classifier"
    assert sum(sum(c.values()) for c in timed["routes"].values()) == len(sd)
    report = (out / "report.md").read_text()
    assert "## Task routing" in report and "of oracle routing" in report
    assert report.index("## Task routing") < report.index("## Measured speed-ups")
    assert "timed as deployed without labels" in report
    # a rerun evaluates no copy again; a copy whose records are lost is the only one redone
    before = {p: p.read_bytes() for p in (out / "routing").iterdir()}
    calls = []
    real = Run.eval_records

    def counting(self, top, seqs, **tags):
        calls.append(tags.get("copy"))
        return real(self, top, seqs, **tags)

    monkeypatch.setattr(Run, "eval_records", counting)
    monkeypatch.setattr("specfair.study.routing.fit_router", _never)
    monkeypatch.setattr("specfair.study.routing.prompt_features", _never)
    run_study(cfg, out)
    assert calls == [] and {p: p.read_bytes() for p in before} == before
    kept = [x for x in evals if x["copy"] != "code"]
    (out / "routing/eval.jsonl").write_text("".join(json.dumps(x) + "\n" for x in kept))
    run_study(cfg, out)
    assert calls == ["code"]
    assert json.loads((out / "routing.json").read_text()) == r


def test_a_run_made_before_the_stage_gains_it_without_training_or_timing(study, monkeypatch):
    """A finished run from before the routing stage (no routing files, no router in its
    export, its per-task drafter timed with oracle routing): the rerun fits the router, copies
    it into the export, writes routing.json and the report, trains nothing and times nothing;
    timed.json says the per-task timing used oracle routing."""
    import shutil

    cfg, out, run_study = study
    shutil.rmtree(out / "routing")
    (out / "routing.json").unlink()
    for f in ("task_router.json", "task_router.safetensors", "router_eval.json"):
        (out / "drafters/per-task" / f).unlink()
    bench = out / "timed/per-task/bench.jsonl"
    old = []
    for x in _jsonl(bench):
        if x["mode"] == "sd":
            x.pop("route")
            x["settings"]["routing"] = "oracle"
        old.append(x)
    bench.write_text("".join(json.dumps(x) + "\n" for x in old))
    logs = {p: p.read_bytes() for p in (out / "arms").rglob("train_log.jsonl")}

    monkeypatch.setattr("specfair.study.timed.load_model", _never)  # nothing timed again
    run_study(cfg, out)
    assert {p: p.read_bytes() for p in logs} == logs and _jsonl(bench) == old
    assert (out / "drafters/per-task/task_router.json").is_file()
    assert json.loads((out / "routing.json").read_text())["n"] == cfg.n_test * len(cfg.tasks)
    timed = json.loads((out / "timed.json").read_text())["drafters"]["per-task"]
    assert timed["routing"] == "oracle" and "routes" not in timed
    report = (out / "report.md").read_text()
    assert "## Task routing" in report and "timed with oracle routing" in report

"""The timed stage under the policies users deploy (issue 29, item 5): on the tiny pair, every
timed drafter under each of ``timed_policies`` and HF assisted generation with its defaults
(``timed_hf``), prompt by prompt against the same AR runs; greedy SD lossless in float32 under
each policy; resumable per prompt (a killed or torn file is finished, never duplicated); a
policy added or dropped after timing; a run timed before the keys existed resumes unchanged;
``timed.json`` and the report's section."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from study_data import write_study_sources

from specfair.errors import SpecfairError
from specfair.report.commands import report_command
from specfair.study.config import StudyConfig
from specfair.study.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")

ADAPTIVE = "timed/policies/adaptive+hybrid"
FILES = ["timed/base", "timed/uniform", f"{ADAPTIVE}/base", f"{ADAPTIVE}/uniform",
         "timed/hf-assisted"]


def _cfg(long_pair, **kw) -> StudyConfig:
    target, drafter = long_pair
    return StudyConfig(**(dict(
        target=str(target), drafter=str(drafter), tasks=["chat", "summarization", "mgsm_zh"],
        n_train=4, n_test=3, n_heldout=1, max_prompt_tokens=24, train_response_tokens=6,
        test_response_tokens=8, topk=8, top_layers=1, batch_size=2, epochs=1.0, budgets=[1.0],
        lr=1e-3, overfit_epochs=1.0, bootstrap=50, n_bench=2, gamma=3, arms=["uniform"],
        index_arm=False, dtype="float32", timed_policies=["fixed:3", "adaptive+hybrid"],
        timed_hf=True) | kw))


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _bench(run: Path, where: str) -> list[dict]:
    return _lines(run / where / "bench.jsonl")


def _no_models(mp) -> None:
    def no_load(*a, **k):
        raise AssertionError("the timed stage loaded the models again")

    mp.setattr("specfair.study.timed.load_model", no_load)


@pytest.fixture(scope="module")
def timed(long_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("timed_policies")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECFAIR_HOME", str(root / "home"))
        write_study_sources(root / "home" / "data")
        cfg = _cfg(long_pair)
        run_study(cfg, root / "run")
        yield {"cfg": cfg, "run": root / "run", "mp": mp, "long_pair": long_pair}


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".specfair.lock"))
    return to


def test_every_drafter_under_every_policy_and_hf_against_the_same_ar_runs(timed):
    run, cfg = timed["run"], timed["cfg"]
    bench = {w: _bench(run, w) for w in FILES}
    ar = {r["id"]: r for r in bench["timed/base"] if r["mode"] == "ar"}
    assert len(ar) == 2 * len(cfg.tasks)
    for where, recs in bench.items():
        assert [r["wall_s"] for r in recs if r["mode"] == "ar"] == [
            r["wall_s"] for r in ar.values()], where  # the same AR runs, relabelled
        sd = [r for r in recs if r["mode"] == "sd"]
        assert sorted(r["id"] for r in sd) == sorted(ar), where  # paired, no duplicate
        assert len({(r["id"], r["mode"]) for r in recs}) == len(recs), where
        # greedy decoding in float32: every policy (and HF assisted generation) is lossless
        assert all(r["tokens"] == ar[r["id"]]["tokens"] and r["matches_ar"] for r in sd), where
        # every record of a file carries that file's settings (AR records relabelled)
        assert len({json.dumps({k: v for k, v in r["settings"].items() if k != "specfair"},
                               sort_keys=True) for r in recs}) == 1, where
    costs = json.loads((run / "costs.json").read_text())
    for where in (f"{ADAPTIVE}/base", f"{ADAPTIVE}/uniform"):
        s = bench[where][0]["settings"]
        assert (s["policy"], s["proposer"]) == ("adaptive", "hybrid")
        assert s["verify_slope"] == costs["verify_slope"]  # the run's measured curve
    assert all(r["settings"]["drafter"] == "drafters/uniform" for r in bench[f"{ADAPTIVE}/uniform"])
    hf = [r for r in bench["timed/hf-assisted"] if r["mode"] == "sd"]
    s = hf[0]["settings"]
    assert (s["backend"], s["policy"], s["drafter"]) == ("hf-assisted", "hf-defaults",
                                                         cfg.drafter)
    assert s["hf_assistant"] == {"num_assistant_tokens": 20,
                                 "num_assistant_tokens_schedule": "constant",
                                 "assistant_confidence_threshold": 0.4}
    for r in hf:  # HF's counters: each verification adds a token of its own
        e = r["engine"][0]
        assert e["target_forwards"] >= 1 and r["accepted"] == r["new_tokens"] - e[
            "target_forwards"] and r["drafted"] == e["drafter_forwards"]
    # prompt by prompt: every SD run of a prompt between its AR run and the next prompt's
    ar_t = [(r["id"], r["time"]) for r in ar.values()]
    span = {i: (t, ar_t[k + 1][1] if k + 1 < len(ar_t) else float("inf"))
            for k, (i, t) in enumerate(ar_t)}
    assert all(span[r["id"]][0] < r["time"] < span[r["id"]][1]
               for recs in bench.values() for r in recs if r["mode"] == "sd")


def test_timed_json_and_the_report_per_policy(timed):
    run, cfg = timed["run"], timed["cfg"]
    t = json.loads((run / "timed.json").read_text())
    assert set(t["drafters"]) == {"base", "uniform"}  # the stage's own policy, as before
    assert list(t["policies"]) == ["fixed:3+model", "adaptive+hybrid"]
    own = t["policies"]["fixed:3+model"]
    assert own["own"] and own["drafters"]["uniform"]["tasks"] == t["drafters"]["uniform"]["tasks"]
    for label, pol in t["policies"].items():
        assert set(pol["drafters"]) == {"base", "uniform"}, label
        for name, d in pol["drafters"].items():
            sp = {k: v["speedup"]["mean"] for k, v in d["tasks"].items()}
            assert set(sp) == set(cfg.tasks)
            assert d["max_min"] == pytest.approx(max(sp.values()) / min(sp.values()))
            assert d["worst_task"] == min(sp, key=sp.get)
            for v in d["tasks"].values():
                assert v["speedup"]["lo"] <= v["speedup"]["mean"] <= v["speedup"]["hi"]
                assert (v["vs_base"] is None) == (name == "base")
            assert ("vs_base_overall" in d) == (name != "base")
            assert set(d["vs_hf"]["tasks"]) == set(cfg.tasks) and d["vs_hf"]["overall"]
    g = t["policies"]["adaptive+hybrid"]["drafters"]["uniform"]["vs_base_overall"]
    assert g["lo"] <= g["mean"] <= g["hi"]
    hf = t["hf_assisted"]
    assert set(hf["tasks"]) == set(cfg.tasks) and hf["max_min"] >= 1.0
    assert hf["worst_task"] in cfg.tasks and hf["settings"]["num_assistant_tokens"] == 20
    md = (run / "report.md").read_text()
    assert "## Measured speed-ups under the deployed policies" in md
    assert "| max/min |" in md and "HF assisted" in md and "uniform ÷ base" in md
    assert "Under adaptive+hybrid" in md  # the answer's line per policy


@pytest.mark.parametrize("cut", ["killed", "torn"])
def test_a_killed_or_torn_timed_stage_resumes_to_the_same_records(timed, tmp_path, cut):
    """Stopped after the first prompt's runs of a policy file and of HF's (``killed``: the
    later records gone; ``torn``: the next line half-written): the rerun times only what is
    missing, keeps every record made, and ends with the same (prompt, mode) records, once
    each (greedy: the same tokens)."""
    run = _copy(timed["run"], tmp_path / "run")
    want = {w: _bench(timed["run"], w) for w in FILES}
    kept = {}
    for w in (f"{ADAPTIVE}/uniform", "timed/hf-assisted"):
        path = run / w / "bench.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        kept[w] = lines[:2]  # the first prompt's AR and SD
        tail = lines[2][: len(lines[2]) // 2] if cut == "torn" else ""
        path.write_text("".join(kept[w]) + tail)
    run_study(timed["cfg"], run)
    for w, recs in want.items():
        got = _bench(run, w)  # the AR records a file lacks come first (share_ar), then SD
        assert len(got) == len(recs) and {(r["id"], r["mode"]): r["tokens"] for r in got} == {
            (r["id"], r["mode"]): r["tokens"] for r in recs}, w
        if w in kept:
            assert got[:2] == [json.loads(x) for x in kept[w]]
        else:
            assert got == recs, w  # untouched


def test_policies_added_or_dropped_after_timing(timed, tmp_path):
    """Any time: a dropped policy (and HF) keeps its records on disk, out of timed.json, with
    no model loaded; an added one is timed on against the AR runs already made, the other
    files left as they were."""
    run = _copy(timed["run"], tmp_path / "run")
    before = {p: p.read_bytes() for p in (run / "timed").rglob("bench.jsonl")}
    with pytest.MonkeyPatch.context() as mp:
        _no_models(mp)
        run_study(_cfg(timed["long_pair"], timed_policies=[], timed_hf=False), run)
    assert {p: p.read_bytes() for p in before} == before
    t = json.loads((run / "timed.json").read_text())
    assert "policies" not in t and set(t["drafters"]) == {"base", "uniform"}
    assert "deployed policies" not in (run / "report.md").read_text()
    run_study(_cfg(timed["long_pair"], timed_policies=["heuristic", "fixed:3"],
                   timed_hf=False), run)
    assert {p: p.read_bytes() for p in before} == before
    new = _bench(run, "timed/policies/heuristic+model/uniform")
    ar = [r for r in _bench(run, "timed/base") if r["mode"] == "ar"]
    assert [r["wall_s"] for r in new if r["mode"] == "ar"] == [r["wall_s"] for r in ar]
    assert all(r["tokens"] == a["tokens"] for r, a in zip(
        [r for r in new if r["mode"] == "sd"], ar, strict=True))
    t = json.loads((run / "timed.json").read_text())
    assert list(t["policies"]) == ["fixed:3+model", "heuristic+model"]
    assert t["hf_assisted"] is None


def test_a_run_timed_before_the_keys_existed_resumes_unchanged(timed, tmp_path):
    """A run directory of the code before these keys (its study_config.json without them, its
    timed files the stage's own policy only) resumes with them unset: nothing timed again,
    no model loaded, timed.json as before (no policies block); the report as before."""
    run = _copy(timed["run"], tmp_path / "run")
    shutil.rmtree(run / "timed" / "policies")
    shutil.rmtree(run / "timed" / "hf-assisted")
    conf = json.loads((run / "study_config.json").read_text())
    for k in ("timed_policies", "timed_hf"):
        del conf[k]
    (run / "study_config.json").write_text(json.dumps(conf))
    before = {p: p.read_bytes() for p in (run / "timed").rglob("bench.jsonl")}
    with pytest.MonkeyPatch.context() as mp:
        _no_models(mp)
        run_study(_cfg(timed["long_pair"], timed_policies=[], timed_hf=False), run)
    assert {p: p.read_bytes() for p in before} == before
    t = json.loads((run / "timed.json").read_text())
    assert set(t) == {"policy", "gamma", "budget", "max_new_tokens", "n_per_task", "costs",
                      "machines", "drafters"}
    report_command(run)
    assert "deployed policies" not in (run / "report.md").read_text()


def test_a_bad_policy_is_one_error_before_anything_runs(tmp_path):
    for bad, why in ((["fixed:3", "sometimes"], "'sometimes': --policy"),
                     (["adaptive+hybrid"], "a list with fixed:5"),
                     (["fixed:5", "fixed:5+ngram"], "drafts without the drafter"),
                     (["fixed:5", "table:policy.json"], "a file outside the run"),
                     (["fixed:5", "adaptive+suffix"], "time_index")):
        with pytest.raises(SpecfairError, match=f"timed_policies = .*{why}"):
            StudyConfig(timed_policies=bad)
    assert not list(tmp_path.iterdir())


def test_check_says_what_is_timed_under_which_policy(timed):
    from specfair.study.check import check_config

    plan = "\n".join(check_config(timed["cfg"]))
    assert ("timed: the base drafter and uniform (largest budget, first seed) at 8 new tokens "
            "under fixed:3+model, adaptive+hybrid; HF assisted generation") in plan
    assert "under fixed:3+model, against" in "\n".join(check_config(StudyConfig(
        **(timed["cfg"].to_dict() | {"timed_policies": [], "timed_hf": False}))))


def test_the_report_refuses_a_damaged_policy_file(timed, tmp_path):
    """``specfair report`` reads every timed record file, the policies' too: a corrupt line
    before the last is the experiment's own error."""
    run = _copy(timed["run"], tmp_path / "run")
    path = run / ADAPTIVE / "base" / "bench.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0][:20] + "\n" + "".join(lines[1:]))
    with pytest.raises(SpecfairError, match="line 1 is not valid JSON"):
        report_command(run)

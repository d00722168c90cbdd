"""The experiment's index arm (issue 30, item 2: same data, two uses): on a tiny pair, one
index per training set (the arms' and each data dose's, the same supervised tokens), one record
per (index, test prompt), resumable by item; the replayed index equals what the engine's
suffix proposer accepts; ``same_data.json``, ``summary.json`` and the report's table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from study_data import write_study_sources

from specfair.decoding import FixedGamma, speculative_generate
from specfair.drafters.index import load_index
from specfair.measure.replay import Policy, TextDrafts, replay
from specfair.models.load import load_model, load_tokenizer
from specfair.study.config import StudyConfig
from specfair.study.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")

EVALS = "indexes/eval.jsonl"


def _cfg(long_pair) -> StudyConfig:
    target, drafter = long_pair
    return StudyConfig(target=str(target), drafter=str(drafter),
                       tasks=["chat", "summarization", "mgsm_zh"],  # drafted from their text
                       n_train=4, n_test=3, n_heldout=1, max_prompt_tokens=24,
                       train_response_tokens=8, test_response_tokens=8, topk=8, top_layers=1,
                       batch_size=2, epochs=1.0, budgets=[0.5, 1.0], lr=1e-3,
                       overfit_epochs=1.0, bootstrap=50, n_bench=0, gamma=3,
                       arms=["uniform", "per-task"], prompt_fractions=[0.5, 1.0])


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def study(long_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("index_arm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECFAIR_HOME", str(root / "home"))
        write_study_sources(root / "home" / "data")
        cfg = _cfg(long_pair)
        summary = json.loads(run_study(cfg, root / "run").read_text())
        yield {"cfg": cfg, "run": root / "run", "summary": summary, "mp": mp}


def test_one_index_per_training_set_and_one_record_per_test_prompt(study):
    cfg, run = study["cfg"], study["run"]
    evals = _lines(run / "eval.jsonl")
    base = {r["id"]: r for r in evals if r["arm"] == "base"}
    recs = _lines(run / EVALS)
    assert {r["index"] for r in recs} == {"index", "index@0.5", "index@1"}
    for name in ("index", "index@0.5", "index@1"):
        mine = [r for r in recs if r["index"] == name]
        assert sorted(r["id"] for r in mine) == sorted(base), name  # paired, no duplicate
        for r in mine:  # one entry per replayed position (the pass's, token 0 from prefill)
            n = len(base[r["id"]]["match"]) - 1
            assert len(r["suffix_len"]) == len(r["suffix_acc"]) == len(r["lookup_len"]) == n
            assert all(0 <= a <= k for a, k in zip(r["suffix_acc"], r["suffix_len"],
                                                   strict=True))
            assert all(t in ("index", "request", "") for t in r["suffix_tree"])
    # the same supervised tokens as the fine-tuned copies trained on, at each data dose
    for name, arm in (("index@0.5", "uniform@0.5"), ("index@1", "uniform@1"),
                      ("index", "uniform@1")):
        ft = {r["task"]: r["dose_supervised_tokens"] for r in evals if r["arm"] == arm}
        idx = {r["task"]: r["index_tokens"] for r in recs if r["index"] == name}
        assert idx == ft and all(v > 0 for v in idx.values()), name
    # each index on disk, as bench loads it; its text the training texts (response positions)
    tok = load_tokenizer(cfg.target)
    index = load_index(run / "indexes" / "index", tok)
    sd = study["summary"]["same_data"]
    for t in cfg.tasks:
        assert index.for_task(t).n_tokens == sd["index"][t]["tokens"]
    # drafted from the task's text somewhere (not only the request's own tokens)
    assert any("index" in r["suffix_tree"] for r in recs)


def test_same_data_in_the_summary_and_the_report(study):
    cfg, run, s = study["cfg"], study["run"], study["summary"]
    sd = s["same_data"]
    assert sd == json.loads((run / "same_data.json").read_text())
    assert sd["fine_tuned"]["arm"] in cfg.arms and sd["fine_tuned"]["chosen_on"] == \
        "held-out passes"
    assert sd["variants"] == ["base", "fine-tuned", "index", "fine-tuned+index", "base+index"]
    for t in cfg.tasks:
        rows = sd["tasks"][t]
        assert rows["index"]["share"] > 0 and rows["base"]["share"] == 0
        for name, r in rows.items():
            assert r["speedup"]["lo"] <= r["speedup"]["value"] <= r["speedup"]["hi"], name
            assert r["alpha"] is None or 0 <= r["alpha"] <= 1
        # the base drafter's row is the summary's own predicted speed-up (same replay)
        assert rows["base"]["speedup"]["value"] == pytest.approx(
            s["base"]["tasks"][t]["speedup"]["value"])
        ch = sd["changes"]["index - fine-tuned"][t]
        assert ch["value"] == pytest.approx(rows["index"]["speedup"]["value"]
                                            - rows["fine-tuned"]["speedup"]["value"])
    assert [p["point"] for p in sd["dose"]] == [0.5, 1.0]
    assert all(p["same_supervised_tokens"] for p in sd["dose"])
    assert sd["dose"][0]["fine_tuned"] == "uniform@0.5"
    md = (run / "report.md").read_text()
    assert "## Same data, two uses" in md and "| chat | index alone |" in md
    assert "Same data, two uses (predicted" in md  # the answer's line
    assert "Predicted speed-up, mean over tasks, at each data dose" in md


@pytest.mark.parametrize("stop", ["first", "middle-torn", "last"])
def test_the_index_stage_resumes_to_the_same_records(study, tmp_path, stop):
    """Stopped before an append of ``indexes/eval.jsonl`` (the index being drafted from built
    or not, the line half-written), the rerun ends with the uninterrupted run's records."""
    run, cfg = study["run"], study["cfg"]
    want = (run / EVALS).read_text().splitlines(keepends=True)
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".specfair.lock"))
    k = {"first": 0, "middle-torn": len(want) // 2, "last": len(want) - 1}[stop]
    kept = "".join(want[:k]) + (want[k][: len(want[k]) // 2] if stop == "middle-torn" else "")
    (copy / EVALS).write_text(kept)
    (copy / "same_data.json").unlink()
    name = json.loads(want[k])["index"]
    if stop == "first":  # stopped before the index was written
        shutil.rmtree(copy / "indexes" / name)
    run_study(cfg, copy)
    assert (copy / EVALS).read_text().splitlines(keepends=True) == want
    assert json.loads((copy / "same_data.json").read_text()) == json.loads(
        (run / "same_data.json").read_text())


def test_the_replayed_index_equals_the_engine(study):
    """The index's teacher-forced replay of a test answer equals decoding that prompt with the
    suffix proposer and the run's index (steps, drafts and acceptances, step for step)."""
    cfg, run = study["cfg"], study["run"]
    target = load_model(cfg.target, "float32", "cpu")
    index = load_index(run / "indexes" / "index", load_tokenizer(cfg.target))
    answers = {r["id"]: r for r in _lines(run / "test_responses.jsonl")}
    compared, drafted = 0, 0
    for r in _lines(run / EVALS):
        a = answers[r["id"]]
        if r["index"] != "index" or a["stop_reason"] != "max_tokens":
            continue
        res = speculative_generate(target, None, a["prompt_ids"],
                                   max_new_tokens=cfg.test_response_tokens, gamma=FixedGamma(5),
                                   proposer="suffix", index=index.for_task(r["task"]),
                                   eos_token_id=[])  # fmt: skip
        if res.tokens != a["response_ids"]:  # batched answers may differ from the engine's
            continue
        n = len(r["suffix_len"])
        rep = replay([False] * n, [0.0] * n, Policy("fixed", 5), proposer="suffix",
                     drafts={"suffix": TextDrafts.of_record(r, "suffix")})
        assert list(rep.draft_sizes) == [s.drafted for s in res.steps], r["id"]
        assert list(rep.accepted_sizes) == [s.accepted for s in res.steps], r["id"]
        assert list(rep.sources) == [s.proposer for s in res.steps], r["id"]
        compared += 1
        drafted += sum(s.drafted for s in res.steps)
    assert compared >= 3 and drafted > 0


def test_the_timed_stage_times_the_index_variants_when_asked(long_pair, tmp_path, monkeypatch):
    """``time_index``: the index alone (``suffix:DIR``) and the fine-tuned arm with it
    (``suffix-hybrid:DIR``) timed in the stage's loop, lossless, each with its own AR runs,
    with a predicted speed-up beside the measured one in ``timed.json``."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = StudyConfig(**(_cfg(long_pair).to_dict() | dict(
        arms=["uniform"], prompt_fractions=[], n_bench=1, time_index=True)))
    run_study(cfg, tmp_path / "run")
    timed = json.loads((tmp_path / "run" / "timed.json").read_text())
    assert set(timed["drafters"]) == {"base", "uniform", "index", "uniform+index"}
    for label, proposer in (("index", "suffix:indexes/index"),
                            ("uniform+index", "suffix-hybrid:indexes/index")):
        recs = _lines(tmp_path / "run" / "timed" / label / "bench.jsonl")
        ar = {r["id"]: r["tokens"] for r in recs if r["mode"] == "ar"}
        sd = [r for r in recs if r["mode"] == "sd"]
        assert len(ar) == len(cfg.tasks) and sorted(r["id"] for r in sd) == sorted(ar)
        assert all(r["tokens"] == ar[r["id"]] and r["proposer"] == proposer for r in sd)
        d = timed["drafters"][label]
        assert all(v["predicted"] is not None and v["vs_base"] is not None
                   for v in d["tasks"].values())
    assert "| index |" in (tmp_path / "run" / "report.md").read_text()

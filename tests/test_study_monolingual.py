"""The ``monolingual`` arm (issue 29 item 4, Paudel et al.'s second strategy) on the tiny pair:
each translation task trains on unlabeled text in its output language, as many supervised
tokens as its own training sequences (within one sequence), none of it a test prompt's or
reference's; a task without such text trains on its own and says why; a stop in the arm
resumes to the same records."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from study_data import write_study_sources

from specfair.models.load import load_tokenizer
from specfair.study.config import StudyConfig
from specfair.study.monolingual import output_language
from specfair.study.run import run_study
from specfair.tasks.prompt import normalize_text
from specfair.tasks.split import split_key, split_of
from specfair.tasks.study import TEST_FRACTION, load_study_suite, monolingual

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ["chat", "translation_en_zh", "translation_zh_en", "translation_en_ja"]
ARM_FILES = ("eval.jsonl", "policy_eval.jsonl", "arms/monolingual/eval.jsonl",
             "arms/monolingual/policy_eval.jsonl", "arms/monolingual/train_log.jsonl")


def _cfg(long_pair) -> StudyConfig:
    target, drafter = long_pair
    return StudyConfig(target=str(target), drafter=str(drafter), tasks=TASKS, n_train=4,
                       n_test=3, n_heldout=2, max_prompt_tokens=24, train_response_tokens=6,
                       test_response_tokens=6, topk=8, top_layers=1, batch_size=2, epochs=1.0,
                       budgets=[1.0], lr=1e-3, overfit_epochs=2.0, bootstrap=50, n_bench=0,
                       gamma=3, arms=["uniform", "monolingual"])


def _records(run, rel: str) -> list[dict]:
    """A record file's records (timings dropped)."""
    return [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"}
            for x in (run / rel).read_text().splitlines()]


def test_output_language_by_task_name():
    assert [output_language(t) for t in (
        "translation_en_zh", "translation_en_zh_sent", "translation_en_zh_para",
        "translation_en_ja", "translation_en_ja_para", "translation_zh_en",
        "translation_zh_en_para")] == ["zh", "zh", "zh", "ja", "ja", "en", "en"]
    assert {output_language(t) for t in ("translation_en_fr", "zh", "ja", "mgsm_ja",
                                         "chat", "translation_en_zhx")} == {None}


def test_the_monolingual_arm_trains_on_output_language_text_at_matched_tokens(
        long_pair, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("SPECFAIR_HOME", str(home))
    write_study_sources(home / "data")
    # no MGSM: the tiny ShareGPT has no Japanese turn, so en->ja has no Japanese text at all
    shutil.rmtree(home / "data" / "mgsm")
    cfg = _cfg(long_pair)
    out = tmp_path / "run"
    run_study(cfg, out)
    mono = json.loads((out / "monolingual.json").read_text())
    own = json.loads((out / "train_data.json").read_text())
    tok = load_tokenizer(cfg.target)
    texts = {lang: {p.id: p for p in monolingual(lang, mgsm=False, faq=False,
                                                 reference=False)}
             for lang in ("zh", "en")}
    suite = load_study_suite(seed=cfg.seed, tasks=cfg.tasks)
    tests = [x for p in suite.prompts("test") for x in (*p.turns, p.reference) if x]
    held = {r["group"] for name in ("eval.jsonl", "policy_eval.jsonl")
            for r in _records(out, name) if r["arm"] == "base"}
    taken = []
    for task, lang, script in (("translation_en_zh", "zh", r"[\u4e00-\u9fff]"),
                               ("translation_zh_en", "en", r"^[ -~]+$")):
        t = mono["tasks"][task]
        assert t["text"] == "monolingual" and t["language"] == lang and t["reached"]
        assert t["sources"] == {"hsk": len(t["ids"])} and t["fallback"] is None
        want = own[task]["supervised_tokens"]
        lens = [len(tok.encode(texts[lang][i].text, add_special_tokens=False)
                    [: cfg.train_response_tokens]) for i in t["ids"]]
        # as many supervised tokens as the task's own training text, within one sequence
        assert t["target_supervised_tokens"] == want > 0
        assert sum(lens) == t["supervised_tokens"] and want <= sum(lens) < want + lens[-1]
        assert t["sequences"] == len(t["ids"]) and t["prompt_tokens"] > 0
        for i in t["ids"]:
            p = texts[lang][i]
            assert re.search(script, p.text), p.text  # the output language
            # no leak: a train-split text, of no test or held-out prompt's split group, no
            # test prompt's or reference's text and none of them in it
            assert split_of(p, TEST_FRACTION) == "train" and split_key(p)[:16] not in held
            assert normalize_text(p.text) not in {normalize_text(x) for x in tests}
            assert not any(f" {normalize_text(x)} " in f" {normalize_text(p.text)} "
                           for x in tests)
        taken += t["ids"]
    assert len(taken) == len(set(taken))
    # the test split's texts were in the pool, and left out (the check is not vacuous)
    assert mono["languages"]["zh"]["test_split"] > 0 and mono["languages"]["en"]["test_split"] > 0
    # a task without text in its output language trains on its own sequences and says why
    ja = mono["tasks"]["translation_en_ja"]
    assert ja["text"] == "own" and ja["wanted_language"] == "ja" and ja["language"] is None
    assert "no usable Japanese text" in ja["fallback"]
    assert "mgsm not read (missing" in ja["fallback"]
    assert "`specfair data fetch debian_reference_ja`" in ja["fallback"]
    assert ja["sequences"] == own["translation_en_ja"]["prompts"]
    assert ja["supervised_tokens"] == own["translation_en_ja"]["supervised_tokens"]
    chat = mono["tasks"]["chat"]
    assert chat["text"] == "own" and chat["fallback"].startswith("not a translation")
    assert mono["prompt"].startswith("the chat template with an empty user turn")
    # trained and evaluated as the other arms: the same test prompts, its text in each record
    recs = _records(out, "eval.jsonl")
    base = sorted(r["id"] for r in recs if r["arm"] == "base")
    arm = [r for r in recs if r["arm"] == "monolingual"]
    assert len(base) == 3 * len(TASKS) and {r["budget"] for r in arm} == {1.0}
    assert sorted(r["id"] for r in arm) == base
    for r in arm:
        t = mono["tasks"][r["task"]]
        assert (r["trained_on"], r["trained_language"], r["trained_sources"],
                r["trained_sequences"], r["trained_supervised_tokens"],
                r["trained_prompt_tokens"]) == (
            t["text"], t["language"], t["sources"], t["sequences"], t["supervised_tokens"],
            t["prompt_tokens"])
    assert not any("trained_on" in r for r in recs if r["arm"] == "uniform")
    logs = _records(out, "arms/monolingual/train_log.jsonl")
    assert logs and {x for r in logs for x in r["tasks"]} <= set(TASKS)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["arms"]) == {"uniform", "monolingual"}
    assert (out / "drafters" / "monolingual" / "config.json").is_file()

    # a stop in the arm: its checkpoint lost (trained again from the start), half of each
    # record file kept and the next line torn; the rerun ends with the same records
    want = {rel: _records(out, rel) for rel in ARM_FILES}
    run2 = tmp_path / "run2"
    shutil.copytree(out, run2, ignore=shutil.ignore_patterns(".specfair.lock"))
    shutil.rmtree(run2 / "arms" / "monolingual" / "checkpoint")
    for rel in ARM_FILES:
        lines = (run2 / rel).read_text().splitlines(keepends=True)
        mine = [i for i, x in enumerate(lines) if "train_log" in rel
                or json.loads(x).get("arm", "monolingual") == "monolingual"]
        cut = mine[len(mine) // 2]
        (run2 / rel).write_text("".join(lines[:cut]) + lines[cut][: len(lines[cut]) // 2])
    monkeypatch.setattr("specfair.study.run.write_report", lambda run_dir: None)
    run_study(cfg, run2)
    for rel in ARM_FILES:
        assert _records(run2, rel) == want[rel], rel
    assert json.loads((run2 / "monolingual.json").read_text()) == mono

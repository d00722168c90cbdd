"""benchmarks/human_written.py (issue 29 item 1): the target-written zh/ja test prompts against
human-written ones, teacher-forced by the estimate, on the tiny pair and small data files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark
from study_data import write_study_sources
from tiny import make_tokenizer, tiny_config

from specfair.tasks import datasets


@pytest.fixture(scope="module")
def noisy_pair(tmp_path_factory):
    """A tiny pair on disk whose drafter disagrees at some greedy positions (the shared tiny
    pair's tied x20 embeddings make both repeat the last token: greedy alpha 1 everywhere):
    the target with an untied random head, the drafter the target with noise on every weight
    (as tests/measure/conftest.py's ``noisy_pair``)."""
    from transformers import Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("noisy_pair")
    tok = make_tokenizer()
    torch.manual_seed(0)
    cfg = tiny_config(288, 2, 32, tok, context=4096)
    cfg.tie_word_embeddings = False
    target = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        target.lm_head.weight.mul_(5.0)
    drafter = Qwen2ForCausalLM(cfg).eval()
    drafter.load_state_dict(target.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in drafter.parameters():
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=g))
    for name, model in (("target", target), ("drafter", drafter)):
        model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
        model.generation_config.pad_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root / "target", root / "drafter"


def _conv(cid, *turns):
    return {"id": cid, "conversations": [{"from": who, "value": v} for who, v in turns]}


@pytest.fixture
def data(tmp_path, monkeypatch):
    """The study's sources (tests/study_data.py) with a ShareGPT file holding 3 Chinese and 2
    Japanese human turns."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECFAIR_DATA", raising=False)
    write_study_sources(tmp_path / "home" / "data")
    convs = [
        _conv("z1", ("human", "请介绍一下长城的历史。"), ("gpt", "长城是古代的工程。"),
              ("human", "长城有多长？请详细说明。"), ("gpt", "很长。")),
        _conv("z2", ("human", "请用中文写一首关于秋天的短诗。"), ("gpt", "秋天。")),
        _conv("j1", ("human", "日本の首都はどこですか？教えてください。"), ("gpt", "東京です。"),
              ("human", "東京の歴史について詳しく説明してください。"), ("gpt", "はい。")),
        _conv("e1", ("human", "What is a good name for a cat? Tell me why."), ("gpt", "Tom.")),
    ]
    text = json.dumps(convs + [_conv("cut", ("human", "x"))], indent=1, ensure_ascii=False)
    path = tmp_path / "home" / "data" / "sharegpt" / "ShareGPT_V3_unfiltered_cleaned_split.json"
    path.write_text(text[: len(text) - 20], encoding="utf-8")  # truncated like the real file
    datasets.write_manifest(datasets.SOURCES["sharegpt"], pinned=False)
    return tmp_path


def _argv(pair, out, *more):
    return ["--target", str(pair[0]), "--drafter", str(pair[1]), "--out", str(out),
            "--dtype", "float32", "--device", "cpu", "--kernels", "default",
            "--n-target", "3", "--n-human", "5", "--n-math", "3", "--max-new-tokens", "6",
            "--bootstrap", "300", "--cost-ratio", "0.3", "--quiet", "--fill", "mgsm", *more]


def test_the_check_reports_groups_and_contrasts_from_the_estimates_records(
        data, noisy_pair, capsys, one_thread):
    from specfair.study.config import StudyConfig
    from specfair.study.data import test_prompts
    from specfair.tasks.study import load_study_suite

    mod = load_benchmark("human_written")
    out = data / "check"
    assert mod.main(_argv(noisy_pair, out)) == 0
    err = capsys.readouterr().err
    assert "notice: --n-human 5 is below the issue's 40" in err
    res = json.loads((out / "human_written.json").read_text())
    sets = res["sets"]
    # the target-written sets are the study's own test prompts (n_test, seed 0)
    cfg = StudyConfig(tasks=["zh", "ja", "math"], n_test=3)
    study = test_prompts(cfg, load_study_suite(seed=0, tasks=cfg.tasks))
    for task in ("zh", "ja", "math"):
        name = task if task == "math" else f"{task}_target"
        assert [p["id"] for p in sets[name]] == [p.id for p in study if p.task == task]
    assert all(p["source"] == "synthetic" for p in sets["zh_target"] + sets["ja_target"])
    # human-written: ShareGPT's turns first (with their row ids), MGSM fills up to 5
    assert [p["id"] for p in sets["zh_human_sharegpt"]] == [
        "sharegpt_human_zh-z1.0", "sharegpt_human_zh-z1.2", "sharegpt_human_zh-z2.0"]
    assert [p["id"] for p in sets["ja_human_sharegpt"]] == [
        "sharegpt_human_ja-j1.0", "sharegpt_human_ja-j1.2"]
    rows = res["fill_rows"]
    assert rows["source"] == "mgsm"
    assert len(rows["contrast"]) == 3 and rows["human"]["ja"] == rows["contrast"]
    assert len(rows["human"]["zh"]) == 2 and set(rows["human"]["zh"]) < set(rows["contrast"])
    for lang in ("ja", "zh", "en"):  # the same problems in every language, paired by row
        assert [p["id"] for p in sets[f"mgsm_{lang}"]] == [f"mgsm_{lang}-{r}"
                                                           for r in rows["contrast"]]
    assert sets["mgsm_ja"][0]["text"].startswith("アンはペンを")
    groups = res["groups"]
    assert groups["ja: human-written"]["sources"] == {"sharegpt": 2, "mgsm": 3}
    assert groups["zh: human-written"]["sources"] == {"sharegpt": 3, "mgsm": 2}
    assert groups["zh: human-written"]["n_prompts"] == 5
    # every group's point estimate is the estimate records' pooled value
    recs = {}
    for line in (out / "estimate.jsonl").read_text().splitlines():
        r = json.loads(line)
        recs[r["id"]] = r
    # target-written zh and ja, math; ShareGPT zh and ja; MGSM ja, zh, en
    assert len(recs) == sum(len(v) for v in sets.values()) == 3 * 3 + 3 + 2 + 3 * 3
    for name, g in groups.items():
        greedy = sum(recs[i]["greedy_match_sum"] for i in g["ids"])
        alpha = sum(recs[i]["alpha_sum"] for i in g["ids"])
        pos = sum(recs[i]["n_positions"] for i in g["ids"])
        assert g["n_positions"] == pos
        assert g["greedy_alpha"]["mean"] == pytest.approx(greedy / pos), name
        assert g["alpha"]["mean"] == pytest.approx(alpha / pos), name
        assert g["greedy_alpha"]["lo"] <= g["greedy_alpha"]["mean"] <= g["greedy_alpha"]["hi"]
        a = greedy / pos
        assert g["predicted_speedup"]["mean"] == pytest.approx(
            sum(a ** k for k in range(6)) / (5 * 0.3 + 1))
    c = res["contrasts"]
    for lang in ("zh", "ja"):
        d = c[f"{lang}: human − target-written"]
        assert d["terms"] == {f"{lang}: human-written": 1, f"{lang}: target-written": -1}
        assert d["greedy_alpha"]["mean"] == pytest.approx(
            groups[f"{lang}: human-written"]["greedy_alpha"]["mean"]
            - groups[f"{lang}: target-written"]["greedy_alpha"]["mean"])
        assert d["greedy_alpha"]["lo"] <= d["greedy_alpha"]["mean"] <= d["greedy_alpha"]["hi"]
    net = c["ja: human − target-written, net of the math effect in zh"]
    assert net["terms"] == {"MGSM ja": 1, "ja: target-written": -1, "MGSM zh": -1,
                            "zh: human, ShareGPT": 1}
    g = {k: v["greedy_alpha"]["mean"] for k, v in groups.items()}
    assert net["greedy_alpha"]["mean"] == pytest.approx(
        g["MGSM ja"] - g["ja: target-written"] - g["MGSM zh"] + g["zh: human, ShareGPT"])
    assert {"MGSM ja − MGSM en", "MGSM zh − MGSM en", "MGSM en − study math",
            "zh: MGSM − human ShareGPT"} <= set(c)
    table = (out / "human_written.md").read_text()
    assert "| ja: human-written | 5 (sharegpt 2, mgsm 3) |" in table
    assert "| zh: human − target-written |" in table
    summary = json.loads((out / "estimate_summary.json").read_text())
    assert set(summary["tasks"]) == set(sets)


def test_paired_mgsm_rows_are_resampled_together(data, noisy_pair, one_thread):
    """A paired contrast's CI comes from the same resampled rows in both languages: with the
    answers of one language copied to the other the difference is 0 in every resample."""
    mod = load_benchmark("human_written")
    sets = mod.select_sets(3, 5, 3, fill="mgsm")
    recs, answers = {}, {}
    rng = np.random.default_rng(1)
    for p in sets.every():
        n = int(rng.integers(1, 9))
        recs[p.id] = {"greedy_match_sum": float(rng.integers(0, n + 1)),
                      "alpha_sum": float(rng.random() * n), "n_positions": n}
        answers[p.id] = {"response_ids": [0] * n, "stop_reason": "eos"}
    for p in sets.prompts["mgsm_zh"]:  # zh's records = ja's, row by row
        recs[p.id] = recs[p.id.replace("mgsm_zh", "mgsm_ja")]
    groups, contrasts = mod.analyse(sets, recs, answers, c=0.3, gamma=5, n_resamples=200, seed=0)
    d = contrasts["MGSM ja − MGSM zh"]["greedy_alpha"]
    assert d == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    u = contrasts["zh: human − target-written"]["greedy_alpha"]  # unpaired: a real interval
    assert u["lo"] < u["hi"]


def test_a_rerun_redoes_nothing_and_other_settings_are_refused(data, noisy_pair, capsys,
                                                              one_thread):
    mod = load_benchmark("human_written")
    out = data / "check"
    assert mod.main(_argv(noisy_pair, out)) == 0
    first = json.loads((out / "human_written.json").read_text())
    est = (out / "estimate.jsonl").read_text()
    # a run killed during the estimate: its last records lost; the rerun completes them
    lines = est.splitlines(keepends=True)
    (out / "estimate.jsonl").write_text("".join(lines[:7]) + lines[7][:30])
    assert mod.main(_argv(noisy_pair, out)) == 0
    again = json.loads((out / "human_written.json").read_text())
    assert again["groups"] == first["groups"] and again["contrasts"] == first["contrasts"]
    assert len((out / "estimate.jsonl").read_text().splitlines()) == len(lines)
    resp = (out / "responses.jsonl").read_text()
    capsys.readouterr()
    assert mod.main(_argv(noisy_pair, out, "--max-new-tokens", "7")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "max_new_tokens=6" in err[0]
    assert (out / "responses.jsonl").read_text() == resp


@pytest.mark.parametrize("argv, says", [
    (["--n-human", "0"], "--n-human must be >= 1, got 0"),
    (["--gamma", "0"], "--gamma must be >= 1, got 0"),
    (["--bootstrap", "0"], "--bootstrap must be in [1, 100000], got 0"),
    (["--n-target", "x"], "argument --n-target: invalid int value: 'x'"),
    (["--n-target", "1000"], "--n-target 1000: the study's zh task has"),
])
def test_bad_arguments_are_one_error_line_and_exit_2(data, noisy_pair, capsys, argv, says):
    mod = load_benchmark("human_written")
    out = data / "bad"
    try:
        code = mod.main(_argv(noisy_pair, out, *argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not out.exists()


def test_data_not_fetched_is_one_error_line(data, noisy_pair, capsys):
    import shutil

    shutil.rmtree(data / "home" / "data" / "mgsm")
    mod = load_benchmark("human_written")
    assert mod.main(_argv(noisy_pair, data / "bad")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data source 'mgsm' is not fetched" in err[0], err
    assert not (data / "bad").exists()


def test_a_measured_cost_ratio_is_kept_for_the_rerun(data, noisy_pair, one_thread):
    mod = load_benchmark("human_written")
    out = data / "check"
    argv = _argv(noisy_pair, out)
    i = argv.index("--cost-ratio")
    argv = argv[:i] + argv[i + 2:]
    assert mod.main(argv) == 0
    first = json.loads((out / "human_written.json").read_text())
    assert first["meta"]["c_source"].startswith("measured") and first["meta"]["c"] > 0
    assert mod.main(argv) == 0
    again = json.loads((out / "human_written.json").read_text())
    assert again["meta"]["c"] == first["meta"]["c"]
    assert again["contrasts"] == first["contrasts"]


FAQ_TOC = {
    "en": ["What is Debian?", "How do I install it from a CD-ROM?",
           "Why are stable packages so old? Look at the kernel.", "How can I keep it current?",
           "What other documentation exists?", "Where do I report a bug?"],
    "ja": ["Debian とは何?", "CD-ROM から Debian をどうやってインストールしますか?",
           "安定版のパッケージはなぜ古いのですか? カーネルを見てください。",
           "Debian システムを現行版に維持する方法は?", "他にどんな文書がありますか?",
           "バグはどこに報告しますか?"],
    "zh-cn": ["什么是 Debian？", "如何从 CD-ROM 安装 Debian？", "stable 版本的软件包为什么很旧？",
              "如何使 Debian 系统保持最新？", "还能获得哪些文档？", "我应该在哪里报告错误？"],
}


def _write_faq(home):
    import gzip

    for lang, questions in FAQ_TOC.items():
        lines = ["The Debian FAQ", "", "1. Overview"]
        lines += [f"    1.{i + 1}. {q}" for i, q in enumerate(questions)]
        lines += ["", "1.1. " + questions[0], "", "    The body."]
        path = home / "data" / "debian_faq" / f"debian-faq.{lang}.txt.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress("\n".join(lines).encode()))
    datasets.write_manifest(datasets.SOURCES["debian_faq"], pinned=False)


def test_the_debian_faq_fills_the_human_sets_paired_by_section(data, noisy_pair, capsys,
                                                               one_thread):
    import shutil

    _write_faq(data / "home")
    for name in ("mgsm", "gsm8k", "hsk"):  # --fill faq reads ShareGPT and the FAQ only
        shutil.rmtree(data / "home" / "data" / name)
    mod = load_benchmark("human_written")
    out = data / "faq"
    argv = _argv(noisy_pair, out)
    argv = argv[: argv.index("--fill")]  # the default: --fill faq
    assert mod.main(argv) == 0
    res = json.loads((out / "human_written.json").read_text())
    sets, rows = res["sets"], res["fill_rows"]
    assert rows["source"] == "faq" and len(rows["contrast"]) == 3 == len(rows["human"]["ja"])
    assert len(rows["human"]["zh"]) == 2 and "math" not in sets
    assert not any(k.startswith("mgsm") for k in sets)
    for lang in ("ja", "zh", "en"):  # the same sections in every language
        assert [p["id"] for p in sets[f"faq_{lang}"]] == [f"debian_faq_{lang}-{r}"
                                                          for r in rows["contrast"]]
        assert {p["split_group"] for p in sets[f"faq_{lang}"]} == {
            f"debian faq {r}" for r in rows["contrast"]}
    i = int(rows["contrast"][0].split(".")[1]) - 1
    assert sets["faq_ja"][0]["text"] == FAQ_TOC["ja"][i]
    groups, c = res["groups"], res["contrasts"]
    assert groups["ja: human-written"]["sources"] == {"sharegpt": 2, "debian_faq": 3}
    assert {"FAQ ja − FAQ en", "FAQ zh − FAQ en", "FAQ ja − FAQ zh", "zh: FAQ − human ShareGPT",
            "ja: human FAQ − target-written",
            "ja: human − target-written, net of the FAQ effect in zh"} <= set(c)
    assert not any("MGSM" in k or "math" in k for k in c)
    assert res["meta"]["settings"]["n_math"] is None
    assert "Debian FAQ" in (out / "human_written.md").read_text()

import io
import json

import pytest
from rich.console import Console

from specfair.errors import SpecfairError
from specfair.measure.bench import run_bench, split_turns
from specfair.measure.bench_summary import summarize_bench
from specfair.measure.estimate import run_estimate
from specfair.measure.estimate_summary import compare_estimate_to_bench, summarize_estimate
from specfair.measure.io import read_json, read_jsonl, write_json
from specfair.measure.tables import print_bench_table, print_estimate_table
from specfair.tasks import Prompt

CONTRACT = {
    "id",
    "task",
    "mode",
    "drafter",
    "gamma",
    "new_tokens",
    "wall_s",
    "prefill_s",
    "tokens_per_s",
    "drafted",
    "accepted",
    "accepted_lengths",
    "stop_reason",
    "tokens",
}
KW = dict(gamma=3, max_new_tokens=8, drafter_label="tiny-d", progress=False)


def keys(path):
    return [(r["id"], r["mode"]) for r in read_jsonl(path)]


def test_bench_writes_expected_records(tiny_models, tiny_prompts, tmp_path):
    path = run_bench(tiny_models, tiny_prompts, tmp_path, **KW)
    recs = read_jsonl(path)
    assert keys(path) == [(p.id, m) for p in tiny_prompts for m in ("ar", "sd")]
    for r in recs:
        assert CONTRACT <= set(r)
        assert r["drafter"] == "tiny-d" and r["gamma"] == 3
        assert r["new_tokens"] == len(r["tokens"]) == sum(r["turn_lengths"])
        assert r["tokens_per_s"] == pytest.approx(r["new_tokens"] / r["wall_s"])
        assert 0 < r["prefill_s"] <= r["wall_s"]
        assert r["stop_reason"] in ("eos", "max_tokens")
        if r["mode"] == "ar":
            assert r["drafted"] == r["accepted"] == 0 and r["accepted_lengths"] == []
        else:
            assert 0 <= r["accepted"] <= r["drafted"]
            assert all(1 <= n <= 4 for n in r["accepted_lengths"])
            assert r["matches_ar"] is True  # greedy SD is lossless
    w_ar = recs[4]
    assert w_ar["turns"] == 2 and len(split_turns(w_ar)) == 2
    assert all(n <= 8 for n in w_ar["turn_lengths"])


def test_resume_after_a_crash_mid_line(tiny_models, tiny_prompts, tmp_path, capsys):
    path = run_bench(tiny_models, tiny_prompts[:2], tmp_path, **KW)
    full = path.read_bytes()
    lines = full.splitlines(keepends=True)
    assert len(lines) == 4
    # simulate a crash while writing the 4th record: half of its line, no newline
    path.write_bytes(b"".join(lines[:3]) + lines[3][: len(lines[3]) // 2])
    run_bench(tiny_models, tiny_prompts, tmp_path, **KW)
    assert "notice: " in capsys.readouterr().err
    got = keys(path)
    assert got == [
        ("c1", "ar"),
        ("c1", "sd"),
        ("m1", "ar"),
        ("m1", "sd"),
        ("w1", "ar"),
        ("w1", "sd"),
    ]
    assert len(set(got)) == len(got)
    recs = read_jsonl(path)
    assert [json.dumps(r, sort_keys=True) for r in recs[:3]] == [
        json.dumps(json.loads(x), sort_keys=True) for x in lines[:3]
    ]
    before = path.read_bytes()
    run_bench(tiny_models, tiny_prompts, tmp_path, **KW)  # nothing left to do
    assert path.read_bytes() == before
    with pytest.raises(SpecfairError, match="gamma"):
        run_bench(tiny_models, tiny_prompts, tmp_path, **{**KW, "gamma": 4})


def test_summary_fields_and_table(tiny_models, tiny_prompts, tmp_path):
    path = run_bench(tiny_models, tiny_prompts, tmp_path, **KW)
    s = summarize_bench(path)
    assert s["meta"]["n_prompts"] == 3 and s["meta"]["gamma"] == 3
    assert list(s["tasks"]) == ["code", "math", "writing"]
    for block in [*s["tasks"].values(), s["overall"]]:
        assert {"n", "ar_tps", "sd_tps", "speedup", "speedup_tokw", "alpha", "tau"} <= set(block)
        for k in ("speedup", "speedup_tokw", "alpha", "tau"):
            assert set(block[k]) == {"mean", "lo", "hi"}
    assert s["overall"]["n"] == 3
    recs = read_jsonl(path)
    ar = [r["tokens_per_s"] for r in recs if r["mode"] == "ar"]
    sd = [r["tokens_per_s"] for r in recs if r["mode"] == "sd"]
    assert s["overall"]["speedup"]["mean"] == pytest.approx(sum(sd) / sum(ar))
    assert {"worst_task", "worst_speedup", "max_min_ratio", "cv", "gini"} <= set(s["disparity"])
    assert s["disparity"]["worst_task"] in s["tasks"]
    json.dumps(s, allow_nan=True)
    out = io.StringIO()
    print_bench_table(s, console=Console(file=out, width=160))
    assert "overall" in out.getvalue() and "worst task" in out.getvalue()
    # a summary read back from strict JSON (nan -> null) prints too
    write_json(tmp_path / "s.json", s)
    print_bench_table(read_json(tmp_path / "s.json"), console=Console(file=io.StringIO()))


def test_estimate_vs_bench_on_a_disagreeing_pair(tiny_models, noisy_pair, tmp_path):
    tok = tiny_models[2]
    prompts = [
        Prompt(id=f"p{i}", task=t, turns=(f"question {i}: {t}?",))
        for i, t in enumerate(["a", "a", "b", "b"])
    ]
    target, drafter = noisy_pair
    bpath = run_bench(
        (target, drafter, tok),
        prompts,
        tmp_path,
        gamma=3,
        max_new_tokens=16,
        drafter_label="noisy",
        progress=False,
    )
    bench = summarize_bench(bpath)
    assert 0 < bench["overall"]["alpha"]["mean"] < 1
    assert all(r.get("matches_ar") in (None, True) for r in read_jsonl(bpath))
    epath = run_estimate(
        target,
        drafter,
        tok,
        prompts,
        tmp_path,
        drafter_label="noisy",
        max_new_tokens=16,
        gamma=3,
        progress=False,
    )
    # the greedy bench's AR answers were reused as the teacher-forcing responses
    cache = read_jsonl(tmp_path / "responses.jsonl")
    assert {r["source"] for r in cache} == {"bench"}
    resp = {r["id"]: r["response_ids"] for r in cache}
    for r in read_jsonl(bpath):
        assert r["tokens"] == resp[r["id"]]
    est = summarize_estimate(epath, c=0.5, gamma=3)
    rows = compare_estimate_to_bench(est, bench)
    assert [r["task"] for r in rows] == ["a", "b"]
    for r in rows:
        assert isinstance(r["within_ci"], bool)
        assert {
            "estimated_alpha",
            "measured_alpha",
            "lo",
            "hi",
            "predicted_tau",
            "measured_tau",
            "predicted_speedup",
            "measured_speedup",
        } <= set(r)
        assert 0 <= r["estimated_alpha"] <= 1
    out = io.StringIO()
    print_estimate_table(est, console=Console(file=out, width=160), comparison=rows)
    assert "CE spread" in out.getvalue()

import json

import pytest

from specfair.errors import SpecfairError
from specfair.measure.commands import (
    bench_command,
    check_drafting,
    estimate_command,
    generate_command,
)
from specfair.measure.io import read_jsonl


def test_commands_end_to_end(tiny_pair, tmp_path, capsys):
    t_dir, d_dir = tiny_pair
    kw = dict(
        split="test",
        n_per_task=1,
        gamma=2,
        max_new_tokens=4,
        dtype="float32",
        device="cpu",
        progress=False,
    )
    s = bench_command(str(t_dir), str(d_dir), "default", tmp_path, **kw)
    saved = json.loads((tmp_path / "bench_summary.json").read_text())
    assert saved["meta"]["n_prompts"] == s["meta"]["n_prompts"] == len(s["tasks"]) > 1
    assert saved["meta"]["suite"] == "default"
    e = estimate_command(str(t_dir), str(d_dir), "default", tmp_path, **kw)
    saved = json.loads((tmp_path / "estimate_summary.json").read_text())
    assert saved["meta"]["c"] == pytest.approx(e["meta"]["c"]) and e["meta"]["c"] > 0
    assert set(saved["tasks"]) == set(s["tasks"])
    assert "ce_spread" in saved["disparity"]
    assert len(read_jsonl(tmp_path / "estimate.jsonl")) == len(s["tasks"])
    out = capsys.readouterr().out
    assert "worst task" in out and "within CI" in out


def test_estimate_policy_table_drives_bench_and_settings_are_checked(tiny_pair, tmp_path,
                                                                     capsys):
    """estimate --split train writes policy.json; bench --split test --policy table:... uses
    its γ per task (records carry the spec and the table); a rerun with another policy or
    proposer in the same directory is refused before any model loads."""
    t_dir, d_dir = tiny_pair
    kw = dict(n_per_task=1, max_new_tokens=4, dtype="float32", device="cpu", progress=False)
    estimate_command(str(t_dir), str(d_dir), "default", tmp_path / "est", split="train", **kw)
    table = json.loads((tmp_path / "est" / "policy.json").read_text())
    assert table["format"] == "specfair-policy" and table["split"] == "train"
    est = json.loads((tmp_path / "est" / "estimate_summary.json").read_text())
    assert set(table["gamma"]) == set(est["tasks"])
    for task, g in table["gamma"].items():
        pred = {int(k): v["speedup"] for k, v in est["tasks"][task]["predicted"].items()}
        assert pred[g] == max(pred.values())
    spec = f"table:{tmp_path / 'est' / 'policy.json'}"
    out = tmp_path / "bench"
    s = bench_command(str(t_dir), str(d_dir), "default", out, policy=spec, proposer="hybrid", **kw)
    assert s["meta"]["policy"] == spec and s["meta"]["proposer"] == "hybrid"
    assert "in-sample" not in capsys.readouterr().err  # chosen on train, benchmarked on test
    for r in read_jsonl(out / "bench.jsonl"):
        assert r["settings"]["policy"] == spec and r["proposer"] == "hybrid"
        assert r["settings"]["policy_table"]["gamma"] == table["gamma"]
        if r["mode"] == "sd":
            assert r["matches_ar"] is True
            assert set(r["by_proposer"]) <= {"ngram", "model"}
            for s_len in r["accepted_lengths"]:
                assert s_len <= table["gamma"].get(r["task"], table["global_gamma"]) + 1
    in_sample = tmp_path / "in_sample.json"  # a table chosen on the test split: a notice
    in_sample.write_text(json.dumps({**table, "split": "test"}))
    with pytest.raises(SpecfairError, match="existing file"):
        bench_command(str(t_dir), str(d_dir), "default", in_sample, policy=f"table:{in_sample}",
                      **kw)  # fmt: skip
    assert "in-sample" in capsys.readouterr().err
    for other in (dict(policy="heuristic"), dict(policy=None, gamma=3), dict(proposer="ngram")):
        with pytest.raises(SpecfairError, match="was written with"):
            bench_command(str(t_dir), str(d_dir), "default", out,
                          **{"policy": spec, "proposer": "hybrid", **other, **kw})


def test_ngram_bench_and_generate_load_no_drafter(tiny_pair, tmp_path, capsys):
    t_dir, _ = tiny_pair
    kw = dict(max_new_tokens=6, dtype="float32", device="cpu")
    s = bench_command(str(t_dir), "/nonexistent/drafter", "default", tmp_path, n_per_task=1,
                      proposer="ngram", policy="confidence:0.5", progress=False, **kw)
    assert s["meta"]["drafter"] == "none" and s["meta"]["proposer"] == "ngram"
    sd = [r for r in read_jsonl(tmp_path / "bench.jsonl") if r["mode"] == "sd"]
    assert all(r["matches_ar"] for r in sd)
    assert all(set(r.get("by_proposer", {})) <= {"ngram"} for r in sd)
    printed = capsys.readouterr().out
    assert "policy confidence:0.5, proposer ngram" in " ".join(printed.split())
    if s["overall"]["by_proposer"]:  # the table shows the n-gram share
        assert s["overall"]["by_proposer"]["ngram"]["share"] == 1.0
        assert "n-gram" in printed
    res = generate_command(str(t_dir), "abcabcabc", drafter="/nonexistent", proposer="ngram",
                           gamma=3, **kw)  # fmt: skip
    assert len(res.tokens) == 6 and all(0 < s.drafted <= 3 for s in res.steps if s.drafted)
    captured = capsys.readouterr()
    assert res.text in captured.out and "[fixed:3, ngram] 6 tokens" in captured.err


def test_check_drafting_engines_run_their_own_drafting_only():
    assert check_drafting(None, 5, "ngram", "llamacpp").spec == "fixed:5"
    assert check_drafting("fixed:4", None, "model", "vllm").gamma == 4
    assert check_drafting("heuristic", None, "hybrid", "hf").kind == "heuristic"
    for args, said in [(("fixed:4", None, "hybrid", "llamacpp"), "model or ngram only"),
                       (("heuristic", None, "ngram", "llamacpp"), "fixed:N"),
                       (("fixed:2", None, "ngram", "llamacpp"), "--gamma >= 3"),
                       (("fixed:4", None, "ngram", "vllm"), "--proposer model only")]:
        with pytest.raises(SpecfairError, match=said):
            check_drafting(*args)

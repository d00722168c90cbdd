"""benchmarks/engine.py's drafting variants (``--variants POLICY[+PROPOSER]``): the parser,
the per-task table, and one run end to end on the tiny pair (no timing is checked)."""

import json

import pytest
from benchmark_scripts import load_benchmark

from specfair.decoding.policy import policy_table
from specfair.errors import SpecfairError


@pytest.fixture(scope="module")
def engine():
    return load_benchmark("engine")


def test_parse_variants(engine):
    got = engine.parse_variants(["adaptive", "fixed:5+ngram", "heuristic+hybrid",
                                 "fixed:2+hybrid:10"])
    assert [(label, proposer) for label, _, proposer in got] == [
        ("adaptive+model", "model"), ("fixed:5+ngram", "ngram"), ("heuristic+hybrid", "hybrid"),
        ("fixed:2+hybrid:10", "hybrid:10")]
    with pytest.raises(SpecfairError, match="proposer must be one of"):
        engine.parse_variants(["fixed:5+lookup"])
    with pytest.raises(SpecfairError, match="expected fixed:N"):
        engine.parse_variants(["greedy"])
    with pytest.raises(SpecfairError, match="the same variant twice"):
        engine.parse_variants(["fixed:5", "fixed:5+model"])


def test_variant_speedups_per_task_and_overall(engine):
    recs = [{"task": "a", "variants": {"v": {"speedup": 1.0}}},
            {"task": "a", "variants": {"v": {"speedup": 2.0}}},
            {"task": "b", "variants": {"v": {"speedup": 4.0}, "w": {"speedup": None}}}]
    assert engine.variant_speedups(recs) == {"v": {"a": 1.5, "b": 4.0, "overall": 7 / 3}}


def test_engine_runs_variants_end_to_end(engine, tiny_pair, tmp_path, one_thread, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))  # adaptive's cached curve
    t_dir, d_dir = tiny_pair
    table = tmp_path / "policy.json"
    table.write_text(json.dumps(policy_table({"code": 2}, 3, split="train")))
    out = tmp_path / "engine.json"
    argv = ["--target", str(t_dir), "--drafter", str(d_dir), "--dtype", "float32",
            "--device", "cpu", "--kernels", "default", "--limit", "3", "--max-new-tokens", "8",
            "--no-hf", "--conf-gamma", "0", "--out", str(out),
            "--variants", "fixed:2+ngram", "adaptive+hybrid:6", f"table:{table}"]
    assert engine.main(argv) == 0
    doc = json.loads(out.read_text())
    labels = ["fixed:2+ngram", "adaptive+hybrid:6", f"table:{table}+model"]
    assert doc["meta"]["variants"] == labels
    for rec in doc["prompts"]:
        assert list(rec["variants"]) == labels
        for v in rec["variants"].values():
            assert v["match_ar"] == 1.0 and v["tokens"] == rec["ar"]["tokens"]
        assert set(rec["variants"]["fixed:2+ngram"]["by_proposer"]) <= {"ngram"}
    assert engine.main(argv[:-3] + ["nope"]) == 2


def test_against_hf_is_a_paired_ratio_with_the_worst_task(engine):
    recs = [{"task": t, "speedup": s, "sd": {"tps": sd}, "hf_sd": {"tps": hf},
             "variants": {"v": {"tps": v, "speedup": vs}}}
            for t, s, sd, hf, v, vs in [("a", 1.5, 3.0, 2.0, 4.0, 2.0),
                                        ("a", 1.5, 3.0, 2.0, 4.0, 2.0),
                                        ("b", 0.8, 1.0, 2.0, 2.0, 1.2)]]
    got = engine.against_hf(recs, n_boot=200)
    assert got["sd"]["vs_hf"] == pytest.approx((1.5 * 1.5 * 0.5) ** (1 / 3))
    assert got["sd"]["worst_task"] == "b" and got["sd"]["worst_speedup"] == 0.8
    assert got["v"]["vs_hf"] == pytest.approx(2.0 ** (2 / 3))
    assert got["v"]["worst_task"] == "b" and got["v"]["worst_speedup"] == 1.2
    lo, hi = got["v"]["ci"]
    assert lo <= got["v"]["vs_hf"] <= hi


def test_engine_takes_a_suites_prompts(engine, tiny_pair, tmp_path, one_thread, capsys):
    t_dir, d_dir = tiny_pair
    out = tmp_path / "engine.json"
    argv = ["--target", str(t_dir), "--drafter", str(d_dir), "--dtype", "float32",
            "--device", "cpu", "--kernels", "default", "--suite", "default", "--n-per-task", "1",
            "--limit", "2", "--max-new-tokens", "4", "--no-hf", "--conf-gamma", "0",
            "--out", str(out)]
    assert engine.main(argv) == 0
    doc = json.loads(out.read_text())
    from specfair.tasks import load_suite, sample_per_task

    want = [p.id for p in sample_per_task(load_suite("default").prompts("test"), 1, seed=0)][:2]
    assert [r["id"] for r in doc["prompts"]] == want
    assert doc["meta"]["suite"] == "default" and doc["meta"]["cpu"]
    # a killed run resumes from its partial records: the finished prompts are not rerun
    partial = out.with_suffix(".partial.jsonl")
    head, first = map(json.loads, partial.read_text().splitlines()[:2])
    assert head["settings"]["max_new_tokens"] == 4  # the first line: what a resume must share
    first["ar"]["tps"] = 123.0  # marked: a rerun would measure it again
    partial.write_text(json.dumps(head) + "\n" + json.dumps(first) + "\n")
    assert engine.main(argv) == 0
    doc = json.loads(out.read_text())
    assert [r["id"] for r in doc["prompts"]] == want
    assert doc["prompts"][0]["ar"]["tps"] == 123.0 and doc["prompts"][1]["ar"]["tps"] != 123.0
    # a resume with other settings is refused before anything is written
    partial.write_text(json.dumps(head) + "\n" + json.dumps(first) + "\n")
    kept = partial.read_text()
    other = [("8" if a == "4" else a) for a in argv]  # --max-new-tokens 8
    assert engine.main(other) == 2
    assert partial.read_text() == kept
    err = capsys.readouterr().err
    assert err.startswith("error:") and "max_new_tokens" in err


def test_task_speedup_cis_give_each_task_and_the_max_min_ratio(engine):
    recs = [{"task": t, "speedup": s, "variants": {"v": {"speedup": s * 2}}}
            for t, s in [("a", 1.0), ("a", 1.2), ("b", 2.0), ("b", 2.4), ("c", 1.5)]]
    got = engine.task_speedup_cis(recs, n_boot=300)
    sd = got["sd"]
    assert sd["tasks"]["a"]["mean"] == pytest.approx(1.1) and sd["tasks"]["c"]["n"] == 1
    lo, hi = sd["tasks"]["a"]["ci"]
    assert 1.0 <= lo <= 1.1 <= hi <= 1.2
    assert sd["max_min"] == pytest.approx(2.2 / 1.1) and (sd["best"], sd["worst"]) == ("b", "a")
    assert sd["max_min_ci"][0] <= sd["max_min"] <= sd["max_min_ci"][1]
    assert got["v"]["max_min"] == pytest.approx(sd["max_min"])  # a scale-free ratio
    assert "hf_sd" not in got  # HF did not run
    for r in recs:
        r |= {"ar": {"tps": 2.0}, "hf_sd": {"tps": 2.0 * r["speedup"] * 1.5}}
    hf = engine.task_speedup_cis(recs, n_boot=300)["hf_sd"]
    assert hf["tasks"]["a"]["mean"] == pytest.approx(1.65) and hf["worst"] == "a"


def test_router_accuracy_runs_on_a_tiny_drafter(tiny_pair, tmp_path, one_thread):
    mod = load_benchmark("router_accuracy")
    out = tmp_path / "router.json"
    assert mod.main(["--drafter", str(tiny_pair[1]), "--n-per-task", "3", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["n"] == sum(d["n"] for d in doc["tasks"].values()) > 0
    assert 0.0 <= doc["accuracy"] <= 1.0 and doc["train_accuracy"] > 0.5
    assert mod.main(["--drafter", str(tmp_path / "nope")]) == 2


def test_suite_prompts_go_round_robin_over_the_tasks(engine):
    """A run stopped early (or resumed over several sessions) holds every task as far as it
    went: the first prompt of each task, then the second of each..."""
    import types

    args = types.SimpleNamespace(suite="default", split="test", n_per_task=2, data_root=None,
                                 tasks=None)
    chosen = engine.prompts_of(args)
    tasks = list(dict.fromkeys(t for _, t, _ in chosen))
    assert len(tasks) > 1
    assert [t for _, t, _ in chosen[: len(tasks)]] == tasks
    assert [t for _, t, _ in chosen[len(tasks): 2 * len(tasks)]] == tasks
    assert len({pid for pid, _, _ in chosen}) == len(chosen)

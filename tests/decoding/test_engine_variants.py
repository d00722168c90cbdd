"""benchmarks/engine.py's drafting variants (``--variants POLICY[+PROPOSER]``): the parser,
the per-task table, and one run end to end on the tiny pair (no timing is checked)."""

import importlib.util
import json
from pathlib import Path

import pytest

from specfair.decoding.policy import policy_table
from specfair.errors import SpecfairError

ENGINE = Path(__file__).parents[2] / "benchmarks" / "engine.py"


@pytest.fixture(scope="module")
def engine():
    spec = importlib.util.spec_from_file_location("engine_benchmark", ENGINE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parse_variants(engine):
    got = engine.parse_variants(["adaptive", "fixed:5+ngram", "heuristic+hybrid"])
    assert [(label, proposer) for label, _, proposer in got] == [
        ("adaptive+model", "model"), ("fixed:5+ngram", "ngram"), ("heuristic+hybrid", "hybrid")]
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


def test_engine_runs_variants_end_to_end(engine, tiny_pair, tmp_path, one_thread):
    t_dir, d_dir = tiny_pair
    table = tmp_path / "policy.json"
    table.write_text(json.dumps(policy_table({"code": 2}, 3, split="train")))
    out = tmp_path / "engine.json"
    argv = ["--target", str(t_dir), "--drafter", str(d_dir), "--dtype", "float32",
            "--device", "cpu", "--kernels", "default", "--limit", "3", "--max-new-tokens", "8",
            "--no-hf", "--conf-gamma", "0", "--out", str(out),
            "--variants", "fixed:2+ngram", "adaptive+hybrid", f"table:{table}"]
    assert engine.main(argv) == 0
    doc = json.loads(out.read_text())
    labels = ["fixed:2+ngram", "adaptive+hybrid", f"table:{table}+model"]
    assert doc["meta"]["variants"] == labels
    for rec in doc["prompts"]:
        assert list(rec["variants"]) == labels
        for v in rec["variants"].values():
            assert v["match_ar"] == 1.0 and v["tokens"] == rec["ar"]["tokens"]
        assert set(rec["variants"]["fixed:2+ngram"]["by_proposer"]) <= {"ngram"}
    assert engine.main(argv[:-3] + ["nope"]) == 2

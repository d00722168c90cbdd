"""benchmarks/llamacpp_per_task.py: the engine's costs and the summary on synthetic records
(no llama.cpp), and the runs' orchestration against the fake llama-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark
from conftest import alive, started_pids

from specfair.errors import SpecfairError
from specfair.measure.io import append_jsonl
from specfair.measure.replay import break_even_alpha
from specfair.study.config import StudyConfig
from specfair.tasks import Prompt

C, SLOPE, STEP = 0.4, 0.3, 0.05  # the synthetic engine: drafter/target step, verify slope, s


@pytest.fixture(scope="module")
def mod():
    return load_benchmark("llamacpp_per_task")


def _rec(pid, task, mode, gen_s, *, tokens=33, lengths=(), drafter="base"):
    """A bench record of ``tokens`` new tokens generated in ``gen_s`` s after a 0.2 s prompt;
    an SD record's steps accepted ``lengths`` - 1 drafts of 5 each."""
    acc = sum(n - 1 for n in lengths)
    return {"id": pid, "task": task, "mode": mode, "drafter": drafter, "gamma": 5,
            "new_tokens": tokens, "wall_s": gen_s + 0.2, "prefill_s": 0.2,
            "turn_lengths": [tokens], "tokens": list(range(tokens)),
            "drafted": 5 * len(lengths), "accepted": acc,
            "rejections": sum(n < 6 for n in lengths), "accepted_lengths": list(lengths),
            "matches_ar": True if mode == "sd" else None}


def _sd(pid, task, lengths, drafter):
    """An SD record whose time is what the synthetic engine's cost model says."""
    steps, drafted = len(lengths), 5 * len(lengths)
    return _rec(pid, task, "sd", STEP * (steps + (C + SLOPE) * drafted), lengths=lengths,
                drafter=drafter)


def _write_run(out: Path) -> None:
    """Two tasks of two prompts, 33 tokens each; the fine-tuned drafter accepts more on a."""
    base = {"a": [3] * 8 + [4] * 2, "b": [2] * 16}  # accepted lengths (drafts + 1) of the steps
    tuned = {"a": [4] * 8, "b": [2] * 16}
    for task in "ab":
        for i in range(2):
            pid = f"{task}{i}"
            ar = _rec(pid, task, "ar", STEP * 32)
            append_jsonl(out / "base" / "bench.jsonl", ar)
            append_jsonl(out / "base" / "bench.jsonl", _sd(pid, task, base[task], "base"))
            append_jsonl(out / "uniform" / "bench.jsonl", ar | {"drafter": "uniform"})
            append_jsonl(out / "uniform" / "bench.jsonl", _sd(pid, task, tuned[task], "uniform"))
            append_jsonl(out / "drafter_alone.jsonl", _rec(pid, task, "ar", C * STEP * 32))


def test_engine_costs_recover_the_cost_ratio_and_the_verify_slope(mod):
    ar = [_rec("p", "a", "ar", STEP * 32)]
    alone = [_rec("p", "a", "ar", C * STEP * 32)]
    sd = [_sd("p", "a", [3] * 8 + [4] * 2, "base"), _sd("p", "a", [2] * 16, "x")]
    got = mod.engine_costs(ar, alone, sd, 5, {"n_resamples": 50})
    assert got["c"]["mean"] == pytest.approx(C) and got["verify_slope"] == pytest.approx(SLOPE)
    assert got["target_step_ms"] == pytest.approx(1e3 * STEP)
    assert got["verify_cost"] == pytest.approx(1 + 5 * SLOPE)
    assert got["break_even_alpha"] == pytest.approx(break_even_alpha(5, C, SLOPE))
    assert mod.engine_costs([], [], [], 5, {})["break_even_alpha"] is None


def test_summary_and_table_on_synthetic_records(mod, tmp_path):
    _write_run(tmp_path)
    s = mod.summarize(tmp_path, ["base", "uniform"], 5, {"n_resamples": 200, "seed": 0})
    assert list(s["tasks"]) == ["a", "b"]
    a = s["tasks"]["a"]
    assert a["n"] == 2 and a["c"]["mean"] == pytest.approx(C)
    assert a["verify_slope"] == pytest.approx(SLOPE)
    assert a["break_even_alpha"] == pytest.approx(break_even_alpha(5, C, SLOPE))
    assert a["ar_tps"] == pytest.approx(33 / (STEP * 32 + 0.2))
    b, u = a["drafters"]["base"], a["drafters"]["uniform"]
    assert b["alpha"]["mean"] == pytest.approx(22 / 50)
    assert b["alpha_per_position"]["mean"] == pytest.approx(22 / 32)
    assert b["vs_base"] is None and u["vs_base"]["mean"] == pytest.approx(
        u["sd_tps"] / b["sd_tps"])
    assert u["speedup"]["mean"] == pytest.approx(u["sd_tps"] / a["ar_tps"])
    assert s["tasks"]["b"]["drafters"]["uniform"]["vs_base"]["mean"] == pytest.approx(1)
    assert s["overall"]["n"] == 4 and s["overall"]["c"]["mean"] == pytest.approx(C)
    assert (tmp_path / "uniform" / "bench_summary.json").is_file()
    doc = {"run": "RUN", "gamma": 5, "max_new_tokens": 32, "outtype": "q8_0", "target": "T",
           "threads": 2, "machines": [{"cpu": "Some CPU (native bf16)"}], **s}
    md = mod.table(doc)
    assert "Some CPU (native bf16)" in md and "| **overall** | 4 |" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(rows) == 6 and all(ln.count("|") == 14 for ln in rows)
    assert rows[0].startswith(f"| a | 2 | {a['ar_tps']:.1f} | 0.400 [")
    assert f"| {a['break_even_alpha']:.2f} | base |" in rows[0]


def test_runs_with_the_fake_server_share_the_ar_runs_and_resume(mod, fake_server, tmp_path,
                                                                 tiny_pair, monkeypatch):
    from tiny import write_tiny_gguf

    from specfair.backends import llama_server

    monkeypatch.setenv("FAKE_FLAGS", "new")
    llama_server.server_help.cache_clear()
    g = tmp_path
    t, d = write_tiny_gguf(tiny_pair[0], g / "t.gguf"), write_tiny_gguf(tiny_pair[1], g / "d.gguf")
    cfg = StudyConfig(name="tiny", target=str(tiny_pair[0]), drafter=str(tiny_pair[1]),
                      tasks=["chat", "code"], test_response_tokens=9, gamma=4)
    prompts = [Prompt(id=f"{task}{i}", task=task, turns=(f"hello {i}",), reference=None,
                      source="test") for task in ("chat", "code") for i in range(2)]
    ggufs = {"base": d, "uniform": d, "per-task": {"chat": d, "code": d}}
    out = tmp_path / "out"
    kw = dict(target=str(t), binary=str(fake_server), threads=1)
    mod.run_all(prompts, cfg, ggufs, out, {"study": "tiny"}, **kw)
    pids = started_pids(tmp_path)
    # AR + SD base, the drafter alone, uniform's SD, per-task's SD once per task
    assert len(pids) == 6 and not any(alive(p) for p in pids)
    recs = {n: [json.loads(x) for x in (out / n / "bench.jsonl").read_text().splitlines()]
            for n in ggufs}
    for n, rs in recs.items():
        assert sorted((r["id"], r["mode"]) for r in rs) == sorted(
            (p.id, m) for p in prompts for m in ("ar", "sd"))
        assert {r["drafter"] for r in rs} == {"base" if n == "base" else f"drafters/{n}"}
    ar = {r["id"]: r["time"] for r in recs["base"] if r["mode"] == "ar"}
    assert all(r["time"] == ar[r["id"]] for n in ("uniform", "per-task")
               for r in recs[n] if r["mode"] == "ar")  # the base run's AR records, shared
    assert {r["settings"].get("routing") for r in recs["per-task"] if r["mode"] == "sd"} == {
        "oracle"}
    alone = [json.loads(x) for x in (out / "drafter_alone.jsonl").read_text().splitlines()]
    assert [r["id"] for r in alone] == [p.id for p in prompts] and alone[0]["model"] == "d.gguf"
    machines = [json.loads(x) for x in (out / "machines.jsonl").read_text().splitlines()]
    assert len(machines) == 1 and machines[0]["cpu"] and machines[0]["engine"]["backend"]
    mod.run_all(prompts, cfg, ggufs, out, {"study": "tiny"}, **kw)  # all there: no server
    assert len(started_pids(tmp_path)) == 6
    s = mod.summarize(out, list(ggufs), 4, {"n_resamples": 50})
    assert s["overall"]["n"] == 4 and s["tasks"]["code"]["drafters"]["per-task"]["n"] == 2


def test_an_output_directory_serves_one_run(mod, tmp_path):
    mod.check_one_run(tmp_path / "out", tmp_path / "run1")
    mod.check_one_run(tmp_path / "out", tmp_path / "run1")
    with pytest.raises(SpecfairError, match="holds the drafters of .*run1"):
        mod.check_one_run(tmp_path / "out", tmp_path / "run2")
    assert mod.main([str(tmp_path / "run2"), "--out", str(tmp_path / "out")]) == 2

import base64
import json
import re

import numpy as np
import pytest
from synth_run import (
    BASE_BENCH,
    BASE_EST,
    HURT_BENCH,
    UNIFORM_BENCH,
    UNIFORM_EST,
    estimate_summary,
    make_run,
    write,
)

from specfair.errors import SpecfairError
from specfair.report import build_report, compare, load_run, narrative, report_command, screenshot


def _text(blocks) -> str:
    from specfair.report.doc import to_markdown

    return to_markdown(blocks)


def test_files_written_and_html_self_contained(built):
    run_dir, md, html = built
    assert md == run_dir / "report.md" and html == run_dir / "report.html"
    page = html.read_text()
    assert 'src="http' not in page and "<script" not in page and "<link" not in page
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) >= 5
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    for name in ("speedup", "alpha_tau", "alpha_est_vs_measured", "alpha_estimated",
                 "gamma_curves", "training"):
        assert f"(figures/{name}.png)" in text
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
    assert "Problems while building" not in text


def test_narrative_numbers_match_inputs(run_dir):
    text = _text(narrative.narrative(load_run(run_dir)))
    # the baseline's worst task and its before/after values
    assert "the worst task (chat) went from 0.90× to 1.30×" in text
    mean_b = np.mean([v[0] for v in BASE_BENCH.values()])
    mean_u = np.mean([v[0] for v in UNIFORM_BENCH.values()])
    assert f"mean speed-up went from {mean_b:.2f}× to {mean_u:.2f}×" in text
    ce_b = np.var([v[1] for v in BASE_EST.values()])
    ce_u = np.var([v[1] for v in UNIFORM_EST.values()])
    assert f"cross-entropy-spread unfairness fell by {100 * (ce_b - ce_u) / ce_b:.1f}%" in text
    alpha_b = np.mean([v[1] for v in BASE_BENCH.values()])
    assert f"mean acceptance α from {alpha_b:.3f}" in text
    assert "Best variant by highest measured worst-task speed-up" in text
    assert "**uniform**" in text
    assert "**Yes**: it lifted the worst-task speed-up from 0.90× (chat) to 1.30×" in text
    assert "did not help" not in text.split("**balanced**")[0]
    # the variant without a benchmark is still compared, by estimated acceptance
    assert "**balanced** (estimated only, not benchmarked)" in text
    assert "(chat) went from α = 0.420 to 0.600" in text
    # a task where SD is slower than AR is named
    assert "slower" in text and "baseline: chat" in text


def test_narrative_when_fine_tuning_hurts(tmp_path):
    run = load_run(make_run(tmp_path / "run", uniform_bench=HURT_BENCH))
    text = _text(narrative.narrative(run))
    assert "the worst task (chat) went from 0.90× to 0.70×" in text
    assert "Fine-tuning did not help — it hurt" in text
    assert "**No**: fine-tuning did not help the worst task" in text
    name, crit = compare.best_variant(run)
    assert name == "uniform" and "measured" in crit


def test_disparity_uses_measure_metrics(run_dir):
    from specfair.measure import metrics

    run = load_run(run_dir)
    d = compare.speedup_disparity(run.baseline)
    ref = metrics.disparity({t: v[0] for t, v in BASE_BENCH.items()})
    for k in ("worst_task", "worst_speedup", "max_min_ratio", "cv", "gini"):
        assert d[k] == ref[k]
    a = compare.alpha_disparity(run.variants["balanced"])
    assert a["worst_task"] == "chat" and a["worst_alpha"] == pytest.approx(0.60)
    assert compare.speedup_disparity(run.variants["balanced"]) is None
    assert compare.rel_change(2.0, 1.5) == pytest.approx(-25.0)


def test_missing_files_are_reported_not_fatal(built):
    _, md, _ = built
    text = md.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| balanced"))
    assert row.count("**missing**") == 3  # bench.jsonl, bench_summary.json, estimate.jsonl
    assert "balanced: not benchmarked" in text


def test_sparse_and_broken_run_dirs(tmp_path):
    # only a baseline bench summary; a variant directory that is empty; broken JSON
    root = tmp_path / "sparse"
    write(root / "baseline/bench_summary.json",
          json.loads((make_run(tmp_path / "full") / "baseline/bench_summary.json").read_text()))
    (root / "variants/empty").mkdir(parents=True)
    (root / "variants/broken").mkdir(parents=True)
    (root / "variants/broken/bench_summary.json").write_text("{not json")
    (root / "variants/broken/train_log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{oops\n')
    md, html = build_report(root)
    text = md.read_text()
    assert "config.json is missing" in text
    assert "bench_summary.json: unreadable" in text
    assert "no benchmark or estimate to compare" in text
    assert "Problems while building" not in text
    assert html.exists()
    # nothing at all
    (tmp_path / "nothing").mkdir()
    md, _ = build_report(tmp_path / "nothing")
    assert "baseline/ is missing" in md.read_text()
    with pytest.raises(SpecfairError):
        build_report(tmp_path / "does-not-exist")


def test_bench_summary_recomputed_from_records(tmp_path):
    root = make_run(tmp_path / "run")
    recs = []
    for i in range(4):
        for task in ("code", "chat"):
            pid = f"{task}-{i}"
            base = {"id": pid, "task": task, "drafter": "d", "gamma": 4, "prefill_s": 0.01,
                    "stop_reason": "max_tokens", "tokens": [1] * 20, "new_tokens": 20}
            recs.append({**base, "mode": "ar", "wall_s": 2.0, "tokens_per_s": 10.0,
                         "drafted": 0, "accepted": 0, "accepted_lengths": []})
            sd_s = 1.0 if task == "code" else 2.5
            recs.append({**base, "mode": "sd", "wall_s": sd_s, "tokens_per_s": 20 / sd_s,
                         "drafted": 20, "accepted": 12, "accepted_lengths": [3, 2, 4, 1, 2]})
    write(root / "variants/balanced/bench.jsonl", recs)
    run = load_run(root)
    arm = run.variants["balanced"]
    assert arm.has_bench and any("recomputed" in n for n in arm.notes)
    assert compare.task_value(arm, "chat")[0] == pytest.approx(0.8)


def test_report_command_and_screenshot_without_browser(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(screenshot, "find_browser", lambda: None)
    write(tmp_path / "run/baseline/estimate_summary.json", estimate_summary(BASE_EST))
    out = report_command(tmp_path / "run", screenshot_png=tmp_path / "shot.png")
    assert out["html"].exists() and out["markdown"].exists() and out["screenshot"] is None
    cap = capsys.readouterr()
    assert "wrote" in cap.out and "chromium not found" in cap.err
    assert screenshot.screenshot(out["html"], tmp_path / "x.png") is False


def test_estimate_only_comparison(tmp_path):
    root = make_run(tmp_path / "run")
    for arm in ("baseline", "variants/uniform"):
        (root / arm / "bench_summary.json").unlink()
    run = load_run(root)
    name, crit = compare.best_variant(run)
    assert name == "balanced" and "estimated" in crit
    text = _text(narrative.narrative(run))
    assert "Fine-tuning is predicted to help: the worst estimated α went from 0.420 (chat)" in text
    assert "Benchmark it to confirm" in text


def test_estimate_only_rise_within_noise_is_not_called_help(tmp_path):
    from synth_run import BALANCED_EST, UNIFORM_EST, estimate_summary, write

    root = make_run(tmp_path / "run")
    for arm in ("baseline", "variants/uniform"):
        (root / arm / "bench_summary.json").unlink()
    small = {t: (a if t != "chat" else 0.43, ce) for t, (a, ce) in BALANCED_EST.items()}
    write(root / "variants/balanced/estimate_summary.json", estimate_summary(small))
    worse = {t: (a if t != "chat" else 0.40, ce) for t, (a, ce) in UNIFORM_EST.items()}
    write(root / "variants/uniform/estimate_summary.json", estimate_summary(worse))
    text = _text(narrative.narrative(load_run(root)))
    assert "not shown to help (the rise is within the 95% CIs" in text
    assert "from 0.420 (chat) to 0.430 (chat)" in text


def test_estimate_vs_bench_uses_the_benchmarked_prompts(tmp_path):
    import pandas as pd

    from specfair.report.build import matched_estimate
    from specfair.report.load import Arm

    def rec(pid, task, alpha):
        return {"id": pid, "task": task, "n_positions": 10, "alpha_sum": 10 * alpha,
                "greedy_match_sum": 10 * alpha, "ce_sum": 5.0, "kl_sum": 2.0,
                "target_match_sum": 10.0}

    est = pd.DataFrame([rec("a", "code", 0.9), rec("b", "code", 0.8), rec("c", "code", 0.1),
                        rec("d", "zh", 0.5), rec("e", "zh", 0.3)])
    arm = Arm("baseline", tmp_path, estimate=est, bench=pd.DataFrame({"id": ["a", "b", "d"]}),
              estimate_summary={"tasks": {"code": {}}, "meta": {"c": 0.4}},
              bench_summary={"tasks": {"code": {}}, "meta": {"gamma": 5}})
    got = matched_estimate(arm)
    assert got["meta"]["matched_to_bench"] is True
    assert got["tasks"]["code"]["greedy_alpha"]["mean"] == pytest.approx(0.85)
    assert got["tasks"]["zh"]["greedy_alpha"]["mean"] == pytest.approx(0.5)
    arm.bench = pd.DataFrame({"id": ["a", "b", "c", "d", "e"]})
    assert matched_estimate(arm) is None  # nothing to restrict

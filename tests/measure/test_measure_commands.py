import json

import pytest

from specfair.measure.commands import bench_command, estimate_command
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

"""One markdown table of per-task speed-ups and acceptance from several ``bench_summary.json``.

    python benchmarks/backends_table.py hf=runs/b/hf llamacpp=runs/b/llamacpp ...

Each argument is LABEL=DIR (or a bench_summary.json path). Per task and run: speed-up with its
95 % CI, α (accepted/drafted), τ, AR and SD tokens/s; then the disparity metrics of each run and
the greedy match rate of SD vs AR (sd_matches_ar).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(arg: str) -> tuple[str, dict]:
    label, _, path = arg.partition("=")
    p = Path(path)
    if p.is_dir():
        p = p / "bench_summary.json"
    return label, json.loads(p.read_text())


def _f(x, nd=2) -> str:
    return "–" if x is None or x != x else f"{x:.{nd}f}"


def table(runs: list[tuple[str, dict]]) -> str:
    tasks = list(dict.fromkeys(t for _, s in runs for t in s["tasks"]))
    head = ["task"]
    for label, _ in runs:
        head += [f"{label} speed-up [95% CI]", f"{label} α", f"{label} τ",
                 f"{label} AR/SD tok/s"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for t in [*tasks, "overall"]:
        row = [f"**{t}**" if t == "overall" else t]
        for _, s in runs:
            b = s["overall"] if t == "overall" else s["tasks"].get(t)
            if b is None:
                row += ["–"] * 4
                continue
            sp = b["speedup"]
            row += [
                f"{_f(sp['mean'])} [{_f(sp['lo'])}, {_f(sp['hi'])}]",
                _f(b["alpha"]["mean"]),
                _f(b["tau"]["mean"]),
                f"{_f(b['ar_tps'], 1)} / {_f(b['sd_tps'], 1)}",
            ]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| run | worst task (S) | best task (S) | max/min | CV | Gini | SD = AR |",
              "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for label, s in runs:
        d, o = s["disparity"], s["overall"]
        lines.append(
            f"| {label} | {d['worst_task']} ({_f(d['worst_speedup'])}) | {d['best_task']} "
            f"({_f(d['best_speedup'])}) | {_f(d['max_min_ratio'])} | {_f(d['cv'], 3)} | "
            f"{_f(d['gini'], 3)} | {_f(o.get('sd_matches_ar'))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(table([_load(a) for a in sys.argv[1:]]))

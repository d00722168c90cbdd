"""The arms matched per task (issue 29 item 4): a ``per-task`` copy trains ``epochs`` passes
over its own task's sequences, the tokens ``uniform`` gives that task on average, not an equal
share of the whole budget (which gave a short-answer task several times its epochs and a
long-answer task fewer)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from specfair.study.arms import _copies, budget_tokens, copy_tokens
from specfair.study.config import StudyConfig
from specfair.study.data import Seq


def _seq(i: int, task: str, n: int) -> Seq:
    return Seq(f"{task}-{i}", task, tuple(range(n)), n // 2, "target")


def test_each_per_task_copy_trains_its_own_epochs_and_the_copies_sum_to_the_budget():
    train = [_seq(i, "para", 300) for i in range(6)] + [_seq(i, "sent", 50) for i in range(12)]
    cfg = StudyConfig(tasks=["para", "sent"], arms=["uniform", "per-task"], epochs=2.0)
    run = SimpleNamespace(cfg=cfg, train=train, test=[_seq(99, "para", 10)])
    goal = budget_tokens(run)
    assert goal == 2 * (6 * 300 + 12 * 50)
    copies = _copies(run, "per-task", "per-task", train, goal, Path("/x"), [])
    tokens = {name: g for name, _, _, _, g, _ in copies}
    # 2 passes over each task's own tokens: 3,600 and 1,200 (an equal share was 2,400 each:
    # 1.33 epochs of the paragraphs, 4 of the sentences)
    assert tokens == {"per-task/para": 3600, "per-task/sent": 1200}
    assert sum(tokens.values()) == goal
    assert copy_tokens(2.0, [300] * 6) == 3600
    assert [len(seqs) for _, seqs, *_ in copies] == [6, 12]
    # any other arm: one copy on every sequence, the whole budget
    (one,) = _copies(run, "uniform", "uniform", train, goal, Path("/x"), [])
    assert one[4] == goal and len(one[1]) == 18


def test_an_arm_against_uniform_is_paired_on_the_same_prompts_and_zero_against_itself():
    from specfair.study.summary import vs_uniform

    def recs(arm, hits):
        return [{"arm": arm, "budget": 1.0, "seed": 0, "task": t, "id": f"{t}-{j}",
                 "group": f"{t}-{j}", "greedy": h / 10, "alpha": h / 10, "n": 10,
                 "match": [int(k < h + (j % 2)) for k in range(10)], "conf": [0.8] * 10}
                for t in ("a", "b") for j in range(12) for h in [hits[t]]]

    cfg = StudyConfig(tasks=["a", "b"], arms=["uniform", "task-mean"], bootstrap=200)
    costs = {"c": 0.3, "verify_slope": 0.02}
    uni = recs("uniform", {"a": 5, "b": 7})
    same = vs_uniform(uni + [r | {"arm": "task-mean"} for r in uni], "task-mean", 1.0,
                      ["a", "b"], cfg, costs)
    assert same["d_greedy"]["a"]["value"] == 0.0 and same["seeds"] == [0, 0]
    worse = vs_uniform(uni + recs("task-mean", {"a": 4, "b": 7}), "task-mean", 1.0,
                       ["a", "b"], cfg, costs)
    assert abs(worse["d_greedy"]["a"]["value"] + 0.1) < 1e-9 and worse["d_greedy"]["a"]["claimed"]
    assert abs(worse["d_greedy"]["b"]["value"]) < 1e-9 and worse["d_speedup"]["a"]["value"] < 0
    assert vs_uniform(uni, "task-mean", 1.0, ["a", "b"], cfg, costs) is None

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

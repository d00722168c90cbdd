"""Helpers shared by the distill tests and their DDP worker (tiny models, a 3-task suite)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from specfair.tasks import Prompt, Suite, split_of

TASKS = ("code", "math", "chat")


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def make_suite(per_task: int = 6) -> Suite:
    """Prompts for three tasks; at least ``per_task`` train and 1 test prompt per task."""
    items, i = [], 0
    for task in TASKS:
        n_train = n_test = 0
        while n_train < per_task or n_test < 1:
            p = Prompt(f"{task}-{i}", task, (f"{task} question number {i} please",),
                       reference=f"answer {i}" if i % 2 else None, source="tiny")
            i += 1
            if split_of(p) == "train" and n_train < per_task:
                n_train += 1
                items.append(p)
            elif split_of(p) == "test" and n_test < 2:
                n_test += 1
                items.append(p)
    return Suite("tiny", items)

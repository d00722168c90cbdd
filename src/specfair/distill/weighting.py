"""Task weighting: which training examples each step sees (pure, seeded, checkpointable).

Every sampler draws a batch in two stages: a **task** from task probabilities ``w``, then the next
example of that task from a per-task reshuffled cycle (each example of a task is seen once before
any is seen twice). The rules differ only in ``w``:

* ``uniform``   ``w_t = n_t / N`` (n_t examples of task t): uniform over examples.
* ``balanced``  ``w_t = 1 / K`` over the K tasks: equal weight per task.
* ``disparity`` corrective re-weighting towards the tasks the drafter serves worst. Every
  ``reestimate_every`` steps the trainer measures each task's acceptance ``alpha_t`` (teacher-
  forced, on a held-back slice of the TRAIN split) and calls ``update(alphas)``; then

      deficit_t = max_s alpha_s - alpha_t                       (>= 0, 0 for the best task)
      w_t       = floor / K + (1 - floor) * exp(deficit_t / T) / sum_s exp(deficit_s / T)

  with temperature ``T`` (default 0.05: a task 0.1 below the best gets e^2 = 7.4x the weight of
  the best one) and ``floor`` (default 0.2) of the mass spread evenly, so every task keeps
  ``w_t >= floor / K`` and none starves. Tasks without an estimate get the mean deficit of the
  others; before the first estimate ``w`` is balanced. This is a stochastic version of corrective
  drafter fine-tuning in the spirit of Sandler et al. (2025): sample, do not hard-select, the
  lagging tasks.
* ``per-task``  one LoRA adapter per task; each (global) batch is drawn from a single task, the
  task chosen with balanced weights (``w_t = 1/K``), so each adapter sees only its task.

For data parallelism every process holds an identical sampler and draws the same *global* batch;
process ``r`` trains on its slice (see the trainer), so the sampler state is identical on all ranks
and is checkpointed once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def disparity_weights(
    alphas: Mapping[str, float | None],
    tasks: Sequence[str],
    temperature: float = 0.05,
    floor: float = 0.2,
) -> dict[str, float]:
    """The ``disparity`` rule above as a pure function of per-task alphas."""
    known = {t: float(a) for t, a in alphas.items() if t in tasks and a is not None}
    k = len(tasks)
    if not known:
        return {t: 1.0 / k for t in tasks}
    best = max(known.values())
    deficits = {t: best - a for t, a in known.items()}
    mean_def = sum(deficits.values()) / len(deficits)
    d = np.array([deficits.get(t, mean_def) for t in tasks], dtype=np.float64)
    z = np.exp((d - d.max()) / temperature)
    soft = z / z.sum()
    w = floor / k + (1.0 - floor) * soft
    return {t: float(x) for t, x in zip(tasks, w / w.sum(), strict=True)}


class TaskSampler:
    """Draw example indices; ``examples_tasks[i]`` is the task label of example ``i``."""

    def __init__(
        self,
        examples_tasks: Sequence[str],
        rule: str = "uniform",
        *,
        seed: int = 0,
        temperature: float = 0.05,
        floor: float = 0.2,
        tasks: Sequence[str] | None = None,
    ) -> None:
        if rule not in ("uniform", "balanced", "disparity", "per-task"):
            raise ValueError(f"unknown weighting rule {rule!r}")
        if not examples_tasks:
            raise ValueError("no training examples")
        self.rule = rule
        self.temperature = float(temperature)
        self.floor = float(floor)
        present = list(dict.fromkeys(examples_tasks))
        self.tasks = [t for t in (tasks or present) if t in set(present)]
        self.by_task: dict[str, list[int]] = {t: [] for t in self.tasks}
        for i, t in enumerate(examples_tasks):
            if t in self.by_task:
                self.by_task[t].append(i)
        self.rng = np.random.default_rng(seed)
        self._order: dict[str, list[int]] = {t: [] for t in self.tasks}
        self._pos: dict[str, int] = {t: 0 for t in self.tasks}
        self.alphas: dict[str, float | None] = {t: None for t in self.tasks}
        self.draws = 0

    # ------------------------------------------------------------------ weights
    def weights(self) -> dict[str, float]:
        """Current task probabilities ``w`` (sum to 1)."""
        k = len(self.tasks)
        if self.rule == "uniform":
            n = sum(len(v) for v in self.by_task.values())
            return {t: len(self.by_task[t]) / n for t in self.tasks}
        if self.rule in ("balanced", "per-task"):
            return {t: 1.0 / k for t in self.tasks}
        return disparity_weights(self.alphas, self.tasks, self.temperature, self.floor)

    def update(self, alphas: Mapping[str, float | None]) -> dict[str, float]:
        """Record new per-task acceptance estimates; returns the new weights."""
        for t, a in alphas.items():
            if t in self.alphas and a is not None and not math.isnan(a):
                self.alphas[t] = float(a)
        return self.weights()

    # ------------------------------------------------------------------ draws
    def _next_of(self, task: str) -> int:
        if self._pos[task] >= len(self._order[task]):
            idx = self.by_task[task]
            self._order[task] = [idx[j] for j in self.rng.permutation(len(idx))]
            self._pos[task] = 0
        i = self._order[task][self._pos[task]]
        self._pos[task] += 1
        return int(i)

    def sample_tasks(self, n: int) -> list[str]:
        w = self.weights()
        p = np.array([w[t] for t in self.tasks])
        if self.rule == "per-task":
            t = self.tasks[int(self.rng.choice(len(self.tasks), p=p))]
            return [t] * n
        return [self.tasks[int(j)] for j in self.rng.choice(len(self.tasks), size=n, p=p)]

    def sample(self, n: int) -> list[int]:
        """``n`` example indices (one global batch)."""
        self.draws += 1
        return [self._next_of(t) for t in self.sample_tasks(n)]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "rule": self.rule,
            "rng": self.rng.bit_generator.state,
            "order": self._order,
            "pos": self._pos,
            "alphas": self.alphas,
            "draws": self.draws,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("rule") != self.rule:
            raise ValueError(f"sampler rule changed: {state.get('rule')} -> {self.rule}")
        self.rng.bit_generator.state = state["rng"]
        self._order = {t: list(v) for t, v in state["order"].items()}
        self._pos = {t: int(v) for t, v in state["pos"].items()}
        self.alphas = dict(state["alphas"])
        self.draws = int(state["draws"])

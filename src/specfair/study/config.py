"""``StudyConfig``: every setting of the dose-response study, defaults in one place."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.schema import SEED_LIMIT, Rule, check_table, suggest, value_error

# uniform: every task's sequences drawn in proportion, the loss a mean over positions;
# task-mean: the same draws, the loss a mean over the batch's tasks of each one's position mean;
# monolingual: uniform, each translation task's text replaced by as many supervised tokens of
# unlabeled text in its output language (study.monolingual; no data dose of its own)
ARMS = ("uniform", "task-mean", "disparity", "per-task", "monolingual")
DOSE_ARMS = tuple(a for a in ARMS if a != "monolingual")
DEFAULT_ARMS = ("uniform", "disparity", "per-task")  # a config without `arms` (as before)
DTYPES = ("auto", "float32", "bfloat16")  # the models' dtype: auto = bf16 where the CPU has it
_POS, _COUNT, _NONNEG = Rule(gt=0), Rule(ge=1), Rule(ge=0)
# Upper bounds on the settings that size the work, so that a typo cannot run for days: passes
# over the training data, bootstrap resamples, drafts per step; token counts are bounded by the
# models' context (check_models), prompt counts by the data (study.data.study_prompts).
MAX_EPOCHS, MAX_BOOTSTRAP, MAX_GAMMA = 100, 100_000, 64
MAX_DOSE_TOKENS = 100_000_000  # supervised tokens per task of one data-dose point
_SEED, _EPOCHS = Rule(ge=0, lt=SEED_LIMIT), Rule(gt=0, le=MAX_EPOCHS)
LEGACY_KINDS = ("study",)  # the `kind` key of files of the two-pipeline days
# What each value must be beyond its type (checked by specfair.schema.check_table).
RULES = {
    "name": Rule(plain=True), "tasks": Rule(nonempty=True, unique=True),
    "n_train": _COUNT, "n_test": _COUNT, "n_heldout": _NONNEG, "max_prompt_tokens": _COUNT,
    "prompt_head_tokens": _NONNEG, "train_response_tokens": _COUNT,
    "test_response_tokens": _COUNT, "train_text": Rule(choices=(
        "reference+drafter", "drafter", "target")),
    "topk": _COUNT, "top_layers": _COUNT, "loss": Rule(choices=("fkl", "tvd", "jsd")),
    "lr": _POS, "warmup_steps": _NONNEG, "batch_size": _COUNT, "epochs": _EPOCHS,
    "overfit_epochs": _EPOCHS, "overfit_lr": _POS, "seed": _SEED,
    "budgets": Rule(nonempty=True, unique=True, each=Rule(gt=0, le=1)),
    "arms": Rule(nonempty=True, unique=True, each=Rule(choices=ARMS)),
    "disparity_temperature": _POS, "disparity_floor": Rule(ge=0, le=1),
    "bootstrap": Rule(ge=1, le=MAX_BOOTSTRAP),
    "seeds": Rule(nonempty=True, unique=True, each=_SEED),
    "seed_arms": Rule(unique=True, each=Rule(choices=ARMS)),
    "timed_arms": Rule(unique=True, each=Rule(choices=ARMS)),
    "prompt_fractions": Rule(unique=True, each=Rule(gt=0, le=1)),
    "dose_arm": Rule(choices=DOSE_ARMS),
    "dose_tokens": Rule(unique=True, each=Rule(ge=1, le=MAX_DOSE_TOKENS)),
    "dose_tasks": Rule(unique=True),
    # the timed stage (specfair.study.timed)
    "n_bench": _NONNEG, "gamma": Rule(ge=1, le=MAX_GAMMA), "timed_policies": Rule(unique=True),
    # the method comparison (specfair.study.methods)
    "method_layers": Rule(unique=True, each=Rule(ge=1)),
    "method_lrs": Rule(unique=True, each=Rule(gt=0)),
    "method_texts": Rule(unique=True, each=Rule(choices=("reference+drafter", "drafter",
                                                          "target"))),
    "method_tasks": Rule(unique=True), "method_budget": Rule(gt=0, le=1),
    "dtype": Rule(choices=DTYPES),
}
# Settings that shape only the training and what follows it, not the cached sequences and
# signals: a run directory with no training output yet takes other values of these.
TRAINING_KEYS = ("name", "loss", "lr", "warmup_steps", "batch_size", "epochs", "overfit_epochs",
                 "overfit_lr", "budgets", "arms", "disparity_temperature", "disparity_floor",
                 "bootstrap", "seeds", "seed_arms", "prompt_fractions", "dose_arm",
                 "dose_tokens",
                 "dose_tasks", "method_layers",
                 "method_lrs", "method_texts", "method_tasks", "method_budget", "method_select")
TRAINING_KEYS += ("gamma",)  # the timed stage comes after the training
# Settings a run directory takes other values of at any time: more prompts are timed (resumed).
# timed_policies, timed_hf: each policy's records (and HF assisted generation's) are a bench file
# of their own (study.timed_policies), so one added later is timed on, one dropped is kept on
# disk and left out of timed.json.
# timed_arms: an arm's timed records are a bench file of its own too (study.timed).
ANY_TIME_KEYS = ("n_bench", "n_bench_per_task", "index_arm", "time_index", "timed_policies",
                 "timed_hf", "timed_arms")
# Per-task values of a count (``{task: n}``, tasks of the study) in place of the key's one value.
PER_TASK = {"n_train_per_task": ("n_train", 1), "n_test_per_task": ("n_test", 1),
            "n_bench_per_task": ("n_bench", 0)}  # key: (the count it overrides, its minimum)
CONFIGS = ("demo", "study", "full", "dose")  # the packaged experiment_NAME.toml files


def copy_tokens(epochs: float, lengths: list[int]) -> int:
    """Training tokens of ``epochs`` passes over sequences of ``lengths``: an arm's largest
    budget (every training sequence, ``study.arms.budget_tokens``) or a ``per-task`` copy's
    (its own task's sequences: as many as ``uniform`` draws of that task on average, so every
    task gets the same tokens and epochs in both arms, issue 29 item 4; the copies sum to the
    arm's budget). Until 2026-12-08 each copy took an equal share of the arm's budget (a
    short-answer task several times its epochs, a long one fewer): the study's committed
    per-task records are of that rule (their ``tokens``)."""
    return int(epochs * sum(lengths))


def timed_variants(specs: list[str], gamma: int, origin: str = "study config") -> list[tuple]:
    """``timed_policies`` as ``[(label, DraftingPolicy, proposer)]`` (labels as
    ``benchmarks/engine.py --variants`` writes them, ``policy+proposer``), the stage's own
    ``fixed:<gamma>`` first; ``[]``: that one only. A spec that does not parse, a policy table
    or an index (files outside the run: the study times its own index with ``time_index``), a
    proposer that drafts without the drafter (it would time no drafter), the same variant
    twice, or a list without ``fixed:<gamma>`` (the policy the predictions and the index
    variants are of) is one error naming the key."""
    from specfair.decoding.ngram import SUFFIX_KINDS, parse_proposer, uses_drafter
    from specfair.decoding.policy import parse_variant

    own = f"fixed:{gamma}+model"
    out = []
    for spec in specs or [f"fixed:{gamma}"]:
        why = None
        try:
            if str(spec).partition("+")[0].partition(":")[0].strip() == "table":
                raise SpecfairError("a policy table is a file outside the run")  # not read
            label, pol, proposer = parse_variant(spec)
        except SpecfairError as e:
            why = str(e)
        else:
            if parse_proposer(proposer)[0] in SUFFIX_KINDS:
                why = "an index proposer: the run's own index is timed with time_index"
            elif not uses_drafter(proposer):
                why = f"proposer {proposer} drafts without the drafter"
            elif label in [v[0] for v in out]:
                why = "the same variant twice"
        if why:
            raise value_error(origin, "", "timed_policies", specs, "POLICY[+PROPOSER] strings "
                              "(policy fixed:N | heuristic | confidence:T | adaptive | "
                              f"adaptive-flat; proposer model | hybrid[:N]); {spec!r}: {why}")
        out.append((label, pol, proposer))
    if own not in [v[0] for v in out]:
        raise value_error(origin, "", "timed_policies", specs, f"a list with fixed:{gamma} (the "
                          f"stage's own policy, gamma = {gamma}: the predicted speed-ups and the "
                          "index variants are of it)")
    return sorted(out, key=lambda v: v[0] != own)


def _packaged(name: str):
    return resources.files("specfair") / "configs" / f"experiment_{name}.toml"


@dataclass
class StudyConfig:
    name: str = "study"
    target: str = "qwen2.5-coder-1.5b-instruct"
    drafter: str = "qwen2.5-coder-0.5b-instruct"
    tasks: list[str] = field(default_factory=lambda: [
        "chat", "code", "summarization", "math", "translation_en_fr", "translation_zh_en",
        "mgsm_zh", "mgsm_ja"])
    seed: int = 0
    # --- data
    n_train: int = 150  # train prompts per task (the largest budget sees all of them)
    n_test: int = 40  # test prompts per task (paired: the same prompts for every arm)
    # per task, in place of n_train / n_test / n_bench: {task = n}; the other tasks take the
    # one value
    n_train_per_task: dict[str, int] = field(default_factory=dict)
    n_test_per_task: dict[str, int] = field(default_factory=dict)
    n_heldout: int = 8  # train prompts per task held back for early stopping / disparity weights
    max_prompt_tokens: int = 96  # training prompts are cut to this many tokens: the first
    prompt_head_tokens: int = 0  # of them (the chat template's start) and the last ones
    train_response_tokens: int = 48
    test_response_tokens: int = 32
    train_text: str = "reference+drafter"  # reference+drafter | drafter | target
    topk: int = 32
    # --- training (top-N layers of the drafter, on cached lower hidden states)
    top_layers: int = 4
    loss: str = "fkl"
    lr: float = 2e-5  # 1e-4 lowered every task's alpha (docs/RESULTS.md); 2e-5 did not
    warmup_steps: int = 10
    batch_size: int = 8
    epochs: float = 2.0  # passes over the training sequences at the largest budget
    overfit_epochs: float = 8.0  # the overfit check: one task's train sequences, this many
    overfit_lr: float = 1e-4  # passes, at this learning rate (4 at 3e-4 reached only +0.08)
    budgets: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])
    arms: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS))
    disparity_temperature: float = 0.05
    disparity_floor: float = 0.2
    bootstrap: int = 2000
    # --- variance and data dose (issue 18)
    # training seeds (the order batches are drawn in): the first trains the whole budget curve,
    # the others each arm to the largest budget; CIs resample seeds, then prompts
    seeds: list[int] = field(default_factory=lambda: [0])
    # the arms trained with the further seeds ([] = every arm): 3 seeds for the arms a claim
    # rests on, the first seed for the others (issue 29: the matched arms at the largest dose)
    seed_arms: list[str] = field(default_factory=list)
    # data dose: ``dose_arm`` trained on the first fraction of each task's distinct training
    # prompts, at ``epochs`` passes over them, for each fraction ([] = no dose curve)
    prompt_fractions: list[float] = field(default_factory=list)
    dose_arm: str = "uniform"
    # data dose in supervised tokens (issue 29; in place of prompt_fractions): for each value,
    # ``dose_arm`` trained on the first training prompts of each of ``dose_tasks`` whose
    # training texts (response positions) reach that many tokens (all of a task's prompts where
    # they hold fewer: the achieved count is recorded), the other tasks on all their prompts,
    # at ``epochs`` passes; the arms train on the largest dose (so their further seeds are its
    # seeds and the overfit check is at it). dose_tasks [] = every task.
    dose_tokens: list[int] = field(default_factory=list)
    dose_tasks: list[str] = field(default_factory=list)
    # --- the method comparison (specfair.study.methods), before the arms: on the base
    # drafter's worst and best task (or ``method_tasks``), at equal tokens (``method_budget`` of
    # the per-task arm's largest budget), top layers x learning rates, then training texts at
    # the best of those; [] everywhere = no comparison (the configured method)
    method_layers: list[int] = field(default_factory=list)  # e.g. [4, 8, 24]: 24 = all layers
    method_lrs: list[float] = field(default_factory=list)
    method_texts: list[str] = field(default_factory=list)
    method_tasks: list[str] = field(default_factory=list)
    method_budget: float = 0.25
    method_select: bool = True  # the arms train with the best method (held-out greedy alpha)
    # --- the timed stage: every arm's drafter at the largest budget (first seed), exported and
    # benchmarked
    n_bench: int = 10  # test prompts per task timed (AR and SD, paired with the base drafter)
    n_bench_per_task: dict[str, int] = field(default_factory=dict)  # {task = n}, as n_bench
    gamma: int = DEFAULT_GAMMA  # fixed drafts per step, timed and predicted (replay)
    # the drafting policies every timed drafter is timed under, each POLICY[+PROPOSER] as
    # `specfair bench --policy/--proposer` and `benchmarks/engine.py --variants` take them
    # (e.g. "adaptive+hybrid"; a drafter's proposer: model or hybrid[:N]; no table or index);
    # fixed:<gamma> among them; [] = fixed:<gamma> only (study.timed_policies)
    timed_policies: list[str] = field(default_factory=list)
    # HF assisted generation with its default settings (the base drafter as assistant) timed
    # on the same prompts against the same plain-decoding runs
    timed_hf: bool = False
    # the arms whose drafter the timed stage exports and times ([] = every arm); the others
    # get the speed-up predicted from their teacher-forced passes (summary.json)
    timed_arms: list[str] = field(default_factory=list)
    # the dtype every model of the experiment loads in (answers, signals, training, timing):
    # auto (bf16 on a CPU with native bf16 or a GPU, else float32), or float32 on a bf16 CPU
    # to run the fp32 path of a CPU without bf16 (`specfair experiment --dtype float32`)
    dtype: str = "auto"
    # --- the index arm (specfair.study.index_arm, issue 30): the arms' training text (and each
    # data dose's) as a SuffixDecoding index per task, replayed on the test answers at no model
    # cost beside fine-tuning (same_data.json, the report's "same data, two uses")
    index_arm: bool = True
    # the timed stage times the index too, as deployed (study.index_timed): the index alone and
    # the best fine-tuned arm's drafter with it (each with its own AR runs); off by default
    time_index: bool = False
    origin: typing.ClassVar[str] = "study config"  # the file, for error messages

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    def validate(self, origin: str = "study config") -> None:
        self._check(self.to_dict(), origin)
        self.budgets = sorted(self.budgets)
        self.prompt_fractions = sorted(self.prompt_fractions)
        self.dose_tokens = sorted(self.dose_tokens)

    def per_task(self, key: str, task: str) -> int:
        """``n_train``, ``n_test`` or ``n_bench`` of ``task``: its ``<key>_per_task`` value
        where it has one."""
        return getattr(self, f"{key}_per_task").get(task, getattr(self, key))

    @property
    def dose_points(self) -> list:
        """The data dose's points: ``dose_tokens`` (supervised tokens per dose task) or
        ``prompt_fractions``."""
        return list(self.dose_tokens or self.prompt_fractions)

    @property
    def arms_seeded(self) -> list[str]:
        """The arms trained with each further seed (``seed_arms``; [] = every arm)."""
        return [a for a in self.arms if not self.seed_arms or a in self.seed_arms]

    @property
    def arms_timed(self) -> list[str]:
        """The arms the timed stage exports and times (``timed_arms``; [] = every arm)."""
        return [a for a in self.arms if not self.timed_arms or a in self.timed_arms]

    def doses_task(self, task: str) -> bool:
        """Whether the data dose varies ``task``'s training prompts (``dose_tasks``; [] =
        every task)."""
        return not self.dose_tasks or task in self.dose_tasks

    @classmethod
    def _check(cls, d: dict[str, Any], origin: str) -> None:
        """Types, ranges, choices and lists (:data:`RULES`), then the keys that bound each
        other."""
        check_table(origin, "", d, cls.field_types(), RULES)
        head, most = d.get("prompt_head_tokens", 0), d.get("max_prompt_tokens", 96)
        if head >= most:
            raise value_error(origin, "", "prompt_head_tokens", head,
                              f"an integer in [0, max_prompt_tokens = {most})")
        arms, dose_arm = d.get("arms", list(DEFAULT_ARMS)), d.get("dose_arm", "uniform")
        if d.get("prompt_fractions") and d.get("dose_tokens"):
            raise value_error(origin, "", "dose_tokens", d["dose_tokens"],
                              "[] when prompt_fractions is set (a data dose is in prompt "
                              "fractions or in supervised tokens, not both)")
        dosed = "prompt_fractions" if d.get("prompt_fractions") else "dose_tokens"
        if d.get(dosed) and dose_arm not in arms:
            raise value_error(origin, "", "dose_arm", dose_arm,
                              f"one of this study's arms ({', '.join(arms)}) when "
                              f"{dosed} is set")
        for key in ("seed_arms", "timed_arms"):
            for a in d.get(key) or []:
                if a not in arms:
                    raise value_error(origin, "", key, d[key], f"arms of this study "
                                      f"({', '.join(arms)}); {a!r} is not one")
        tasks = d.get("tasks", cls.__dataclass_fields__["tasks"].default_factory())
        if (dt := d.get("dose_tasks")) and not d.get(dosed):
            raise value_error(origin, "", "dose_tasks", dt, "[] without a data dose "
                              "(dose_tokens or prompt_fractions)")
        for t in dt or []:
            if t not in tasks:
                raise value_error(origin, "", "dose_tasks", dt, f"tasks of this study; {t!r} "
                                  f"is not one{suggest(t, tasks)}")
        if d.get("timed_policies"):
            timed_variants(d["timed_policies"], d.get("gamma", DEFAULT_GAMMA), origin)
        for key, (_, least) in PER_TASK.items():
            for t, n in d.get(key, {}).items():
                if t not in tasks:
                    raise value_error(origin, "", key, d[key], f"a table of tasks of this "
                                      f"study; {t!r} is not one{suggest(t, tasks)}")
                if not least <= n <= SEED_LIMIT:
                    raise value_error(origin, "", key, d[key],
                                      f"a table of integers >= {least} ({t} = {n})")

    def check_tasks(self, tasks: list[str]) -> None:
        """Refuse a task the study suite lacks (with the closest name)."""
        for t in self.tasks:
            if t not in tasks:
                raise value_error(self.origin, "", "tasks", self.tasks,
                                  f"tasks of the study suite; {t!r} is not one{suggest(t, tasks)}")
        for t in self.method_tasks:
            if t not in self.tasks:
                raise value_error(self.origin, "", "method_tasks", self.method_tasks,
                                  f"tasks of this study; {t!r} is not one"
                                  f"{suggest(t, self.tasks)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "study config") -> StudyConfig:
        """Refuse unknown keys (with the closest valid name), values of the wrong type or out
        of range, before building the config; every error names ``origin`` and the key."""
        cls._check(d, origin)
        cfg = cls(**d)
        cfg.origin = origin
        return cfg

    def check_models(self) -> None:
        """``top_layers`` within the drafter's layers, ``topk`` within the target's
        vocabulary, the token counts within both models' context, from the models' configs (no
        weights read)."""
        from specfair.models.load import context_length, model_shape

        for spec in (self.target, self.drafter):
            if (n := context_length(spec)) is None:
                continue
            if self.test_response_tokens >= n:  # the whole prompt comes first
                raise value_error(self.origin, "", "test_response_tokens",
                                  self.test_response_tokens, f"an integer in [1, {n - 1}] (the "
                                  f"context of {spec} is {n} tokens, the prompt included)")
            if self.max_prompt_tokens + self.train_response_tokens > n:
                raise value_error(self.origin, "", "max_prompt_tokens", self.max_prompt_tokens,
                                  f"an integer in [1, {n - self.train_response_tokens}] "
                                  f"(with train_response_tokens = {self.train_response_tokens}"
                                  f", a training sequence fits the context of {spec}: {n})")
        d = model_shape(self.drafter)
        if self.top_layers > d.n_layers:
            raise value_error(self.origin, "", "top_layers", self.top_layers,
                              f"an integer in [1, {d.n_layers}] (the layers of {d.name})")
        if any(n > d.n_layers for n in self.method_layers):
            raise value_error(self.origin, "", "method_layers", self.method_layers,
                              f"integers in [1, {d.n_layers}] (the layers of {d.name})")
        t = model_shape(self.target)
        if self.topk > t.vocab_size:
            raise value_error(self.origin, "", "topk", self.topk,
                              f"an integer in [1, {t.vocab_size}] (the vocabulary of {t.name})")

    def check_budgets(self, seq_lengths: list[int], tasks: list[str]) -> None:
        """Refuse budgets closer (to each other or to 0) than one batch of the training
        sequences: their checkpoints would be the same. ``seq_lengths`` and ``tasks`` are those
        of the training sequences (the per-task arm trains each task's copy ``epochs`` passes
        over its own, as ``study.arms.copy_tokens``)."""
        if not seq_lengths:
            return
        goal = copy_tokens(self.epochs, seq_lengths)  # as study.arms.budget_tokens
        groups = [(goal, seq_lengths)]
        if "per-task" in self.arms:
            own = [[n for n, t in zip(seq_lengths, tasks, strict=True) if t == task]
                   for task in self.tasks]
            groups += [(copy_tokens(self.epochs, ls), ls) for ls in own]
        batch = self.batch_size * max(seq_lengths)
        need = max((self.batch_size * max(ls) / max(g, 1) for g, ls in groups if ls),
                   default=0.0)
        if need > 1:  # not even the largest budget trains more than one batch
            raise value_error(self.origin, "", "epochs", self.epochs,
                              f"a finite number >= {self.epochs * need:.3g} (one batch is up to "
                              f"{batch} training tokens of the {goal} at the largest budget)")
        steps = [b - a for a, b in zip([0.0, *self.budgets], self.budgets, strict=False)]
        if min(steps) < need:
            share = " (the per-task arm: a task's own sequences, epochs passes, per copy)"
            raise value_error(
                self.origin, "", "budgets", self.budgets,
                f"fractions at least {need:.3g} apart and from 0: one batch is up to "
                f"{batch} training tokens of the {goal} at the largest budget"
                f"{share * (len(groups) > 1)}")

    @classmethod
    def load(cls, spec: str | Path = "demo") -> StudyConfig:
        """``spec``: a packaged config (:data:`CONFIGS`) or a TOML file of StudyConfig keys."""
        path = Path(spec)
        if not path.is_file():
            res = _packaged(str(spec))
            if str(spec) not in CONFIGS or not res.is_file():
                hint = suggest(spec, CONFIGS) if "; did" in suggest(spec, CONFIGS) else ""
                raise SpecfairError(f"experiment config not found: {spec} (a TOML file or one "
                                    f"of {', '.join(CONFIGS)}){hint}")
            text, origin = res.read_text(encoding="utf-8"), f"experiment_{spec}.toml"
        else:
            try:
                text, origin = path.read_text(encoding="utf-8"), str(path)
            except UnicodeDecodeError:
                raise SpecfairError(f"{path}: not UTF-8 text") from None
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SpecfairError(f"{origin}: invalid TOML: {e}") from None
        kind = d.pop("kind", LEGACY_KINDS[0])  # written by files of the two-pipeline days
        if kind not in LEGACY_KINDS:
            raise value_error(origin, "", "kind", kind, f"{LEGACY_KINDS[0]!r} or left out (a "
                              "key of older files; every experiment is a study now)")
        return cls.from_dict(d, origin)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

"""The study's sequences: prompts per task and split, the target's greedy test responses, the
training text, and the two signal stores they are scored into.

A :class:`Seq` is one token sequence ``ids`` whose positions ``n_prompt..`` are the response:
test sequences are the target's own greedy answers to the full prompt (acceptance is measured on
the target's trajectories); training sequences are a prompt (cut by :func:`cut_prompt`) and
a training text (``StudyConfig.train_text``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from specfair.measure.responses import fill_responses_batched, read_responses
from specfair.measure.signals import fill_signals as _fill
from specfair.measure.signals import fill_target_final as _fill_final
from specfair.measure.signals import seq_key
from specfair.schema import value_error
from specfair.study.config import StudyConfig
from specfair.tasks import encode_prompt
from specfair.tasks.prompt import Prompt
from specfair.tasks.split import find_contained, find_leaks
from specfair.tasks.study import text_reference_tasks
from specfair.tasks.suite import sample_per_task


@dataclass(frozen=True)
class Seq:
    id: str
    task: str
    ids: tuple[int, ...]
    n_prompt: int
    text_source: str  # target | reference | drafter

    @property
    def key(self) -> str:
        return seq_key(self.ids, self.n_prompt)

    @property
    def n_resp(self) -> int:
        return len(self.ids) - self.n_prompt


@dataclass
class StudyPrompts:
    train: list[Prompt]
    heldout: list[Prompt]
    test: list[Prompt]
    dropped: list[dict]  # train-split prompts left out: {"id", "task", "test_id"}


def uses_reference(cfg: StudyConfig, p: Prompt) -> bool:
    """Whether a train prompt's training text is its reference (else generated text)."""
    return (cfg.train_text == "reference+drafter" and p.task in text_reference_tasks()
            and bool(p.reference))


def sample_each(prompts: list[Prompt], n: dict[str, int], seed: int) -> list[Prompt]:
    """:func:`~specfair.tasks.suite.sample_per_task` with ``n[task]`` prompts of each task (in
    input order): a task's choice is the one its count alone would make."""
    keep = {p.id for t, k in n.items()
            for p in sample_per_task([p for p in prompts if p.task == t], k, seed)}
    return [p for p in prompts if p.id in keep]


def test_prompts(cfg: StudyConfig, suite) -> list[Prompt]:
    """The run's test prompts: ``n_test`` (``n_test_per_task``) per task of the suite's test
    split (seeded); a task with fewer is an error (every arm is paired on the same test prompts
    of every task), not a silently smaller sample."""
    pool = suite.prompts("test", cfg.tasks)
    have = {t: sum(p.task == t for p in pool) for t in cfg.tasks}
    want = {t: cfg.per_task("n_test", t) for t in cfg.tasks}
    if short := {t: n for t, n in have.items() if n < want[t]}:
        key = "n_test_per_task" if set(short) & set(cfg.n_test_per_task) else "n_test"
        raise value_error(cfg.origin, "", key, getattr(cfg, key),
                          f"at most {min(short.values())}: the data hold fewer test prompts for "
                          + ", ".join(f"{t} ({n})" for t, n in short.items()))
    return sample_each(pool, want, cfg.seed)


def study_prompts(cfg: StudyConfig, suite) -> StudyPrompts:
    """Per task: ``n_test`` test prompts, and ``n_train + n_heldout`` train-split prompts of
    which the last ``n_heldout`` (in the seeded hash order) are held back
    (``n_test_per_task``, ``n_train_per_task``: a task's own counts).

    Leak check first: a train-split prompt whose prompt text or reference training text shares
    a text (or paragraph, :func:`specfair.tasks.split.find_leaks`) with a test prompt or its
    reference answer, in any task, is dropped before the train prompts are picked."""
    test = test_prompts(cfg, suite)
    train = suite.prompts("train", cfg.tasks)
    leaks = find_leaks(
        {p.id: p.turns + ((p.reference,) if uses_reference(cfg, p) else ()) for p in train},
        {p.id: p.turns + ((p.reference,) if p.reference else ()) for p in test})
    dropped = [{"id": p.id, "task": p.task, "test_id": leaks[p.id]} for p in train
               if p.id in leaks]
    pool = sample_each([p for p in train if p.id not in leaks],
                       {t: cfg.per_task("n_train", t) + cfg.n_heldout for t in cfg.tasks},
                       cfg.seed)
    held_ids: set[str] = set()
    for task in cfg.tasks:
        ps = [p for p in pool if p.task == task]
        held_ids |= {p.id for p in sample_per_task(ps, cfg.n_heldout, cfg.seed + 1)}
    return StudyPrompts([p for p in pool if p.id not in held_ids],
                        [p for p in pool if p.id in held_ids], test, dropped)


def _generate(model, tokenizer, prompts: Sequence[Prompt], ids: Sequence[list[int]],
              path: Path, max_new: int, label: str) -> dict[str, list[int]]:
    """Batched greedy answers of ``model`` (``label``: target or drafter) to the token ids
    ``ids``, in ``path`` (:mod:`specfair.measure.responses`' schema, resumable)."""
    fill_responses_batched(model, tokenizer, prompts, path, max_new_tokens=max_new,
                           prompt_ids=ids, label=f"{label} answers ({path.stem})",
                           source="batched" if label == "target" else label)
    recs = read_responses(path)
    return {p.id: recs[(p.id, 0)]["response_ids"] for p in prompts}


def cut_prompt(ids: list[int], n: int, head: int) -> list[int]:
    """At most ``n`` tokens: the first ``head`` (the chat template's start) and the last ones."""
    if len(ids) <= n:
        return ids
    return ids[:head] + ids[len(ids) - (n - head):]


def test_sequences(cfg: StudyConfig, target, tokenizer, prompts: Sequence[Prompt],
                   run_dir: Path, name: str = "test_responses.jsonl") -> list[Seq]:
    """The target's greedy answers (``test_response_tokens``) to the whole prompts, in
    ``run_dir / name``: the test sequences, and the held-out prompts' (``heldout_responses``)
    on which drafting policies are chosen out of sample."""
    if not prompts:
        return []
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    resp = _generate(target, tokenizer, prompts, ids, run_dir / name,
                     cfg.test_response_tokens, "target")
    return [Seq(p.id, p.task, tuple(i + resp[p.id]), len(i), "target")
            for p, i in zip(prompts, ids, strict=True) if resp[p.id]]


def train_sequences(cfg: StudyConfig, target, drafter, tokenizer, prompts: Sequence[Prompt],
                    run_dir: Path) -> list[Seq]:
    """Prompt (cut to ``max_prompt_tokens``) + training text: the reference where the task's
    references are answer texts and ``train_text`` allows it, else a greedy continuation by the
    drafter (of the truncated prompt) or, with ``train_text="target"``, the target's greedy
    answer to the whole prompt."""
    ids = [cut_prompt(encode_prompt(tokenizer, p), cfg.max_prompt_tokens,
                      cfg.prompt_head_tokens) for p in prompts]
    n = cfg.train_response_tokens
    out: dict[str, Seq] = {}
    gen_idx = []
    for k, (p, i) in enumerate(zip(prompts, ids, strict=True)):
        if uses_reference(cfg, p):
            ref = tokenizer.encode(p.reference, add_special_tokens=False)[:n]
            out[p.id] = Seq(p.id, p.task, tuple(i + ref), len(i), "reference")
        else:
            gen_idx.append(k)
    if gen_idx:
        model, label = (target, "target") if cfg.train_text == "target" else (drafter, "drafter")
        gp = [prompts[k] for k in gen_idx]
        # the target answers the whole prompt, as at test time; the drafter continues the
        # truncated prompt it trains on (its own on-policy text)
        gen_ids = ([encode_prompt(tokenizer, p) for p in gp] if label == "target"
                   else [ids[k] for k in gen_idx])
        resp = _generate(model, tokenizer, gp, gen_ids,
                         run_dir / f"train_{label}_text.jsonl", n, label)
        for k in gen_idx:
            p = prompts[k]
            out[p.id] = Seq(p.id, p.task, tuple(ids[k] + resp[p.id]), len(ids[k]), label)
    return [out[p.id] for p in prompts if out[p.id].n_resp > 0]


def training_text_leaks(train: Sequence[Seq], test: Sequence[Seq],
                        test_prompts: Sequence[Prompt], decode) -> list[dict]:
    """The training sequences whose text, as trained on (the cut prompt and the training text:
    reference or generated continuation, ``decode``d from its token ids), equals or contains a
    test prompt's text, its reference answer or the target's test answer
    (:func:`specfair.tasks.split.find_contained`): ``[{"id", "task", "test_id", "sha256"}]``.
    The prompt check (:func:`study_prompts`) runs before any text is generated; this one sees
    the generated text and the test answers."""
    answers = {s.id: decode(s.ids[s.n_prompt:]) for s in test}
    tests = {p.id: [*p.turns, *((p.reference,) if p.reference else ()),
                    *((answers[p.id],) if p.id in answers else ())] for p in test_prompts}
    leaks = find_contained({s.id: decode(s.ids) for s in train}, tests)
    return [{"id": s.id, "task": s.task, "test_id": leaks[s.id][0], "sha256": leaks[s.id][1]}
            for s in train if s.id in leaks]


def fill_target_final(cfg: StudyConfig, target, seqs: Sequence[Seq], run_dir: Path):
    """The target's final hidden states for ``seqs`` (the test sequences): with its output head
    the evaluation scores exact full-vocabulary alpha and cross-entropy there."""
    return _fill_final(target, [(s.key, (s.ids, s.n_prompt)) for s in seqs], run_dir / "signals",
                       target_name=cfg.target)


def fill_signals(cfg: StudyConfig, target, drafter, seqs: Sequence[Seq], run_dir: Path,
                 final=None):
    """Score every sequence: the target's top-k (teacher) and the drafter's hidden states
    entering its top ``cfg.top_layers`` layers (frozen below). Resumable, one shard per batch.
    ``final``: the store :func:`fill_target_final` filled (the teacher of its sequences is
    read from it, not computed by a second target pass)."""
    return _fill(target, drafter, [(s.key, (s.ids, s.n_prompt)) for s in seqs],
                 run_dir / "signals", target_name=cfg.target, drafter_name=cfg.drafter,
                 topk=cfg.topk, layer=drafter.config.num_hidden_layers - cfg.top_layers,
                 final=final)

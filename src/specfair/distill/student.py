"""The drafter (student) and the target (teacher) on a batch of examples: wrapping the student
(LoRA adapters, one per task, or full fine-tuning), collating examples, the target's cached
hidden states, the held-back alpha estimate and on-policy samples. The loop that uses them:
:mod:`specfair.distill.trainer`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from specfair.distill.cheap import make_cheap_drafter
from specfair.distill.config import DistillConfig
from specfair.distill.data import Example
from specfair.distill.losses import distill_loss_from_hidden
from specfair.drafters.router import adapter_name
from specfair.errors import SpecfairError
from specfair.measure.acceptance import position_alpha
from specfair.measure.signals import target_hidden

# ---------------------------------------------------------------------------- model helpers


def base_lm(model):
    """The plain ``*ForCausalLM`` under peft / DDP wrappers (LoRA layers stay injected)."""
    m = model
    while True:
        if hasattr(m, "module") and isinstance(m, nn.parallel.DistributedDataParallel):
            m = m.module
        elif hasattr(m, "get_base_model"):
            m = m.get_base_model()
        else:
            return m


def backbone_and_head(model) -> tuple[nn.Module, torch.Tensor]:
    m = base_lm(model)
    head = m.get_output_embeddings()
    if getattr(head, "bias", None) is not None:
        raise SpecfairError("output heads with a bias are not supported")
    return getattr(m, m.base_model_prefix), head.weight


def prepare_student(drafter, cfg: DistillConfig, tasks: Sequence[str]):
    """Cheap-drafter truncation, then LoRA (one adapter, or one per task) or full fine-tuning.
    Returns the trainable model; its trainable parameters have ``requires_grad=True``."""
    model = drafter
    if cfg.cheap_layers:
        model = make_cheap_drafter(model, cfg.cheap_layers)
    torch.manual_seed(cfg.seed)
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    lcfg = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets), bias="none", task_type="CAUSAL_LM",
    )
    if cfg.weighting != "per-task":
        return get_peft_model(model, lcfg)
    names = [adapter_name(t) for t in tasks]
    if len(set(names)) != len(names):
        raise SpecfairError(f"task labels collide as adapter names: {list(tasks)}")
    peft_model = get_peft_model(model, lcfg, adapter_name=names[0])
    for a in names[1:]:
        peft_model.add_adapter(a, lcfg)
    for n, p in peft_model.named_parameters():
        if "lora_" in n:
            p.requires_grad_(True)
    return peft_model


class StudentLoss(nn.Module):
    """The drafter plus the chunked loss, so that DDP sees one forward producing the loss."""

    def __init__(self, student, cfg: DistillConfig) -> None:
        super().__init__()
        self.student = student
        self.kind = cfg.loss
        self.temperature = cfg.temperature
        self.beta = cfg.jsd_beta
        self.chunk = cfg.loss_chunk

    def forward(self, input_ids, attention_mask, rows, cols, labels, t_hidden, t_head):
        backbone, head = backbone_and_head(self.student)
        h = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        h = h.last_hidden_state[rows, cols]
        return distill_loss_from_hidden(
            h, head, t_hidden, t_head, self.kind, temperature=self.temperature,
            beta=self.beta, labels=labels, chunk=self.chunk,
        )


# ---------------------------------------------------------------------------- batches


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    labels: torch.Tensor
    spans: list[tuple[int, int]]  # per example: its slice of the flattened loss positions
    n_tokens: int


def truncate(ex: Example, max_seq_len: int) -> tuple[list[int], list[int]]:
    """Keep the response (up to ``max_seq_len - 1`` tokens) and the end of the prompt."""
    resp = list(ex.response_ids)[: max_seq_len - 1]
    prompt = list(ex.prompt_ids)[-(max_seq_len - len(resp)) :]
    return prompt, resp


def collate(examples: Sequence[Example], max_seq_len: int, pad_id: int, device) -> Batch:
    seqs, rows, cols, labels, spans = [], [], [], [], []
    for b, ex in enumerate(examples):
        prompt, resp = truncate(ex, max_seq_len)
        seqs.append(prompt + resp)
        start = len(labels)
        for j, y in enumerate(resp):
            rows.append(b)
            cols.append(len(prompt) + j - 1)
            labels.append(y)
        spans.append((start, len(labels)))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
    t = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return Batch(ids.to(device), mask.to(device), t(rows), t(cols), t(labels), spans,
                 sum(len(s) for s in seqs))


class TeacherCache:
    """The target's final hidden states at each example's loss positions (float32), from the
    shared store of target states (:func:`specfair.measure.signals.target_hidden`: one target
    forward per example and target, shared with the estimate and with other runs on the same
    target). On-policy samples are computed, never remembered."""

    def __init__(self, target, max_seq_len: int) -> None:
        self.target = target
        self.head = backbone_and_head(target)[1]  # the target's output head (weight)
        self.max_seq_len = max_seq_len

    def hidden(self, examples: Sequence[Example], device) -> torch.Tensor:
        """``[N, H_t]`` for the examples' loss positions, in collate order."""
        out = []
        for e in examples:
            prompt, resp = truncate(e, self.max_seq_len)
            out.append(target_hidden(self.target, prompt + resp, len(prompt),
                                     remember=e.source != "onpolicy"))
        return torch.cat(out).to(device=device, dtype=self.head.dtype)


# ---------------------------------------------------------------------------- alpha estimate


@torch.no_grad()
def estimate_alphas(
    student, teacher_cache: TeacherCache, examples: Sequence[Example], *, batch_size: int,
    max_seq_len: int, pad_id: int, device, router=None, rank: int = 0, world_size: int = 1,
    reduce=None, chunk: int = 64,
) -> dict[str, dict[str, float]]:
    """Teacher-forced acceptance per task on ``examples``, the *per-example mean* aggregate of
    :mod:`specfair.measure.acceptance` (mean over examples of the mean over response positions)
    of ``alpha`` and ``greedy`` -- not the pooled one of ``estimate_summary.json``.
    ``router(task)`` gives a context that activates the task's adapter (per-task drafters)."""
    tasks = sorted({e.task for e in examples})
    sums = torch.zeros(len(tasks), 3, dtype=torch.float64)  # alpha, greedy, n_examples
    mine = [e for i, e in enumerate(examples) if i % world_size == rank]
    backbone, head = backbone_and_head(student)
    was_training = student.training
    student.eval()
    for task in tasks:
        ex_t = [e for e in mine if e.task == task]
        ctx = router(task) if router is not None else contextlib.nullcontext()
        with ctx:
            for i in range(0, len(ex_t), batch_size):
                chunk_ex = ex_t[i : i + batch_size]
                batch = collate(chunk_ex, max_seq_len, pad_id, device)
                t_h = teacher_cache.hidden(chunk_ex, device)
                s_h = backbone(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                    use_cache=False,
                ).last_hidden_state[batch.rows, batch.cols]
                a_all, g_all = [], []
                for j in range(0, s_h.shape[0], chunk):
                    a, g = position_alpha(
                        s_h[j : j + chunk] @ head.T,
                        t_h[j : j + chunk].to(teacher_cache.head.dtype) @ teacher_cache.head.T,
                    )
                    a_all.append(a)
                    g_all.append(g)
                a_all, g_all = torch.cat(a_all), torch.cat(g_all)
                k = tasks.index(task)
                for a, b in batch.spans:
                    if b > a:
                        sums[k, 0] += a_all[a:b].mean().item()
                        sums[k, 1] += g_all[a:b].mean().item()
                        sums[k, 2] += 1
    if was_training:
        student.train()
    if reduce is not None:
        sums = reduce(sums)
    return {
        t: {"alpha": float(sums[k, 0] / sums[k, 2]), "greedy": float(sums[k, 1] / sums[k, 2]),
            "n": int(sums[k, 2])}
        for k, t in enumerate(tasks) if sums[k, 2] > 0
    }

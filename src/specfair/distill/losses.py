"""Token-level distillation losses between the drafter q and the target p (pure functions).

Per position, ``p = softmax(target_logits / T)`` and ``q = softmax(drafter_logits / T)``. The
embedding sizes may differ (Qwen pads them with never-produced ids; our tiny test pairs have 288
vs 272 rows); ``V = min(V_target, V_drafter)`` are the shared ids. As in
``specfair.measure.estimate``:

* ``tvd``  total variation ½ sum |p - q| over the union of the two vocabularies, each model's
  probability of ids beyond its own vocabulary being 0, which is exactly
  ``1 - sum_{x < V} min(p(x), q(x)) = 1 - alpha`` -- one minus the estimator's expected
  acceptance rate of speculative sampling at that position
  (:func:`specfair.measure.acceptance.position_alpha`).
* ``jsd``  generalised Jensen-Shannon ``beta KL(p || m) + (1 - beta) KL(q || m)`` with
  ``m = beta p + (1 - beta) q`` (0 < beta < 1), also over the union (always finite).
* ``fkl``  forward KL(p || q) = sum p (log p - log q)  (mass-covering; DistillSpec's FKL) and
* ``rkl``  reverse KL(q || p) = sum q (log q - log p)  (mode-seeking) are computed with both
  distributions renormalised over the shared ids (the estimator's ``kl`` does the same), so they
  stay finite when one model has ids the other lacks.
* ``ce``   cross-entropy -log q(y) of the target's token y (the response token; no p needed).

The loss is *not* multiplied by T².

Memory: the vocabulary is 151,936 for Qwen2.5, so ``[positions, V]`` float32 tensors are 0.6 MB
per position. Everything here works on **chunks of positions** (``chunk`` rows at a time) and only
on the response (loss) positions. ``distill_loss`` takes ready logits (for tests and small
vocabularies); ``distill_loss_from_hidden`` -- what the trainer uses -- takes the final hidden
states at the loss positions plus the two output-embedding matrices and materialises logits one
chunk at a time under activation checkpointing, so the backward pass also holds only one chunk of
vocabulary-sized tensors (the target's chunk is recomputed, cheap relative to the models).
We do not cache top-k target probabilities: the trainer caches the target's final hidden states
instead (exact p at ~1/100 of the memory of full logits).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

# alpha is defined in specfair.measure.acceptance; re-exported under its old name
from specfair.measure.acceptance import position_alpha as acceptance  # noqa: F401

KINDS = ("fkl", "rkl", "tvd", "jsd", "ce")


def token_losses(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    kind: str = "fkl",
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-position loss ``[...]`` from logits ``[..., V_s]`` and ``[..., V_t]`` (no reduction).

    ``labels`` (token ids, same leading shape) are needed for ``ce`` only; ``teacher_logits`` is
    ignored (may be None) for ``ce``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown loss {kind!r}; choose from {KINDS}")
    if kind == "ce":
        if labels is None:
            raise ValueError("the 'ce' loss needs labels")
        logq = F.log_softmax(student_logits.float() / temperature, dim=-1)
        return -logq.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    if teacher_logits is None:
        raise ValueError(f"the {kind!r} loss needs teacher logits")
    v = min(teacher_logits.shape[-1], student_logits.shape[-1])
    if kind in ("fkl", "rkl"):
        logp = F.log_softmax(teacher_logits[..., :v].float() / temperature, dim=-1)
        logq = F.log_softmax(student_logits[..., :v].float() / temperature, dim=-1)
        p, q = logp.exp(), logq.exp()
        if kind == "fkl":
            return torch.where(p > 0, p * (logp - logq), 0.0).sum(-1)
        return torch.where(q > 0, q * (logq - logp), 0.0).sum(-1)
    # union-vocabulary losses: full softmaxes, ids beyond a model's vocabulary have prob. 0
    logp = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    logq = F.log_softmax(student_logits.float() / temperature, dim=-1)
    p_all, q_all = logp.exp(), logq.exp()
    logp, logq, p, q = logp[..., :v], logq[..., :v], p_all[..., :v], q_all[..., :v]
    if kind == "tvd":
        return 1.0 - torch.minimum(p, q).sum(-1)
    if not 0.0 < beta < 1.0:
        raise ValueError("jsd beta must be in (0, 1)")
    logm = torch.logsumexp(
        torch.stack([logp + math.log(beta), logq + math.log(1.0 - beta)]), dim=0
    )
    kl_pm = torch.where(p > 0, p * (logp - logm), 0.0).sum(-1)
    kl_qm = torch.where(q > 0, q * (logq - logm), 0.0).sum(-1)
    # ids only the target has: m = beta p there; ids only the drafter has: m = (1 - beta) q
    kl_pm = kl_pm + p_all[..., v:].sum(-1) * -math.log(beta)
    kl_qm = kl_qm + q_all[..., v:].sum(-1) * -math.log(1.0 - beta)
    return beta * kl_pm + (1.0 - beta) * kl_qm


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    mask: torch.Tensor,
    kind: str = "fkl",
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
    labels: torch.Tensor | None = None,
    chunk: int = 64,
    reduction: str = "mean",
) -> torch.Tensor:
    """Loss over the positions where ``mask`` is true, computed ``chunk`` positions at a time.

    ``student_logits`` ``[B, T, V_s]``, ``teacher_logits`` ``[B, T, V_t]`` (aligned: position i
    predicts token i+1 in both), ``mask`` ``[B, T]``, ``labels`` ``[B, T]`` (for ``ce``).
    ``reduction``: ``mean`` over masked positions (0 if there are none) or ``sum``.
    """
    m = mask.bool()
    s = student_logits[m]
    t = teacher_logits[m] if teacher_logits is not None else None
    y = labels[m] if labels is not None else None
    total = student_logits.new_zeros((), dtype=torch.float32)
    for i in range(0, s.shape[0], chunk):
        total = total + token_losses(
            s[i : i + chunk],
            None if t is None else t[i : i + chunk],
            kind,
            temperature=temperature,
            beta=beta,
            labels=None if y is None else y[i : i + chunk],
        ).sum()
    if reduction == "sum":
        return total
    return total / max(int(m.sum()), 1)


def _chunk_loss(s_h, s_w, t_h, t_w, y, kind, temperature, beta):
    s_logits = s_h @ s_w.T
    t_logits = None
    if t_h is not None:
        with torch.no_grad():
            t_logits = t_h.to(t_w.dtype) @ t_w.T
    return token_losses(
        s_logits, t_logits, kind, temperature=temperature, beta=beta, labels=y
    ).sum()


def distill_loss_from_hidden(
    student_hidden: torch.Tensor,
    student_head: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    teacher_head: torch.Tensor | None,
    kind: str = "fkl",
    *,
    temperature: float = 1.0,
    beta: float = 0.5,
    labels: torch.Tensor | None = None,
    chunk: int = 64,
) -> torch.Tensor:
    """Summed loss over ``N`` positions from final hidden states (memory ``O(chunk * V)``).

    ``student_hidden`` ``[N, H_s]`` (with grad), ``student_head`` the drafter's output-embedding
    weight ``[V_s, H_s]``; ``teacher_hidden`` ``[N, H_t]`` and ``teacher_head`` ``[V_t, H_t]``
    (no grad; None for ``ce``); ``labels`` ``[N]``. Heads without bias only (Qwen2).
    """
    total = student_hidden.new_zeros((), dtype=torch.float32)
    n = student_hidden.shape[0]
    use_ckpt = torch.is_grad_enabled() and student_hidden.requires_grad and n > chunk
    for i in range(0, n, chunk):
        args = (
            student_hidden[i : i + chunk],
            student_head,
            None if teacher_hidden is None else teacher_hidden[i : i + chunk],
            teacher_head,
            None if labels is None else labels[i : i + chunk],
            kind,
            temperature,
            beta,
        )
        if use_ckpt:
            total = total + checkpoint(_chunk_loss, *args, use_reentrant=False)
        else:
            total = total + _chunk_loss(*args)
    return total

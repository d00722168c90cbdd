"""Acceptance α: the one family of definitions (docs/CONTRACTS.md, "Acceptance α").

Per position s of a fixed response (teacher forcing), with p and q the target's and the
drafter's softmaxes at temperature T over their full vocabularies:

* ``alpha(s)  = Σ_{x < V} min(p(x|s), q(x|s))``, V = min(V_target, V_drafter): the probability
  that speculative *sampling* accepts a drafted token (Leviathan et al., 2023);
* ``greedy(s) = 1[argmax p(·|s) = argmax q(·|s)]``: whether greedy verification accepts a greedy
  drafter's token;
* ``ce(s) = -Σ_{x < V} p'(x|s) log q'(x|s)`` and ``kl(s) = Σ_{x < V} p' log(p' / q')`` with p', q'
  the softmaxes over the V shared tokens: the drafter's cross-entropy to the target (Sandler et
  al.'s per-task CE is its mean over a task's positions) and the forward KL.

Two aggregates, never mixed:

* **pooled** over positions (``estimate_summary.json``'s ``alpha`` / ``greedy_alpha``, see
  :func:`specfair.measure.estimate_summary.summarize_estimate`): Σ over every position of
  every prompt / the number of positions (long answers weigh more);
* **per-example mean** (``train_log.jsonl``'s and ``distill_summary.json``'s ``alpha`` /
  ``greedy_alpha``, the held-back estimate that drives ``disparity`` weighting, see
  :func:`specfair.distill.student.estimate_alphas`): the mean over examples of each example's
  mean over its positions (every example weighs the same).

The *measured* acceptance of a benchmark (``bench_summary.json``: ``alpha`` = Σ accepted /
Σ drafted, ``alpha_tested``) comes from the decoder's counts, not from this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def position_alpha(
    drafter_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, greedy)`` per position (leading dimensions kept) from ``[..., V]`` logits."""
    v = min(target_logits.shape[-1], drafter_logits.shape[-1])
    p = F.softmax(target_logits.float() / temperature, dim=-1)[..., :v]
    q = F.softmax(drafter_logits.float() / temperature, dim=-1)[..., :v]
    match = (target_logits.argmax(-1) == drafter_logits.argmax(-1)).float()
    return torch.minimum(p, q).sum(-1), match



def position_ce_kl(
    drafter_logits: torch.Tensor, target_logits: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ce, kl)`` per position (leading dimensions kept) from ``[..., V]`` logits, over the
    V = min(V_target, V_drafter) shared tokens."""
    v = min(target_logits.shape[-1], drafter_logits.shape[-1])
    lp = F.log_softmax(target_logits[..., :v].float() / temperature, dim=-1)
    lq = F.log_softmax(drafter_logits[..., :v].float() / temperature, dim=-1)
    p = lp.exp()
    return -(p * lq).sum(-1), (p * (lp - lq)).sum(-1).clamp_min(0.0)

"""Losses and acceptance on a cached top-k teacher distribution.

The teacher at each position is its top-k log-probabilities plus the *residual* mass
``r = 1 - sum(top-k)``. Every quantity treats the vocabulary as k + 1 buckets: the k teacher
tokens and "everything else" (the student's mass there is ``1 - sum q[top-k]``). On the top-k
tokens this is exact; the tail collapsed into one bucket makes

- forward KL, TVD and JSD *lower bounds* of the full-vocabulary values (data processing), equal
  to them when k = V;
- acceptance ``sum min(p, q)`` an *upper bound*, too high by at most ``r`` per position
  (``min(r, q_rest)`` stands in for the tail's ``sum min``);
- greedy agreement (the student's argmax is the teacher's top-1) exact.

These are the functions every top-k consumer uses (training losses, alpha estimates).
"""

from __future__ import annotations

import torch

TOPK_LOSSES = ("fkl", "tvd", "jsd")


def bucket_probs(student_logits: torch.Tensor, topk_idx: torch.Tensor,
                 topk_logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p, q)``, each ``[N, k + 1]``: teacher and student probabilities on the teacher's top-k
    tokens, the last column the rest of the vocabulary. ``student_logits``: ``[N, V]``."""
    logq = torch.log_softmax(student_logits.float(), dim=-1)
    beyond = int(topk_idx.max()) + 1 - logq.shape[-1]
    if beyond > 0:  # a smaller drafter vocabulary: no mass on the target's extra tokens
        logq = torch.nn.functional.pad(logq, (0, beyond), value=float("-inf"))
    q_top = logq.gather(-1, topk_idx.long()).exp()
    p_top = topk_logp.float().exp()
    q_rest = (1.0 - q_top.sum(-1, keepdim=True)).clamp_min(0.0)
    p_rest = (1.0 - p_top.sum(-1, keepdim=True)).clamp_min(0.0)
    return torch.cat([p_top, p_rest], -1), torch.cat([q_top, q_rest], -1)


def topk_loss(student_logits: torch.Tensor, topk_idx: torch.Tensor, topk_logp: torch.Tensor,
              kind: str = "fkl", beta: float = 0.5) -> torch.Tensor:
    """Summed over positions (divide by the position count for a mean)."""
    if kind not in TOPK_LOSSES:
        raise ValueError(f"top-k loss {kind!r} (choose from {', '.join(TOPK_LOSSES)})")
    p, q = bucket_probs(student_logits, topk_idx, topk_logp)
    eps = 1e-12
    if kind == "fkl":
        return (p * (torch.log(p + eps) - torch.log(q + eps))).sum()
    if kind == "tvd":
        return 0.5 * (p - q).abs().sum()
    m = beta * p + (1 - beta) * q
    kl_pm = (p * (torch.log(p + eps) - torch.log(m + eps))).sum()
    kl_qm = (q * (torch.log(q + eps) - torch.log(m + eps))).sum()
    return beta * kl_pm + (1 - beta) * kl_qm


@torch.no_grad()
def topk_acceptance(student_logits: torch.Tensor, topk_idx: torch.Tensor,
                    topk_logp: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per position: ``alpha`` (``sum min(p, q)`` on the k + 1 buckets: an upper bound of the
    full-vocabulary acceptance), ``alpha_lo`` (``sum min(p, q)`` over the teacher's top-k tokens
    only, both full softmaxes: a lower bound; ``alpha - alpha_lo = min(p_rest, q_rest)``),
    ``greedy`` (the student's argmax is the teacher's top-1: exact), ``ce`` (cross-entropy
    ``-sum p log q`` on the buckets, a lower bound of the full-vocabulary CE and what the
    ``fkl`` loss trains) and ``resid`` (the teacher's residual mass ``1 - sum p[top-k]``: the
    most by which ``alpha`` can be too high)."""
    p, q = bucket_probs(student_logits, topk_idx, topk_logp)
    top1 = topk_idx[:, 0].long()
    both = torch.minimum(p, q)
    return {
        "alpha": both.sum(-1),
        "alpha_lo": both[:, :-1].sum(-1),
        "greedy": (student_logits.argmax(-1) == top1).float(),
        "ce": -(p * torch.log(q + 1e-12)).sum(-1),
        "resid": p[:, -1],
    }

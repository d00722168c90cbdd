"""Verification of a block of drafts (pure functions, vectorised over batch and positions).

Shapes: ``B`` rows, ``G`` drafts per row, vocabulary ``V`` (the target's; pad the drafter's
probabilities with zeros to it, see ``sampling.fit_vocab``).

- ``draft_tokens`` [B, G]: x_1..x_G, x_i sampled from q_i = q(. | prefix, x_<i);
- ``q`` [B, G, V]: the drafter's distributions the drafts were sampled from;
- ``p`` [B, G+1, V]: the target's distributions at the same positions plus one (for the bonus).

Modified rejection sampling (Leviathan et al. 2023, Chen et al. 2023): accept x_i with
probability min(1, p_i(x_i) / q_i(x_i)), stopping at the first rejection; on a rejection at
position i sample the correction token from norm(max(0, p_i - q_i)); if all G drafts are
accepted sample a bonus token from p_{G+1}. Every emitted token is then distributed exactly as
the target's (conditional) distribution. Greedy decoding is the special case where p and q are
one-hot: accept while the draft equals the target's argmax, the correction (or bonus) token is
the target's argmax at the first mismatch (or after the last draft).
"""

from __future__ import annotations

import torch


def acceptance_probs(draft_tokens: torch.Tensor, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """min(1, p_i(x_i) / q_i(x_i)) for every draft [B, G] (1 where q_i(x_i) = 0 < p_i(x_i),
    0 where both are 0)."""
    g = draft_tokens.shape[-1]
    idx = draft_tokens.unsqueeze(-1)
    p_x = p[:, :g].gather(-1, idx).squeeze(-1)
    q_x = q.gather(-1, idx).squeeze(-1)
    tiny = torch.finfo(q_x.dtype).tiny
    ratio = torch.where(q_x > 0, p_x / q_x.clamp_min(tiny), (p_x > 0).to(p_x))
    return ratio.clamp(max=1.0)


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) over the last dimension; where p <= q everywhere (a rejection then has
    probability 0) it falls back to p, which keeps the result a distribution."""
    res = (p - q).clamp_min(0.0)
    total = res.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, res / total.clamp_min(torch.finfo(res.dtype).tiny), p)


def next_token_distribution(n_accepted: torch.Tensor, q: torch.Tensor, p: torch.Tensor):
    """The distribution [B, V] of the token that follows ``n_accepted`` [B] accepted drafts: the
    residual at the first rejected position, or p_{G+1} (bonus) when all G were accepted."""
    g = q.shape[1]
    rows = torch.arange(p.shape[0], device=p.device)
    if g == 0:
        return p[rows, 0]
    pos = n_accepted.clamp(max=g - 1)
    residual = residual_distribution(p[rows, pos], q[rows, pos])
    return torch.where((n_accepted == g).unsqueeze(-1), p[rows, g], residual)


def count_accepted(accept: torch.Tensor) -> torch.Tensor:
    """Length of the all-True prefix of each row of a boolean [B, G] mask -> [B] (int64)."""
    return accept.to(torch.int64).cumprod(dim=-1).sum(dim=-1)


def rejection_sample(
    draft_tokens: torch.Tensor,
    q: torch.Tensor,
    p: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify the drafts: (n_accepted [B] int64, next_token [B] int64), where next_token is the
    correction token (rejection) or the bonus token (all accepted)."""
    b, g = draft_tokens.shape
    if g == 0:
        return (
            torch.zeros(b, dtype=torch.int64, device=p.device),
            torch.multinomial(p[:, 0], 1, generator=generator).squeeze(-1),
        )
    u = torch.rand((b, g), generator=generator, device=p.device, dtype=p.dtype)
    n = count_accepted(u < acceptance_probs(draft_tokens, q, p))
    dist = next_token_distribution(n, q, p)
    return n, torch.multinomial(dist, 1, generator=generator).squeeze(-1)


def greedy_verify(
    draft_tokens: torch.Tensor, target_argmax: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy verification: ``target_argmax`` [B, G+1] is the target's argmax at each position.
    Returns (n_accepted [B], next_token [B]) with next_token = target_argmax[n_accepted]."""
    g = draft_tokens.shape[-1]
    n = count_accepted(draft_tokens == target_argmax[:, :g])
    return n, target_argmax.gather(-1, n.unsqueeze(-1)).squeeze(-1)

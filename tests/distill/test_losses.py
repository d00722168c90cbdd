"""Losses: hand-computed values on 3-4 token vocabularies, gradient signs, chunking, and
TVD = 1 - alpha of specfair.measure.estimate."""

from __future__ import annotations

import math

import pytest
import torch

from specfair.distill.losses import (
    acceptance,
    distill_loss,
    distill_loss_from_hidden,
    token_losses,
)

P = [0.5, 0.25, 0.25]
Q = [0.25, 0.5, 0.25]


def logits(probs):
    return torch.tensor(probs).log()


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("fkl", 0.5 * math.log(2) + 0.25 * math.log(0.5)),  # = 0.25 ln 2
        ("rkl", 0.25 * math.log(0.5) + 0.5 * math.log(2)),
        ("tvd", 0.5 * (0.25 + 0.25 + 0.0)),
        ("jsd", 0.5 * kl(P, [0.375, 0.375, 0.25]) + 0.5 * kl(Q, [0.375, 0.375, 0.25])),
    ],
)
def test_hand_computed_symmetric(kind, expected):
    got = token_losses(logits(Q), logits(P), kind)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_hand_computed_asymmetric_and_beta():
    p, q = [0.7, 0.2, 0.1], [0.2, 0.5, 0.3]
    t, s = logits(p), logits(q)
    assert token_losses(s, t, "fkl").item() == pytest.approx(kl(p, q), abs=1e-6)
    assert token_losses(s, t, "rkl").item() == pytest.approx(kl(q, p), abs=1e-6)
    assert token_losses(s, t, "tvd").item() == pytest.approx(0.5 * (0.5 + 0.3 + 0.2), abs=1e-6)
    b = 0.2
    m = [b * x + (1 - b) * y for x, y in zip(p, q, strict=True)]
    assert token_losses(s, t, "jsd", beta=b).item() == pytest.approx(
        b * kl(p, m) + (1 - b) * kl(q, m), abs=1e-6
    )
    assert token_losses(s, None, "ce", labels=torch.tensor(1)).item() == pytest.approx(
        -math.log(0.5), abs=1e-6
    )
    # temperature: both distributions softened
    t2 = token_losses(s, t, "fkl", temperature=2.0).item()
    p2 = torch.softmax(t / 2, -1).tolist()
    q2 = torch.softmax(s / 2, -1).tolist()
    assert t2 == pytest.approx(kl(p2, q2), abs=1e-6)


def test_vocab_mismatch_hand_computed():
    """Target has 4 ids, drafter 3: TVD over the union (drafter prob 0 on id 3), KL renormalised
    on the shared ids."""
    p, q = [0.4, 0.3, 0.2, 0.1], [0.5, 0.25, 0.25]
    t, s = logits(p), logits(q)
    assert token_losses(s, t, "tvd").item() == pytest.approx(1 - (0.4 + 0.25 + 0.2), abs=1e-6)
    pr = [x / 0.9 for x in p[:3]]
    assert token_losses(s, t, "fkl").item() == pytest.approx(kl(pr, q), abs=1e-6)
    assert token_losses(s, t, "rkl").item() == pytest.approx(kl(q, pr), abs=1e-6)
    b = 0.5
    m = [b * x + (1 - b) * y for x, y in zip(p, q + [0.0], strict=True)]
    expected = b * kl(p, m) + (1 - b) * kl(q + [0.0], m)
    assert token_losses(s, t, "jsd", beta=b).item() == pytest.approx(expected, abs=1e-6)
    a, g = acceptance(s, t)
    assert a.item() == pytest.approx(0.85, abs=1e-6) and g.item() == 1.0


@pytest.mark.parametrize("kind", ["fkl", "rkl", "tvd", "jsd", "ce"])
def test_moving_q_towards_p_lowers_the_loss(kind):
    t = logits([0.6, 0.3, 0.05, 0.05])
    s = logits([0.1, 0.2, 0.3, 0.4]).requires_grad_(True)
    y = torch.tensor(0)
    loss = token_losses(s, t, kind, labels=y)
    loss.backward()
    # the gradient pushes the logit of the most probable target token up
    assert s.grad[0] < 0
    with torch.no_grad():
        closer = s + 0.3 * (t - s)
        stepped = s - 0.5 * s.grad
        assert token_losses(closer, t, kind, labels=y) < loss
        assert token_losses(stepped, t, kind, labels=y) < loss


@pytest.mark.parametrize("kind", ["fkl", "rkl", "tvd", "jsd", "ce"])
def test_chunked_and_from_hidden_agree_with_direct(kind):
    g = torch.Generator().manual_seed(0)
    B, T, H = 2, 5, 8
    t_w, s_w = torch.randn(12, H, generator=g), torch.randn(10, H, generator=g)
    t_h, s_h = torch.randn(B, T, H, generator=g), torch.randn(B, T, H, generator=g)
    s_h.requires_grad_(True)
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 0, 1, 1]]).bool()
    labels = torch.randint(0, 10, (B, T), generator=g)
    t_logits, s_logits = t_h @ t_w.T, s_h @ s_w.T
    direct = token_losses(s_logits[mask], t_logits[mask], kind, labels=labels[mask]).mean()
    chunked = distill_loss(s_logits, t_logits, mask, kind, labels=labels, chunk=2)
    assert chunked.item() == pytest.approx(direct.item(), abs=1e-6)
    (g1,) = torch.autograd.grad(direct, s_h)
    hid = distill_loss_from_hidden(s_h[mask], s_w, t_h[mask], t_w, kind,
                                   labels=labels[mask], chunk=3) / mask.sum()
    assert hid.item() == pytest.approx(direct.item(), abs=1e-6)
    (g2,) = torch.autograd.grad(hid, s_h)  # through activation checkpointing
    assert torch.allclose(g1, g2, atol=1e-6)


def test_tvd_is_one_minus_estimator_alpha(tiny_pair, tok, examples):
    """On the tiny pair (vocab 288 vs 272), the TVD loss at each response position equals
    1 - alpha of specfair.measure.estimate.teacher_forced_positions."""
    from distill_helpers import load

    from specfair.distill.student import TeacherCache, backbone_and_head, collate
    from specfair.measure.estimate import teacher_forced_positions

    target, drafter = load(tiny_pair[0]), load(tiny_pair[1])
    ex = examples[0]
    est = teacher_forced_positions(target, drafter, ex.prompt_ids, ex.response_ids)
    batch = collate([ex], 512, tok.pad_token_id, "cpu")
    t_h = TeacherCache(target, 512).hidden([ex], "cpu")
    bb, head = backbone_and_head(drafter)
    with torch.no_grad():
        s_h = bb(input_ids=batch.input_ids).last_hidden_state[batch.rows, batch.cols]
        tvd = token_losses(s_h @ head.T, t_h @ target.lm_head.weight.T, "tvd")
    assert torch.allclose(tvd.double(), 1 - est["alpha"], atol=1e-5)

"""Top-k losses, the signal store and top-N-layer training on tiny random models."""

from __future__ import annotations

import json
import random

import pytest
import torch
from tiny import tiny_config
from transformers import Qwen2ForCausalLM

from specfair.distill import topn
from specfair.distill.losses import acceptance
from specfair.distill.topk import bucket_probs, topk_acceptance, topk_loss
from specfair.distill.topn import (
    Signals,
    TopLayers,
    TrainState,
    batch_loss,
    drop_moments,
    evaluate,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    sequence_loss,
    train_until,
)
from specfair.errors import SpecfairError
from specfair.measure.signals import SignalStore, lower_hidden, seq_key, target_topk

V = 300


def _model(seed: int, layers: int = 4) -> Qwen2ForCausalLM:
    """Untied, sharp output heads: teacher and student disagree on most tokens."""
    torch.manual_seed(seed)
    cfg = tiny_config(V, layers, 32)
    cfg.tie_word_embeddings = False
    m = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.normal_(0, 1.0)
    return m


def _full_fkl(s_logits, t_logits):
    p = torch.softmax(t_logits, -1)
    return (p * (torch.log_softmax(t_logits, -1) - torch.log_softmax(s_logits, -1))).sum()


def test_topk_losses_equal_full_vocabulary_when_k_is_v_and_bound_it_otherwise():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(7, V, generator=g) * 3, torch.randn(7, V, generator=g) * 3
    logp = torch.log_softmax(t, -1)
    val, idx = logp.topk(V, -1)
    assert torch.allclose(topk_loss(s, idx, val, "fkl"), _full_fkl(s, t), atol=1e-4)
    a_full, g_full = acceptance(s, t)
    m = topk_acceptance(s, idx, val)
    assert torch.allclose(m["alpha"], a_full, atol=1e-5)
    assert torch.allclose(m["alpha_lo"], a_full, atol=1e-5)  # no residual: the bounds meet
    assert torch.equal(m["greedy"], g_full.float())
    tvd_full = 0.5 * (torch.softmax(s, -1) - torch.softmax(t, -1)).abs().sum()
    assert torch.allclose(topk_loss(s, idx, val, "tvd"), tvd_full, atol=1e-4)
    # k < V: KL and TVD are lower bounds, alpha an upper bound by at most the residual mass
    val, idx = logp.topk(16, -1)
    assert topk_loss(s, idx, val, "fkl") <= _full_fkl(s, t) + 1e-5
    assert topk_loss(s, idx, val, "tvd") <= tvd_full + 1e-5
    m = topk_acceptance(s, idx, val)
    assert (m["alpha"] >= a_full - 1e-6).all()
    assert (m["alpha"] <= a_full + m["resid"] + 1e-6).all()
    # the top-k-only sum is a lower bound; the gap is min(p_rest, q_rest) <= the residual
    assert (m["alpha_lo"] <= a_full + 1e-6).all()
    assert (m["alpha"] - m["alpha_lo"] <= m["resid"] + 1e-6).all()
    assert (m["alpha"] - m["alpha_lo"] > 1e-4).any()  # k < V: a gap there is, somewhere
    assert ((m["resid"] >= 0) & (m["resid"] <= 1)).all()
    assert torch.equal(m["greedy"], g_full.float())
    p, q = bucket_probs(s, idx, val)
    assert torch.allclose(p.sum(-1), torch.ones(7)) and torch.allclose(q.sum(-1), torch.ones(7))


def test_top_layers_on_cached_lower_hidden_equal_the_full_model():
    m = _model(1)
    ids = list(range(5, 40))
    h = lower_hidden(m, [(ids, 10)], layer=2)[0]["hidden"]
    top = TopLayers(m, 2)
    with torch.no_grad():
        mine = top(h.float()[None])[0] @ m.lm_head.weight.T
        full = m(input_ids=torch.tensor([ids])).logits[0]
    # the cache is bf16: small differences, the same argmax nearly everywhere
    assert (mine.argmax(-1) == full.argmax(-1)).float().mean() > 0.95
    assert torch.allclose(mine, full, atol=0.5, rtol=0.05)


def test_signal_store_resumes_and_refuses_other_settings(tmp_path):
    t = _model(2)
    seqs = [(list(range(3, 20 + i)), 8) for i in range(5)]
    items = [(seq_key(i, n), (i, n)) for i, n in seqs]
    store = SignalStore(tmp_path / "s", {"k": 4})
    assert store.fill(items[:3], lambda b: target_topk(t, b, 4), batch=2) == 3
    with open(tmp_path / "s" / "index.jsonl", "a") as f:
        f.write('{"key": "torn')  # a crash mid-line
    again = SignalStore(tmp_path / "s", {"k": 4})
    assert len(again) == 3
    assert again.fill(items, lambda b: target_topk(t, b, 4), batch=2) == 2
    got = again.get(items[4][0])
    assert got["topk_idx"].shape == (len(seqs[4][0]) - 8, 4)
    full = torch.log_softmax(t(input_ids=torch.tensor([seqs[4][0]])).logits[0, 7:-1], -1)
    assert torch.allclose(got["topk_logp"], full.topk(4, -1).values, atol=1e-5)
    with pytest.raises(SpecfairError, match="other settings"):
        SignalStore(tmp_path / "s", {"k": 8})


def _signals(teacher, drafter, n_layers_top, n=6, seed=0):
    rng = random.Random(seed)
    seqs = [([rng.randrange(3, V) for _ in range(24)], 8) for _ in range(n)]
    tk = target_topk(teacher, seqs, 16)
    lh = lower_hidden(drafter, seqs, 4 - n_layers_top)
    return [Signals(h["hidden"], t["topk_idx"], t["topk_logp"], 8)
            for h, t in zip(lh, tk, strict=True)]


def test_a_batch_forwarded_at_once_equals_its_sequences_one_by_one():
    """Right-padded into one forward, sequences of different lengths and prompt lengths give
    the sum of their losses one by one, and the same gradients."""
    torch.manual_seed(0)
    teacher, drafter = _model(3), _model(4)
    rng = random.Random(1)
    seqs = [([rng.randrange(3, V) for _ in range(n)], p) for n, p in ((24, 8), (11, 3), (17, 16))]
    tk, lh = target_topk(teacher, seqs, 16), lower_hidden(drafter, seqs, 2)
    sig = [Signals(h["hidden"], t["topk_idx"], t["topk_logp"], p)
           for h, t, (_, p) in zip(lh, tk, seqs, strict=True)]
    top, head = TopLayers(drafter, 2), drafter.lm_head.weight.detach()
    for kind in ("fkl", "tvd", "jsd"):
        one = sum(sequence_loss(top, head, x, kind, False) for x in sig)
        one.backward()
        g1 = [p.grad.clone() for p in top.parameters()]
        top.zero_grad()
        both = batch_loss(top, head, sig, kind, False)
        both.backward()
        assert torch.allclose(both, one, rtol=1e-5, atol=1e-6), (kind, both, one)
        for a, p in zip(g1, top.parameters(), strict=True):
            assert float((a - p.grad).norm()) <= 1e-4 * float(a.norm()) + 1e-7, kind
        top.zero_grad()
    one, both = evaluate(top, head, sig, False, batch=1), evaluate(top, head, sig, False)
    for a, b in zip(one, both, strict=True):
        assert a["match"] == b["match"] and a["n"] == b["n"]
        assert all(abs(a[k] - b[k]) < 1e-5 for k in ("alpha", "alpha_lo", "ce", "greedy"))


def test_top_layer_training_overfits_its_training_sequences():
    """The fast version of the study's overfit check: greedy alpha on the training sequences
    rises by far more than 0.15 after a few epochs."""
    torch.manual_seed(0)
    teacher, drafter = _model(3), _model(4)
    sig = _signals(teacher, drafter, 2)
    top = TopLayers(drafter, 2)
    head = drafter.lm_head.weight.detach()
    before = sum(r["greedy"] for r in evaluate(top, head, sig, False)) / len(sig)
    opt = make_optimizer(top, 3e-3)
    train_until(top, head, opt, TrainState(), lambda: sig, 60 * 24 * len(sig), lr=3e-3,
                warmup=2, kind="fkl", bf16=False)
    after = sum(r["greedy"] for r in evaluate(top, head, sig, False)) / len(sig)
    assert after >= before + 0.15, (before, after)


def test_checkpoint_resume_equals_uninterrupted_training(tmp_path):
    teacher, drafter = _model(5), _model(6)
    sig = _signals(teacher, drafter, 1, n=4)
    head = drafter.lm_head.weight.detach()

    kw = {"lr": 1e-3, "warmup": 2, "kind": "fkl", "bf16": False}

    def run(stop_at: int | None):
        torch.manual_seed(0)
        top = TopLayers(drafter, 1)
        opt = make_optimizer(top, 1e-3)
        rng = random.Random(0)
        draw = lambda: rng.sample(sig, 2)  # noqa: E731
        state = TrainState()
        if stop_at is None:
            train_until(top, head, opt, state, draw, 24 * 2 * 6, **kw)
            return top
        train_until(top, head, opt, state, draw, 24 * 2 * stop_at, **kw)
        save_checkpoint(tmp_path / "ck", top, opt, state, {"rng": rng.getstate()[1][:3]})
        top2 = TopLayers(drafter, 1)
        opt2 = make_optimizer(top2, 1e-3)
        state2, _ = load_checkpoint(tmp_path / "ck", top2, opt2)
        train_until(top2, head, opt2, state2, draw, 24 * 2 * 6, **kw)
        return top2

    a, b = run(None), run(3)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), n
    assert not any(p.suffix == ".pt" for p in (tmp_path / "ck").iterdir())


def test_evaluate_scores_exact_alpha_and_ce_from_the_targets_final_states(tmp_path):
    """With the target's final hidden states (stored, then read back) and its output head, the
    evaluation's ``alpha_full`` and ``ce_full`` equal the full-vocabulary values from the
    target's own logits, and lie within (alpha) or above (CE) the top-k bucket values."""
    from specfair.measure.acceptance import position_alpha, position_ce_kl
    from specfair.measure.signals import fill_target_final

    teacher, drafter = _model(5), _model(6)
    rng = random.Random(1)
    seqs = [([rng.randrange(3, V) for _ in range(20)], 6) for _ in range(3)]
    store = fill_target_final(teacher, [(seq_key(i, n), (i, n)) for i, n in seqs], tmp_path,
                              target_name="t")
    tk = target_topk(teacher, seqs, 16)
    lh = lower_hidden(drafter, seqs, 2)
    sig = [Signals(h["hidden"], t["topk_idx"], t["topk_logp"], n,
                   store.get(seq_key(i, n))["hidden"])
           for (i, n), h, t in zip(seqs, lh, tk, strict=True)]
    top = TopLayers(drafter, 2)
    head = drafter.lm_head.weight.detach()
    res = evaluate(top, head, sig, False, teacher.lm_head.weight.detach())
    assert "alpha_full" not in evaluate(top, head, sig, False)[0]  # no head, no exact values
    for (ids, n), r in zip(seqs, res, strict=True):
        with torch.no_grad():
            lt = teacher(input_ids=torch.tensor([ids])).logits[0, n - 1:-1]
            lq = drafter(input_ids=torch.tensor([ids])).logits[0, n - 1:-1]
        a, _ = position_alpha(lq, lt)
        ce, _ = position_ce_kl(lq, lt)
        assert abs(r["alpha_full"] - float(a.mean())) < 2e-3
        assert abs(r["ce_full"] - float(ce.mean())) < 2e-2
        assert r["alpha_lo"] - 1e-4 <= r["alpha_full"] <= r["alpha"] + 1e-4
        assert r["ce_full"] >= r["ce"] - 1e-4  # the buckets' CE is a lower bound
        assert r["alpha"] - r["alpha_lo"] > 1e-4  # k < V: the bounds differ


def test_dropping_a_finished_checkpoints_moments_keeps_its_weights(tmp_path):
    """A copy trained to the end keeps its weights (exported, timed) and loses its AdamW
    moments (2/3 of the checkpoint); loading it gives the same weights and no moments."""
    teacher, drafter = _model(5), _model(6)
    sig = _signals(teacher, drafter, 1, n=4)
    head = drafter.lm_head.weight.detach()
    torch.manual_seed(0)
    top = TopLayers(drafter, 1)
    opt = make_optimizer(top, 1e-3)
    state = train_until(top, head, opt, TrainState(), lambda: sig[:2], 24 * 2 * 2, lr=1e-3,
                        warmup=1, kind="fkl", bf16=False)
    save_checkpoint(tmp_path / "ck", top, opt, state, {"budget": 1.0})
    drop_moments(tmp_path / "ck")
    assert not (tmp_path / "ck" / "adam.st").exists()
    top2 = TopLayers(drafter, 1)
    opt2 = make_optimizer(top2, 1e-3)
    state2, meta = load_checkpoint(tmp_path / "ck", top2, opt2)
    assert (state2.step, state2.tokens, meta["budget"]) == (state.step, state.tokens, 1.0)
    assert not opt2.state
    # the response positions (supervised) counted apart from the prompt positions, kept
    n_pos = sum(int(s.topk_idx.shape[0]) for s in sig[:2])
    n_tok = sum(int(s.hidden.shape[0]) for s in sig[:2])
    assert 0 < n_pos < n_tok and state.step >= 2
    assert (state.supervised, state.tokens) == (state.step * n_pos, state.step * n_tok)
    assert state2.supervised == state.supervised
    # a checkpoint written before they were counted: unknown, not 0
    meta = json.loads((tmp_path / "ck" / "state.json").read_text())
    (tmp_path / "ck" / "state.json").write_text(json.dumps(
        {k: v for k, v in meta.items() if k != "supervised"}))
    assert load_checkpoint(tmp_path / "ck", top2, opt2)[0].supervised is None
    for (n, p), (_, q) in zip(top.state_dict().items(), top2.state_dict().items(), strict=True):
        assert torch.equal(p, q), n


def test_training_reports_progress_with_an_eta_while_it_runs(monkeypatch, capsys):
    """A long training stage is never silent on a redirected stdout: a line with the tokens
    done, the goal and an ETA at each heartbeat (here every step)."""
    monkeypatch.setattr(topn, "HEARTBEAT_S", 0.0)
    torch.manual_seed(0)
    drafter = _model(4)
    sig = _signals(_model(3), drafter, 2)
    top = TopLayers(drafter, 2)
    opt = make_optimizer(top, 1e-3)
    goal = 3 * sum(int(s.hidden.shape[0]) for s in sig)  # three steps
    train_until(top, drafter.lm_head.weight.detach(), opt, TrainState(), lambda: sig,
                goal, lr=1e-3, warmup=1, kind="fkl", bf16=False)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[train tokens]")]
    assert len(lines) >= 2, lines
    assert f"/{goal} elapsed" in lines[-1] and "ETA" in lines[-1] and "step" in lines[-1]


def test_evaluation_reports_progress_with_an_eta_while_it_runs(monkeypatch, capsys):
    """An evaluation of many sequences is never silent either (the dose run's overfit check
    evaluated 471 long answers for minutes without a line): one line per batch past the
    heartbeat, the sequences done of all and an ETA."""
    from specfair.distill.topn import evaluate

    monkeypatch.setattr(topn, "HEARTBEAT_S", 0.0)
    torch.manual_seed(0)
    drafter = _model(4)
    sig = _signals(_model(3), drafter, 3)
    top = TopLayers(drafter, 2)
    recs = evaluate(top, drafter.lm_head.weight.detach(), sig, False, batch=1)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[evaluate]")]
    n = len(sig)
    assert len(recs) == n and len(lines) == n, lines
    assert lines[-1].startswith(f"[evaluate] {n - 1}/{n} elapsed") and "ETA" in lines[-1]


def test_the_task_mean_loss_weighs_each_task_alike_whatever_its_answer_lengths():
    """``grouped_loss``: the mean over the batch's tasks of each task's loss per response
    position (one long-answer task no longer outweighs a short-answer one); with one task it
    is the per-position mean; ``train_sampled(task_mean=True)`` trains on it."""
    from specfair.distill.topn import grouped_loss, train_sampled
    from specfair.distill.weighting import TaskSampler

    torch.manual_seed(0)
    teacher, drafter = _model(3), _model(4)
    rng = random.Random(2)
    seqs = [([rng.randrange(3, V) for _ in range(n)], p)
            for n, p in ((40, 4), (36, 6), (12, 8), (30, 3))]  # long, long, short, long
    tk, lh = target_topk(teacher, seqs, 16), lower_hidden(drafter, seqs, 2)
    sig = [Signals(h["hidden"], t["topk_idx"], t["topk_logp"], p)
           for h, t, (_, p) in zip(lh, tk, seqs, strict=True)]
    labels = ["chat", "chat", "ja", "code"]
    top, head = TopLayers(drafter, 2), drafter.lm_head.weight.detach()
    with torch.no_grad():
        per = {t: [s for s, g in zip(sig, labels, strict=True) if g == t] for t in set(labels)}
        want = sum(batch_loss(top, head, ss, "fkl", False)
                   / sum(int(s.topk_idx.shape[0]) for s in ss) for ss in per.values()) / 3
        got = grouped_loss(top, head, sig, labels, "fkl", False)
        assert torch.allclose(got, want, rtol=1e-5), (got, want)
        pos = batch_loss(top, head, sig, "fkl", False) / sum(int(s.topk_idx.shape[0])
                                                              for s in sig)
        assert not torch.allclose(got, pos, rtol=1e-3)  # the per-position mean differs here
        one = grouped_loss(top, head, sig, ["t"] * 4, "fkl", False)
        assert torch.allclose(one, pos, rtol=1e-5)
    with pytest.raises(ValueError):
        grouped_loss(top, head, sig, labels[:2], "fkl", False)
    runs = {}
    for task_mean in (False, True):
        torch.manual_seed(0)
        t2 = TopLayers(drafter, 2)
        opt = make_optimizer(t2, 1e-3)
        sampler = TaskSampler(labels, "uniform", seed=0)
        train_sampled(t2, head, opt, TrainState(), sig, sampler, 200, batch_size=4, lr=1e-3,
                      warmup=1, kind="fkl", bf16=False, task_mean=task_mean)
        runs[task_mean] = [p.detach().clone() for p in t2.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(runs[False], runs[True], strict=True))


@pytest.mark.parametrize("head_agrees", [True, False])
def test_the_test_sequences_teacher_comes_from_their_final_states(tmp_path, monkeypatch,
                                                                  head_agrees):
    """A sequence whose final states are stored takes its teacher top-k from them through the
    output head (one decoder pass for both, plus one forward to check they agree); where they
    do not agree (a target whose logits are not head x states) every entry is a forward's."""
    from specfair.measure import signals
    from specfair.measure.signals import fill_signals, fill_target_final

    teacher, drafter = _model(5), _model(6)
    rng = random.Random(2)
    seqs = [([rng.randrange(3, V) for _ in range(20)], 6) for _ in range(5)]
    items = [(seq_key(i, n), (i, n)) for i, n in seqs]
    final = fill_target_final(teacher, items[:3], tmp_path, target_name="t")
    if not head_agrees:
        of_states = signals.topk_of_states
        monkeypatch.setattr(signals, "topk_of_states", lambda t, h, k: {
            **of_states(t, h, k), "topk_logp": of_states(t, h, k)["topk_logp"] - 1.0})
    passes = []
    teacher.model.register_forward_hook(lambda *a: passes.append(1))
    store, _ = fill_signals(teacher, drafter, items, tmp_path, target_name="t",
                            drafter_name="d", topk=8, layer=2, final=final)
    # one forward to check the first stored sequence, one for each sequence without states;
    # every one where the head disagrees
    assert len(passes) == (1 + 2 if head_agrees else 5)
    for (i, n), (key, _) in zip(seqs, items, strict=True):
        want = target_topk(teacher, [(i, n)], 8)[0]
        got = store.get(key)
        assert torch.equal(got["topk_idx"], want["topk_idx"])
        assert torch.allclose(got["topk_logp"], want["topk_logp"], atol=1e-4)

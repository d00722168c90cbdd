"""Train only the drafter's top N decoder layers, on cached signals.

The layers below are frozen, so their output for a training sequence never changes: it is
computed once (:func:`specfair.measure.signals.lower_hidden`) and the top layers train on it.
The teacher is the target's cached top-k (:mod:`specfair.distill.topk`), so neither the target
nor the drafter's lower body runs in the training loop. The output head stays frozen (it is
tied to the input embeddings in most small drafters, and a third of the 0.5B drafter).

One loop, nanoGPT style: draw a batch (``TaskSampler``), forward it (right-padded), step. The
weights are fp32; matmuls run under bf16 autocast where the CPU has native bf16.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from specfair.atomic import atomic_dir, write_text
from specfair.distill.guard import check_step, check_weights
from specfair.distill.topk import topk_acceptance, topk_loss
from specfair.errors import SpecfairError
from specfair.measure.acceptance import position_alpha, position_ce_kl
from specfair.measure.io import read_json
from specfair.measure.progress import HEARTBEAT_S, progress_line
from specfair.models.finite import nonfinite
from specfair.models.weights import check_complete, load_weights, read_tensors


class TopLayers(nn.Module):
    """A trainable copy of the drafter's top ``n`` decoder layers and final norm (fp32)."""

    def __init__(self, drafter, n: int) -> None:
        super().__init__()
        body = drafter.model
        if not 1 <= n <= len(body.layers):
            raise ValueError(f"top layers {n} not in 1..{len(body.layers)}")
        self.n = n
        self.layers = nn.ModuleList(copy.deepcopy(x).float() for x in body.layers[-n:])
        self.norm = copy.deepcopy(body.norm).float()
        self.rotary = body.rotary_emb
        self.config = body.config

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden``: ``[1, T, H]`` entering layer ``L - n``; returns the final hidden states."""
        from transformers.masking_utils import create_causal_mask

        pos = torch.arange(hidden.shape[1], device=hidden.device)[None]
        mask = create_causal_mask(config=self.config, inputs_embeds=hidden, attention_mask=None,
                                  cache=None, position_ids=pos)
        pe = self.rotary(hidden, pos)
        h = hidden
        for layer in self.layers:
            h = layer(h, attention_mask=mask, position_embeddings=pe, position_ids=pos)
        return self.norm(h)

    def install(self, drafter) -> None:
        """Copy these weights into ``drafter`` (in its dtype), e.g. before export or bench."""
        body = drafter.model
        with torch.no_grad():
            for mine, theirs in zip(self.layers, body.layers[-self.n:], strict=True):
                for (_, p), (_, q) in zip(mine.named_parameters(), theirs.named_parameters(),
                                          strict=True):
                    q.copy_(p.to(q.dtype))
            for p, q in zip(self.norm.parameters(), body.norm.parameters(), strict=True):
                q.copy_(p.to(q.dtype))


@dataclass(frozen=True)
class Signals:
    """What one sequence needs: the lower hidden states and the teacher's top-k."""

    hidden: torch.Tensor  # [T, H]
    topk_idx: torch.Tensor  # [R, k]
    topk_logp: torch.Tensor  # [R, k]
    n_prompt: int
    target_final: torch.Tensor | None = None  # [R, H_target]: exact metrics with its head


def _padded(batch: Sequence[Signals]) -> tuple[torch.Tensor, list[int]]:
    """The sequences' lower hidden states right-padded to the longest: ``[B, T, H]`` fp32."""
    lens = [int(s.hidden.shape[0]) for s in batch]
    x = batch[0].hidden.new_zeros((len(batch), max(lens), batch[0].hidden.shape[1]),
                                  dtype=torch.float32)
    for i, s in enumerate(batch):
        x[i, : lens[i]] = s.hidden.float()
    return x, lens


def _batch_logits(top, head, batch: Sequence[Signals], bf16: bool) -> list[torch.Tensor]:
    """Each sequence's response-position logits, the batch forwarded at once (right-padded:
    causal attention, so no position sees the padding after it; positions start at 0 in every
    row)."""
    x, lens = _padded(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = top(x)
        return [h[i, s.n_prompt - 1 : lens[i] - 1] @ head.T for i, s in enumerate(batch)]


def sequence_loss(top, head, s: Signals, kind: str, bf16: bool) -> torch.Tensor:
    """One sequence's loss, summed over its response positions."""
    return batch_loss(top, head, [s], kind, bf16)


def batch_loss(top, head, batch: Sequence[Signals], kind: str, bf16: bool) -> torch.Tensor:
    """The loss summed over the response positions of every sequence of ``batch`` (the sum of
    :func:`sequence_loss`), in one forward (:func:`_batch_logits`): 1.4x the tokens/s of one
    forward per sequence in a synthetic check (top 4 layers of the 0.5B drafter, 8 random
    sequences of 100-150 tokens, 2 cores shared with another job); on the study's
    variable-length batches the gain was not measured paired (docs/RESULTS.md)."""
    return topk_loss(torch.cat(_batch_logits(top, head, batch, bf16)),
                     torch.cat([s.topk_idx for s in batch]),
                     torch.cat([s.topk_logp for s in batch]), kind)


def grouped_loss(top, head, batch: Sequence[Signals], labels: Sequence[str], kind: str,
                 bf16: bool) -> torch.Tensor:
    """The mean over the labels present in ``batch`` of each label's loss per response
    position (one forward, as :func:`batch_loss`): every sequence of a label weighs
    ``1 / (labels present x that label's response positions in the batch)``."""
    if len(labels) != len(batch):
        raise ValueError("grouped_loss: one label per sequence")
    logits = _batch_logits(top, head, batch, bf16)
    n = {}
    for s, g in zip(batch, labels, strict=True):
        n[g] = n.get(g, 0) + int(s.topk_idx.shape[0])
    return sum(topk_loss(lg, s.topk_idx, s.topk_logp, kind) / (len(n) * n[g])
               for lg, s, g in zip(logits, batch, labels, strict=True) if n[g] > 0)


EVAL_BATCH = 8  # sequences forwarded at once by :func:`evaluate` (its padded shapes)


@torch.inference_mode()
def evaluate(top: TopLayers, head: torch.Tensor, signals: Sequence[Signals],
             bf16: bool, target_head: torch.Tensor | None = None,
             batch: int = EVAL_BATCH) -> list[dict[str, float]]:
    """Per sequence (forwarded ``batch`` at a time, right-padded: :func:`_batch_logits`):
    the means over its response positions of ``greedy`` (exact greedy agreement), ``alpha``
    and ``alpha_lo`` (the sampled acceptance's upper bound, with the residual bucket, and lower
    bound, top-k only: :func:`specfair.distill.topk.topk_acceptance`), ``ce``, ``resid`` (the
    teacher's residual mass), and per position ``match`` (greedy agreement) and ``conf`` (the
    drafter's top probability): what a drafting policy replay needs
    (:mod:`specfair.measure.replay`). Where a sequence has the target's final hidden states and
    ``target_head`` is given: ``alpha_full`` and ``ce_full``, exact over the full vocabulary
    (:mod:`specfair.measure.acceptance`). Never silent: past ``HEARTBEAT_S`` a progress line
    with an ETA (an experiment's evaluation of hundreds of long answers takes minutes)."""
    import time

    top.eval()
    out: list[dict] = []
    start = last = time.monotonic()
    for k in range(0, len(signals), batch):
        if time.monotonic() - last >= HEARTBEAT_S:
            last = time.monotonic()
            print(progress_line("evaluate", k, len(signals), last - start), flush=True)
        chunk = signals[k : k + batch]
        out += [_metrics(logits.float(), s, target_head)
                for s, logits in zip(chunk, _batch_logits(top, head, chunk, bf16), strict=True)]
    for r in out:  # a record is a number or an error, never a null
        bad = [k for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise SpecfairError(f"the drafter's evaluation gave {bad[0]} = {r[bad[0]]} on a "
                                f"sequence of {r['n']} response tokens (non-finite weights or "
                                "signals); no record was written")
    return out


def _metrics(logits: torch.Tensor, s: Signals, target_head: torch.Tensor | None) -> dict:
    """:func:`evaluate`'s record of one sequence from its response-position logits."""
    m = topk_acceptance(logits, s.topk_idx, s.topk_logp)
    if s.target_final is not None and target_head is not None:
        t_logits = (s.target_final.to(target_head.device, target_head.dtype)
                    @ target_head.T).float().to(logits.device)
        m["alpha_full"] = position_alpha(logits, t_logits)[0]
        m["ce_full"] = position_ce_kl(logits, t_logits)[0]
    conf = torch.softmax(logits, -1).max(-1).values
    return {k: float(v.mean()) for k, v in m.items()} | {
        "n": int(s.topk_idx.shape[0]), "match": [int(x) for x in m["greedy"].tolist()],
        "conf": [round(float(x), 4) for x in conf]}


@dataclass
class TrainState:
    step: int = 0
    tokens: int = 0  # training tokens seen (sequence tokens through the top layers)
    # of them, response positions (the loss's; the rest are prompt positions); None: resumed
    # from a checkpoint written before they were counted
    supervised: int | None = 0


def make_optimizer(top: TopLayers, lr: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(top.parameters(), lr=lr, weight_decay=0.0)


def lr_at(step: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then constant: a checkpoint at any step equals a shorter run."""
    return lr * min(1.0, (step + 1) / max(warmup, 1))


def train_until(top: TopLayers, head: torch.Tensor, opt, state: TrainState,
                draw: Callable[[], Sequence[Signals]], tokens_goal: float, *, lr: float,
                warmup: int, kind: str, bf16: bool, log: Callable[[dict], None] | None = None,
                max_grad_norm: float = 1.0, checkpoint: Path | None = None,
                max_steps: int | None = None,
                groups: Callable[[], Sequence[str]] | None = None,
                on_step: Callable[[TrainState], None] | None = None) -> TrainState:
    """The training loop (the only one on cached signals): optimizer steps until
    ``state.tokens >= tokens_goal`` (or ``state.step == max_steps``). A batch's loss is the
    mean over its response positions, the batch forwarded at once (:func:`batch_loss`); with
    ``groups`` (each drawn sequence's task, called after ``draw``) the mean over the batch's
    tasks of each task's mean over its positions (:func:`grouped_loss`: a task of long answers
    weighs no more than one of short answers). ``on_step(state)`` runs after each step is
    logged (where the caller writes a checkpoint on its own cadence). A
    non-finite loss, gradient norm or updated weight stops the loop with one
    error naming the step and ``checkpoint`` (the last one the caller wrote;
    :mod:`specfair.distill.guard`)."""
    import time

    top.train()
    start = last = time.monotonic()
    tokens0 = state.tokens
    while state.tokens < tokens_goal and (max_steps is None or state.step < max_steps):
        if time.monotonic() - last >= HEARTBEAT_S:  # never silent: a line with an ETA
            last = time.monotonic()
            print(progress_line("train tokens", state.tokens - tokens0,
                                int(tokens_goal - tokens0), last - start, f"step {state.step}"),
                  flush=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(state.step, lr, warmup)
        t0 = time.perf_counter()
        batch = draw()
        n_pos = sum(int(s.topk_idx.shape[0]) for s in batch)
        loss = (batch_loss(top, head, batch, kind, bf16) / n_pos if groups is None
                else grouped_loss(top, head, batch, list(groups()), kind, bf16))
        loss.backward()
        total = float(loss.detach())
        norm = torch.nn.utils.clip_grad_norm_(
            top.parameters(), max_grad_norm if max_grad_norm > 0 else math.inf)
        step_lr = opt.param_groups[0]["lr"]
        check_step(state.step + 1, total, float(norm), step_lr, checkpoint)
        opt.step()
        opt.zero_grad(set_to_none=True)
        check_weights(state.step + 1, top.named_parameters(), step_lr, checkpoint)
        n_tok = sum(int(s.hidden.shape[0]) for s in batch)
        state.step += 1
        state.tokens += n_tok
        if state.supervised is not None:
            state.supervised += n_pos
        if log is not None:
            dt = time.perf_counter() - t0
            log({"step": state.step, "tokens": state.tokens, "supervised": state.supervised,
                 "loss": total,
                 "lr": opt.param_groups[0]["lr"], "tokens_per_s": n_tok / max(dt, 1e-9)})
        if on_step is not None:
            on_step(state)
    return state


def train_sampled(top: TopLayers, head: torch.Tensor, opt, state: TrainState,
                  pool: Sequence[Signals], sampler, tokens_goal: float, *, batch_size: int,
                  lr: float, warmup: int, kind: str, bf16: bool,
                  hook: Callable[[int], None] | None = None, every: int = 0,
                  log: Callable[[dict], None] | None = None, max_grad_norm: float = 1.0,
                  checkpoint: Path | None = None, max_steps: int | None = None,
                  task_mean: bool = False,
                  on_step: Callable[[TrainState], None] | None = None) -> TrainState:
    """:func:`train_until` on batches of ``batch_size`` drawn from ``pool`` by ``sampler`` (a
    :class:`~specfair.distill.weighting.TaskSampler` over the pool's task labels, in order);
    ``task_mean``: each batch's loss averaged per task, not per position (:func:`grouped_loss`).
    ``hook(step)`` runs every ``every`` steps (step 0 included) before a batch is drawn: where
    a held-out alpha re-estimate updates the sampler (the ``disparity`` rule) and is logged.
    Each step's log record carries the tasks it drew and the sampler's weights; ``on_step``:
    as :func:`train_until`'s (the sampler's state then is the next step's). The
    experiment's arms (:mod:`specfair.study.run`) and ``specfair distill --method topn``
    (:mod:`specfair.distill.cached`) both train through here."""
    label = {i: t for t, ids in sampler.by_task.items() for i in ids}
    drawn: list[int] = []

    def draw() -> list[Signals]:
        if hook is not None and every > 0 and state.step % every == 0:
            hook(state.step)
            top.train()
        drawn[:] = sampler.sample(batch_size)
        return [pool[i] for i in drawn]

    def step_log(r: dict) -> None:
        log(r | {"tasks": sorted({label[i] for i in drawn}), "weights": sampler.weights()})

    return train_until(top, head, opt, state, draw, tokens_goal, lr=lr, warmup=warmup,
                       kind=kind, bf16=bf16, log=None if log is None else step_log,
                       max_grad_norm=max_grad_norm, checkpoint=checkpoint, max_steps=max_steps,
                       groups=(lambda: [label[i] for i in drawn]) if task_mean else None,
                       on_step=on_step)


def train_copy(drafter, head: torch.Tensor, signals: Sequence[Signals], tokens: int, *,
               layers: int, lr: float, batch_size: int, seed: int, warmup: int, kind: str,
               bf16: bool) -> tuple[TopLayers, TrainState, float]:
    """A fresh copy of ``drafter``'s top ``layers`` trained on ``signals`` (batches drawn
    uniformly, seeded) for ``tokens`` training tokens: the copy, its state and the seconds."""
    import random
    import time

    torch.manual_seed(seed)
    top, rng = TopLayers(drafter, layers), random.Random(seed)
    t0 = time.perf_counter()
    state = train_until(top, head, make_optimizer(top, lr), TrainState(),
                        lambda: rng.sample(list(signals), min(batch_size, len(signals))),
                        tokens, lr=lr, warmup=warmup, kind=kind, bf16=bf16)
    return top, state, time.perf_counter() - t0


# ---------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, top: TopLayers, opt, state: TrainState, extra: dict) -> None:
    """Weights and AdamW moments as safetensors, the rest as JSON (no pickle), all finite,
    written at once (:func:`specfair.atomic.atomic_dir`)."""
    weights = {k: v.contiguous() for k, v in top.state_dict().items()}
    names = [n for n, _ in top.named_parameters()]
    moments, steps = {}, {}
    for i, p in enumerate(top.parameters()):
        st = opt.state.get(p)
        if st:
            moments[f"{names[i]}.exp_avg"] = st["exp_avg"].contiguous()
            moments[f"{names[i]}.exp_avg_sq"] = st["exp_avg_sq"].contiguous()
            steps[names[i]] = float(st["step"])
    bad = nonfinite([*weights.items(), *moments.items()])
    if bad:
        raise SpecfairError(f"{path}: {len(bad)} tensor(s) not finite (NaN or infinite), e.g. "
                            f"{bad[0]}; the checkpoint was not written")
    with atomic_dir(path) as tmp:
        save_file(weights, str(tmp / "top.st"))
        save_file(moments, str(tmp / "adam.st"))
        (tmp / "state.json").write_text(json.dumps(
            {"step": state.step, "tokens": state.tokens, "supervised": state.supervised,
             "adam_steps": steps} | extra))


def drop_moments(path: Path) -> None:
    """Remove a finished checkpoint's AdamW moments (2/3 of its size: 0.48 of 0.72 GB for
    the top 4 layers of the 0.5B drafter); its weights stay. Only for a checkpoint that is
    never trained again: :func:`load_checkpoint` then gives the weights and no moments."""
    meta = read_json(path / "state.json")
    write_text(path / "state.json", json.dumps(meta | {"adam_steps": {},
                                                        "moments_dropped": True}))
    (path / "adam.st").unlink(missing_ok=True)


def load_checkpoint(path: Path, top: TopLayers, opt) -> tuple[TrainState, dict]:
    load_weights(top, path / "top.st")  # complete, finite, of the right shapes
    meta = read_json(path / "state.json")
    if meta.get("moments_dropped"):  # :func:`drop_moments`: the weights only
        return TrainState(meta["step"], meta["tokens"], meta.get("supervised")), meta
    moments = read_tensors(path / "adam.st")
    check_complete(moments, {f"{n}.{m}": p.shape for n, p in top.named_parameters()
                             if n in meta["adam_steps"] for m in ("exp_avg", "exp_avg_sq")},
                   path / "adam.st")
    for name, p in top.named_parameters():
        if name in meta["adam_steps"]:
            opt.state[p] = {"step": torch.tensor(meta["adam_steps"][name]),
                            "exp_avg": moments[f"{name}.exp_avg"],
                            "exp_avg_sq": moments[f"{name}.exp_avg_sq"]}
    return TrainState(meta["step"], meta["tokens"], meta.get("supervised")), meta

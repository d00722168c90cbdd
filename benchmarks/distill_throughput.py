"""Training tokens/s of each distillation mode on the real pair, in one run.

Modes (the same training sequences: prompt + reference answer of GSM8K/ShareGPT train prompts
from the ``study`` suite, ``specfair data fetch`` first):

- ``lora-all``: today's trainer (``specfair distill``): LoRA r=8 on every layer, the target in
  the loop (its hidden states computed once per example and reused; the first pass pays it);
- ``top-N``: the study's trainer: the drafter's top N layers on cached lower-layer states, the
  teacher's cached top-32 (``specfair.distill.topn``); the one-time cost of the signals (target
  top-k + drafter lower layers) is measured separately and reported per training token.

Training tokens are the tokens of the sequences pushed through the trained model (prompt +
response), as in ``train_log.jsonl``. Run: ``python benchmarks/distill_throughput.py --out
docs/results/distill_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

from specfair.distill.topn import Signals, TopLayers, TrainState, make_optimizer, train_until
from specfair.measure.signals import lower_hidden, target_topk
from specfair.models.hardware import cpu_supports_bf16
from specfair.models.load import load_model, load_tokenizer
from specfair.tasks import encode_prompt
from specfair.tasks.study import load_study_suite

TARGET, DRAFTER = "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct"


def sequences(tok, n: int) -> list[tuple[list[int], int]]:
    suite = load_study_suite()
    ps = [p for p in suite.prompts("train", ["math", "chat"]) if p.reference][:n]
    out = []
    for p in ps:
        ids = encode_prompt(tok, p)[-96:]
        out.append((ids + tok.encode(p.reference, add_special_tokens=False)[:48], len(ids)))
    return out


def bench_lora(target, drafter, tok, seqs, steps: int) -> float:
    from specfair.distill.config import DistillConfig
    from specfair.distill.data import Example
    from specfair.distill.trainer import train

    ex = [Example(f"e{i}", "math", tuple(ids[:n]), tuple(ids[n:]), "reference", f"e{i}")
          for i, (ids, n) in enumerate(seqs)]
    cfg = DistillConfig(weighting="uniform", loss="fkl", method="lora", lora_rank=8, lr=3e-4,
                        steps=steps, batch_size=len(seqs) // steps, heldout_per_task=0,
                        reestimate_every=1000, checkpoint_every=1000, progress=False,
                        bf16=cpu_supports_bf16(), max_seq_len=160)
    with tempfile.TemporaryDirectory() as d:
        train(cfg, target, drafter, tok, ex, [], d)
        log = [json.loads(x) for x in (Path(d) / "train_log.jsonl").read_text().splitlines()]
    rec = [r for r in log if "tokens" in r]
    return sum(r["tokens"] for r in rec) / sum(r["step_s"] for r in rec)


def bench_top(drafter, sig_seqs, teacher, n_layers: int, steps: int, bf16: bool) -> float:
    lower = lower_hidden(drafter, sig_seqs, drafter.config.num_hidden_layers - n_layers)
    sig = [Signals(h["hidden"], t["topk_idx"], t["topk_logp"], n)
           for h, t, (_, n) in zip(lower, teacher, sig_seqs, strict=True)]
    top = TopLayers(drafter, n_layers)
    head = drafter.get_output_embeddings().weight.detach()
    opt = make_optimizer(top, 1e-4)
    rng = random.Random(0)
    bs = len(sig) // (steps + 1)
    draw = lambda: rng.sample(sig, bs)  # noqa: E731
    train_until(top, head, opt, TrainState(), draw, 1, lr=1e-4, warmup=1, kind="fkl",
                bf16=bf16)  # warm-up step, not timed
    log: list[dict] = []
    train_until(top, head, opt, TrainState(), draw, steps * sum(len(s[0]) for s in sig_seqs)
                // (steps + 1), lr=1e-4, warmup=1, kind="fkl", bf16=bf16, log=log.append)
    return _rate(log)


def _rate(log: list[dict]) -> float:
    toks, secs, prev = 0, 0.0, 0
    for r in log:
        n = r["tokens"] - prev
        prev = r["tokens"]
        toks += n
        secs += n / r["tokens_per_s"]
    return toks / secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="training sequences")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--top", type=int, nargs="*", default=[2, 4, 8])
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    bf16 = cpu_supports_bf16()
    tok = load_tokenizer(TARGET)
    target, drafter = load_model(TARGET, "auto", "auto"), load_model(DRAFTER, "auto", "auto")
    seqs = sequences(tok, a.n)
    n_tok = sum(len(s) for s, _ in seqs)
    res = {"cpu": platform.processor() or platform.machine(), "native_bf16": bf16,
           "threads": torch.get_num_threads(), "sequences": len(seqs), "tokens": n_tok}
    t0 = time.perf_counter()
    teacher = target_topk(target, seqs, 32)
    res["signal_target_topk_tokens_per_s"] = n_tok / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    lower_hidden(drafter, seqs, drafter.config.num_hidden_layers - 4)
    res["signal_drafter_lower_tokens_per_s"] = n_tok / (time.perf_counter() - t0)
    for n in a.top:
        res[f"top-{n}_tokens_per_s"] = bench_top(drafter, seqs, teacher, n, a.steps, bf16)
        print(f"top-{n}: {res[f'top-{n}_tokens_per_s']:.0f} tokens/s", flush=True)
    res["lora-all_tokens_per_s"] = bench_lora(target, drafter, tok, seqs, a.steps)
    print(json.dumps(res, indent=2))
    if a.out:
        a.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

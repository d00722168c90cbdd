"""A device check of the paths that move tensors between a GPU and the CPU (run on a CUDA
machine; the tests cover the CPU): the shared store of target states (kept on the CPU, used on
the GPU), the trainer on a GPU with per-task adapters, gradient accumulation and on-policy
samples drawn with a CPU generator, and the engine's exactness on a GPU. Tiny random models
(tests/tiny.py), so it takes seconds.

    PYTHONPATH=src python benchmarks/gpu_check.py --out gpu_check.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from accelerate.state import AcceleratorState

sys.path[:0] = [str(Path(__file__).parents[1] / "tests"),
                str(Path(__file__).parents[1] / "tests" / "distill")]

from distill_helpers import load, make_suite  # noqa: E402
from tiny import make_tiny_pair  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from specfair.decoding import autoregressive_generate, speculative_generate  # noqa: E402
from specfair.distill.config import DistillConfig  # noqa: E402
from specfair.distill.data import heldout_split, target_response_examples  # noqa: E402
from specfair.distill.run_setup import make_accelerator  # noqa: E402
from specfair.distill.trainer import train  # noqa: E402
from specfair.measure.estimate import teacher_forced_positions  # noqa: E402
from specfair.measure.signals import forget_target_states, target_states  # noqa: E402

DEV = "cuda"  # --dry-run: "cpu" (to try the script where there is no GPU)


def estimate_check(target, drafter, examples) -> dict:
    """Teacher-forced alpha on the GPU against the CPU, and the GPU target's store reused."""
    gt, gd = copy.deepcopy(target).to(DEV), copy.deepcopy(drafter).to(DEV)
    diffs = []
    for e in examples[:6]:
        cpu = teacher_forced_positions(target, drafter, e.prompt_ids, e.response_ids)
        gpu = teacher_forced_positions(gt, gd, e.prompt_ids, e.response_ids)
        diffs.append(float((cpu["alpha"] - gpu["alpha"]).abs().max()))
    n_before = len(target_states(gt))
    calls = []
    gt.get_decoder().register_forward_hook(lambda *a: calls.append(1))
    for e in examples[:6]:
        teacher_forced_positions(gt, gd, e.prompt_ids, e.response_ids)
    return {"alpha_max_abs_diff_gpu_vs_cpu": max(diffs), "stored_sequences": n_before,
            "target_forwards_on_rerun": len(calls)}


def train_check(tiny_pair, tok, examples, root: Path) -> dict:
    """Per-task LoRA, grad_accum 2, on-policy samples: the same run on the GPU and the CPU."""
    tr, ho = heldout_split(examples, 1)
    cfg = DistillConfig(steps=4, batch_size=2, reestimate_every=2, checkpoint_every=2,
                        heldout_per_task=1, progress=False, lora_rank=4, weighting="per-task",
                        grad_accum=2, on_policy_frac=0.5)
    out = {}
    for name, dev in (("gpu", DEV), ("cpu", "cpu")):
        forget_target_states()
        AcceleratorState._reset_state(reset_partial_state=True)  # one device per process else
        t0 = time.perf_counter()
        res = train(cfg, load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, root / name,
                    accelerator=make_accelerator(cfg, cpu=dev == "cpu"))
        params = {n: p.detach().float().cpu() for n, p in res.student.named_parameters()
                  if "lora_" in n}
        out[name] = {"steps": res.steps, "alpha_after": res.alpha_after, "params": params,
                    "device": str(next(res.student.parameters()).device),
                    "seconds": round(time.perf_counter() - t0, 1)}
    diff = max(float((out["gpu"]["params"][n] - out["cpu"]["params"][n]).abs().max())
               for n in out["cpu"]["params"])
    for d in out.values():
        d.pop("params")
    return {"runs": out, "lora_max_abs_diff_gpu_vs_cpu": diff}


def engine_check(target, drafter, examples) -> dict:
    """Greedy SD on the GPU equals the target's own greedy output; sampling with a CPU
    generator drives a GPU model."""
    gt, gd = copy.deepcopy(target).to(DEV), copy.deepcopy(drafter).to(DEV)
    same = 0
    for e in examples[:6]:
        ar = autoregressive_generate(gt, list(e.prompt_ids), max_new_tokens=24)
        sd = speculative_generate(gt, gd, list(e.prompt_ids), max_new_tokens=24, gamma=4)
        same += ar.tokens == sd.tokens
    g = torch.Generator().manual_seed(0)
    before = g.get_state().clone()
    s = autoregressive_generate(gd, list(examples[0].prompt_ids), max_new_tokens=8,
                                temperature=1.0, generator=g)
    return {"greedy_sd_equals_ar": f"{same}/6", "sampled_tokens": len(s.tokens),
            "cpu_generator_advanced": not torch.equal(before, g.get_state())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dry-run", action="store_true", help="on the CPU (tries the script)")
    args = ap.parse_args()
    global DEV
    DEV = "cpu" if args.dry_run else "cuda"
    if DEV == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device")
    root = Path(tempfile.mkdtemp())
    tiny_pair = make_tiny_pair(root / "pair")
    tok = AutoTokenizer.from_pretrained(tiny_pair[0])
    target, drafter = load(tiny_pair[0]), load(tiny_pair[1])
    examples = target_response_examples(make_suite().prompts("train"), target, drafter, tok,
                                        root / "responses.jsonl", max_new_tokens=8)
    name = torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu"
    report = {"device": name, "torch": torch.__version__,
              "estimate": estimate_check(target, drafter, examples),
              "engine": engine_check(target, drafter, examples),
              "train": train_check(tiny_pair, tok, examples, root / "train")}
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

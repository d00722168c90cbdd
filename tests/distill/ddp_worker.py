"""Worker for test_distributed.py: ``torchrun --nproc_per_node 2 ddp_worker.py ROOT WEIGHTING``.

Each rank generates its share of the target responses, trains 3 steps (per-task LoRA adapters or
disparity weighting, re-estimation and a checkpoint included) and writes a fingerprint of its
trained parameters, optimizer step count and sampler state to ROOT/rank<r>.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from distill_helpers import load, make_suite  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from specfair.distill.config import DistillConfig  # noqa: E402
from specfair.distill.data import (  # noqa: E402
    examples_from_records,
    heldout_split,
    target_response_examples,
)
from specfair.distill.run_setup import make_accelerator  # noqa: E402
from specfair.distill.trainer import train  # noqa: E402
from specfair.measure.responses import read_responses  # noqa: E402


def main(root: Path, weighting: str) -> None:
    torch.set_num_threads(1)
    cfg = DistillConfig(steps=3, batch_size=2, reestimate_every=2, checkpoint_every=2,
                        heldout_per_task=1, progress=False, lora_rank=4, weighting=weighting,
                        lr=1e-2)
    acc = make_accelerator(cfg, cpu=True)
    assert acc.num_processes == 2, acc.num_processes
    tdir, ddir = root / "target", root / "drafter"
    tok = AutoTokenizer.from_pretrained(tdir)
    prompts = make_suite().prompts("train")
    target_response_examples(prompts, load(tdir), load(ddir), tok, root / "responses.jsonl",
                             max_new_tokens=6, rank=acc.process_index, world_size=2)
    acc.wait_for_everyone()
    ex = examples_from_records(read_responses(root / "responses.jsonl"), prompts)  # all shards
    assert len(ex) == len(prompts), (len(ex), len(prompts))
    tr, ho = heldout_split(ex, 1)
    res = train(cfg, load(tdir), load(ddir), tok, tr, ho, root / f"out-{weighting}",
                accelerator=acc)
    h = hashlib.sha256()
    for n, p in sorted(res.student.named_parameters()):
        h.update(n.encode())
        h.update(p.detach().double().numpy().tobytes())
    (root / f"rank{acc.process_index}-{weighting}.json").write_text(json.dumps({
        "params": h.hexdigest(), "steps": res.steps, "alpha_after": res.alpha_after,
        "world": acc.num_processes, "distributed_type": str(acc.distributed_type),
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])

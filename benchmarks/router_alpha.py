"""What a wrong route costs, and what the task router loses against oracle routing.

For a per-task drafter export with a task router (``specfair router train --drafter DIR``), on
the suite's test prompts (``--n-per-task`` per task): the teacher-forced α (the estimate's, at
``--temperature``, pooled per task) of every copy and the base drafter on every task's prompts
(the copy × task matrix), and per task the α of oracle routing (the task's own copy) vs
classifier routing (the copy the router picks), with how the router sent each task's prompts.
The target's greedy answers are cached in ``OUT/responses.jsonl`` (reused on a rerun).

Run (a GPU or a patient CPU; real models)::

    python benchmarks/router_alpha.py --target qwen2.5-coder-1.5b-instruct \\
        --drafter runs/default/variants/per-task/drafter --n-per-task 6 --out runs/router_alpha
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from specfair.distill.route_cost import copy_task_alpha
from specfair.distill.routing import check_routing, load_routed_drafter
from specfair.measure.commands import select_prompts
from specfair.models.load import load_model, load_tokenizer, resolve_device, resolve_dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--drafter", required=True, help="per-task export with a task router")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--n-per-task", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    check_routing("classifier", args.drafter)  # a missing or corrupt router: one error now
    prompts, settings = select_prompts(args.suite, "test", args.n_per_task, 0, args.data_root)
    dev = resolve_device(args.device)
    dt = str(resolve_dtype(args.dtype, dev)).replace("torch.", "")
    tok = load_tokenizer(args.target)
    target = load_model(args.target, dt, str(dev), kernels="default")
    router = load_routed_drafter(args.drafter, args.target, dtype=dt, device=str(dev),
                                 routing="classifier", tokenizer=tok)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = copy_task_alpha(target, router, tok, prompts, args.out / "responses.jsonl",
                          max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    res["meta"] = {**settings, "target": args.target, "drafter": args.drafter,
                   "n_per_task": args.n_per_task, "max_new_tokens": args.max_new_tokens,
                   "dtype": dt, "device": str(dev), "seconds": round(time.perf_counter() - t0, 1)}
    (args.out / "router_alpha.json").write_text(json.dumps(res, indent=2))
    tasks = sorted(res["oracle"])
    fmt = lambda v: "    -" if v is None else f"{v:.3f}"  # noqa: E731
    print("alpha of each copy (rows) on each task's prompts (columns)")
    print(f"{'copy':16s} " + " ".join(f"{t[:8]:>8s}" for t in tasks))
    for c, row in res["matrix"].items():
        print(f"{c:16s} " + " ".join(f"{fmt(row.get(t)):>8s}" for t in tasks))
    print(f"\n{'task':16s} {'oracle':>8s} {'routed':>8s}  routes")
    for t in tasks:
        print(f"{t:16s} {fmt(res['oracle'][t]):>8s} {fmt(res['routed'][t]):>8s}  "
              f"{res['routes'][t]}")
    print(f"\nwrote {args.out / 'router_alpha.json'}")


if __name__ == "__main__":
    main()

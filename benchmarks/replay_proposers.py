"""Choose a drafting variant (γ policy × proposer) by replay on held-out *train* prompts.

A finished ``specfair experiment study`` run directory holds, for the held-out prompts of its
train split, the target's greedy answers (``heldout_responses.jsonl``: prompt and answer ids)
and the base drafter's teacher-forced passes along them (``policy_eval.jsonl``, arm ``base``:
``match``/``conf``), and the measured costs (``costs.json``: ``c``, the verification slope).
Each variant (``POLICY[+PROPOSER]``, the syntax of ``benchmarks/engine.py --variants``) is
replayed (:func:`specfair.measure.replay.replay`: the engine's γ policies and prompt lookup, so
lookup drafts are exact too) on every prompt; printed and written: the geometric mean over
prompts of the predicted speed-up over plain decoding (decoding steps only, no prefill), per
task and overall, and the worst task. No test prompt is read: a variant chosen here can be
timed on the test split without choosing on it.

``--draft-vocab K`` replays a drafter whose output head keeps only the K most frequent tokens of
the run's training text (``train_drafter_text.jsonl``: prompts and texts; special tokens are
always kept), as FR-Spec / EAGLE-3 trim the draft vocabulary: a position whose answer token is
outside it can no longer be matched. Give the trimmed head's cost with ``--c``.

Run: ``python benchmarks/replay_proposers.py --run-dir runs/s20/study/run --out
docs/results/issue19/replay-proposers-heldout.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

from specfair.decoding.policy import parse_variant
from specfair.errors import SpecfairError
from specfair.measure.io import read_jsonl
from specfair.measure.replay import Policy, pass_of, replay

DEFAULT_VARIANTS = [
    f"{pol}+{prop}"
    for pol in ("fixed:2", "fixed:3", "adaptive")
    for prop in ("model", "hybrid", "hybrid:4", "hybrid:6", "hybrid:8", "hybrid:10")
]


def replay_policy(pol, task: str):
    """What :func:`replay` runs for a request of ``task`` under drafting policy ``pol``."""
    if pol.kind == "confidence":
        return Policy("confidence", max_gamma=pol.gamma, threshold=pol.threshold)
    return pol.for_task(task)


def geo(xs) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def draft_vocab(run_dir: Path, k: int) -> set[int]:
    """The ``k`` most frequent token ids of the run's training text."""
    counts = Counter()
    for r in read_jsonl(run_dir / "train_drafter_text.jsonl"):
        counts.update(r["prompt_ids"])
        counts.update(r["response_ids"])
    return {t for t, _ in counts.most_common(k)}


def trimmed(match: list, answer: list[int], vocab: set[int], special: int) -> list:
    """``match`` of a drafter that can draft only ``vocab`` (and ids >= ``special``)."""
    return [m and (answer[j + 1] in vocab or answer[j + 1] >= special)
            for j, m in enumerate(match)]  # fmt: skip


def load_heldout(run_dir: Path) -> list[dict]:
    """Per held-out prompt: task, prompt and answer ids, the base drafter's pass."""
    answers = {r["id"]: r for r in read_jsonl(run_dir / "heldout_responses.jsonl")}
    out = []
    for rec in read_jsonl(run_dir / "policy_eval.jsonl"):
        if rec.get("arm") != "base" or rec["id"] not in answers:
            continue
        a = answers[rec["id"]]
        match, conf = pass_of(rec)
        if len(match) != len(a["response_ids"]) - 1:
            raise SpecfairError(f"{rec['id']}: the pass and the answer differ in length")
        out.append({"id": rec["id"], "task": rec["task"], "pass": (match, conf),
                    "context": (a["prompt_ids"], a["response_ids"])})  # fmt: skip
    if not out:
        raise SpecfairError(f"{run_dir}: no base-drafter passes over held-out answers")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="a study run directory")
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS)
    ap.add_argument("--c", type=float, default=None, help="default: the run's costs.json")
    ap.add_argument("--verify-slope", type=float, default=None, help="default: costs.json")
    ap.add_argument("--draft-vocab", type=int, default=None,
                    help="trim the drafter's head to the K most frequent training tokens")
    ap.add_argument("--special-from", type=int, default=151643,
                    help="ids from here on (special tokens) stay in a trimmed vocabulary")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        variants = {spec: parse_variant(spec)[1:] for spec in args.variants}
        costs = json.loads((args.run_dir / "costs.json").read_text())
        c = costs["c"] if args.c is None else args.c
        slope = costs["verify_slope"] if args.verify_slope is None else args.verify_slope
        prompts = load_heldout(args.run_dir)
        if args.draft_vocab is not None:
            if args.draft_vocab < 1:
                raise SpecfairError(f"--draft-vocab must be >= 1, got {args.draft_vocab}")
            vocab = draft_vocab(args.run_dir, args.draft_vocab)
            for p in prompts:
                m, q = p["pass"]
                p["pass"] = (trimmed(m, p["context"][1], vocab, args.special_from), q)
    except (SpecfairError, OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tasks = sorted({p["task"] for p in prompts})
    rows = {}
    for spec, (pol, proposer) in variants.items():
        per = defaultdict(list)
        for p in prompts:
            r = replay(*p["pass"], replay_policy(pol, p["task"]), proposer=proposer,
                       context=p["context"], c=c, verify_slope=slope)  # fmt: skip
            per[p["task"]].append(r.speedup(c, slope))
        by_task = {t: geo(v) for t, v in per.items()}
        worst = min(by_task, key=by_task.get)
        rows[spec] = {"overall": geo([x for v in per.values() for x in v]), "by_task": by_task,
                      "worst_task": worst, "worst": by_task[worst]}  # fmt: skip
    ranked = sorted(rows, key=lambda s: rows[s]["overall"], reverse=True)
    print(f"predicted speed-up over plain decoding (geo. mean over {len(prompts)} held-out "
          f"prompts; c {c:.3f}, verify slope {slope:.4f}; draft vocabulary "
          f"{args.draft_vocab or 'full'})")
    print(f"{'variant':24} overall  worst (task)            " + " ".join(t[:7] for t in tasks))
    for spec in ranked:
        r = rows[spec]
        print(f"{spec:24} {r['overall']:.3f}    {r['worst']:.3f} ({r['worst_task'][:16]:16}) "
              + " ".join(f"{r['by_task'][t]:.2f}   " for t in tasks))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"run_dir": str(args.run_dir), "split": "held-out train prompts", "c": c,
               "verify_slope": slope, "draft_vocab": args.draft_vocab,
               "n_prompts": len(prompts), "ranked": ranked,
               "variants": rows}  # fmt: skip
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the decoding engine: our AR and SD against Hugging Face's generate.

For each hard-coded prompt (5 task types, greedy decoding) it times, in one run:

- ``ar``      specfair ``autoregressive_generate`` (the baseline of all speed-ups),
- ``sd``      specfair ``speculative_generate`` with a fixed gamma (``--gamma``),
- ``sd_conf`` specfair with HF's default algorithm: up to ``--conf-gamma`` (20) drafts, a draft
              stops when the drafter's confidence < ``--draft-threshold`` (0.4),
- ``hf_ar``   ``target.generate(do_sample=False)``,
- ``hf_sd``   ``target.generate(assistant_model=drafter)`` with HF's defaults (20 drafts, confidence
              threshold 0.4, both adaptive),
- ``hf_sd_g`` the same with ``num_assistant_tokens=gamma``, schedule "constant", threshold 0,

- variants (``--variants``, each ``POLICY[+PROPOSER]``: a ``--policy`` of ``specfair bench``
  and a proposer model|ngram|hybrid, e.g. ``adaptive``, ``fixed:5+ngram``, ``heuristic+hybrid``,
  ``table:policy.json``): specfair SD under each, on the same prompts, with each prompt's task
  choosing its γ for a table; ``adaptive`` prices this machine's verify curve (``--verify-curve``:
  the cached one, measured once per machine, pair and dtype; ``online``: fitted per request; or
  a slope) and ``adaptive-flat`` is the rule before it, so that one run pairs them; the
  SuffixDecoding variants ``+suffix`` (the index alone) and ``+suffix-hybrid`` (index, prompt
  lookup, then the drafter) draft from the per-task index of ``--index DIR`` (or their own
  ``+suffix:DIR``; `specfair index build`), each prompt from its task's,

and reports tokens/s, alpha (accepted/drafted and the geometric MLE), tau, the measured cost
ratio c = (drafter forward time) / (target AR step time), the Leviathan prediction of the
speed-up from the measured alpha and c, the greedy match rate of SD vs AR and vs HF, and the
time split of a step (draft / verify / other overhead).

Run on the real pair (another engineer does):  python benchmarks/engine.py --out engine.json
(drafting variants:  ... --variants fixed:5 heuristic confidence:0.4 adaptive fixed:5+ngram \
    fixed:5+hybrid adaptive+hybrid adaptive-flat+hybrid; the index variants:  ... --index IDX \
    --variants adaptive+hybrid fixed:1+suffix adaptive+suffix-hybrid)
Smoke test on tiny models:  python benchmarks/engine.py --target DIR --drafter DIR --dtype fp32 \
    --limit 2 --max-new-tokens 16
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch
from rich.console import Console

from specfair.backends.hf_assisted import transformers_generate
from specfair.decoding import (
    FixedGamma,
    GenerationResult,
    autoregressive_generate,
    expected_speedup,
    speculative_generate,
)
from specfair.decoding.ngram import SUFFIX_KINDS, index_dir, parse_proposer, uses_drafter
from specfair.decoding.policy import DraftingPolicy, parse_variant
from specfair.drafters.index import load_index
from specfair.errors import SpecfairError
from specfair.measure.bench import model_dtype
from specfair.measure.costs import curve_key, verify_curve
from specfair.measure.progress import progress_bar
from specfair.models import DEFAULT_DRAFTER, DEFAULT_TARGET, load_pair
from specfair.models.hardware import cpu_name

sys.path.insert(0, str(Path(__file__).parent))  # the report half of this script, beside it
from engine_report import (  # noqa: E402
    adaptive_pairs,
    against_hf,
    report,
    task_speedup_cis,
    variant_speedups,  # noqa: F401 (the script's API, as before the split)
)

# (id, task, user message): short, written in-house.
PROMPTS: list[tuple[str, str, str]] = [
    (
        "code-1",
        "code",
        "Write a Python function that returns the n-th Fibonacci number "
        "iteratively, with a docstring and type hints.",
    ),
    (
        "code-2",
        "code",
        "Write a Python class implementing a stack with push, pop, peek and "
        "is_empty methods. Raise IndexError when popping an empty stack.",
    ),
    (
        "math-1",
        "math",
        "A train travels 180 km in 2 hours and then 120 km in 1.5 hours. What is "
        "its average speed over the whole trip? Explain step by step.",
    ),
    (
        "math-2",
        "math",
        "Solve for x: 3x + 7 = 2x - 5. Then check your answer by substitution, showing each step.",
    ),
    (
        "fr-1",
        "translation_fr",
        "Translate into French: The weather was cold this morning, so we "
        "stayed inside, drank hot chocolate and read books by the window.",
    ),
    (
        "fr-2",
        "translation_fr",
        "Translate into French: Please remember to close the windows and "
        "turn off the lights before you leave the office tonight.",
    ),
    (
        "sum-1",
        "summarization",
        "Summarize in two sentences: The city council met on Tuesday to "
        "discuss the new bicycle lanes. Supporters said the lanes would reduce traffic and "
        "pollution, while shop owners worried about losing parking spaces for their customers. "
        "After a long debate, the council agreed to a six-month trial on two main streets.",
    ),
    (
        "sum-2",
        "summarization",
        "Summarize in one sentence: Researchers tested a new battery "
        "design that charges in ten minutes. In the lab it kept 90 percent of its capacity after "
        "a thousand cycles, but it relies on a rare metal, and the team says cheaper materials "
        "are needed before it can be sold.",
    ),
    (
        "chat-1",
        "chat",
        "I have a job interview tomorrow and I'm nervous. Can you give me a few "
        "practical tips to prepare tonight?",
    ),
    (
        "chat-2",
        "chat",
        "What are some good habits for keeping a small vegetable garden healthy "
        "during a hot summer?",
    ),
]


def encode(tokenizer, text: str) -> list[int]:
    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True
    )
    return list(enc["input_ids"] if hasattr(enc, "keys") else enc)


def match_rate(a: list[int], b: list[int]) -> float:
    """Fraction of positions (over the longer output) where the two greedy outputs agree,
    counting up to the first divergence: 1.0 means identical."""
    n = max(len(a), len(b))
    if n == 0:
        return 1.0
    same = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        same += 1
    return same / n


def split(res: GenerationResult) -> dict:
    """Mean per-step draft / verify / other seconds (other = wall - prefill - sum(draft+verify))."""
    n = max(1, len(res.steps))
    draft = sum(s.draft_s for s in res.steps)
    verify = sum(s.verify_s for s in res.steps)
    return {
        "steps": len(res.steps),
        "draft_s": draft / n,
        "verify_s": verify / n,
        "other_s": (res.wall_s - res.prefill_s - draft - verify) / n,
        "prefill_s": res.prefill_s,
    }


def prompts_of(args) -> list[tuple[str, str, str]]:
    """(id, task, first user turn) of the built-in prompts, or of ``--suite``'s split."""
    if args.suite is None:
        return PROMPTS
    from specfair.tasks import load_suite, sample_per_task
    from specfair.tasks.study import load_study_suite

    if args.suite == "study":  # the study's suite (`specfair data fetch` first)
        suite = load_study_suite(seed=0, tasks=args.tasks)
    else:
        suite = load_suite(args.suite, data_root=args.data_root)
    chosen = sample_per_task(suite.prompts(args.split), args.n_per_task, seed=0)
    # round robin over the tasks (first prompt of each, then the second...): a run stopped
    # early, or resumed over several sessions, holds every task as far as it went
    by_task: dict[str, list] = {}
    for p in chosen:
        by_task.setdefault(p.task, []).append(p)
    order = [p for row in itertools.zip_longest(*by_task.values()) for p in row if p is not None]
    return [(p.id, p.task, p.turns[0]) for p in order]


def run_prompt(pair, pid, task, text, args, console) -> dict:
    target, drafter, tok = pair.target, pair.drafter, pair.tokenizer
    ids = encode(tok, text)
    n = args.max_new_tokens
    ar = autoregressive_generate(target, ids, max_new_tokens=n)
    sd = speculative_generate(target, drafter, ids, max_new_tokens=n, gamma=FixedGamma(args.gamma))
    rec = {
        "id": pid,
        "task": task,
        "prompt_tokens": len(ids),
        "gamma": args.gamma,
        "ar": {"tokens": len(ar.tokens), "tps": ar.tokens_per_s, "wall_s": ar.wall_s},
        "sd": {"tokens": len(sd.tokens), "tps": sd.tokens_per_s, "wall_s": sd.wall_s},
        "alpha": sd.alpha,
        "alpha_geometric": sd.alpha_geometric,
        "tau": sd.tau,
        "accepted_lengths": sd.accepted_lengths,
        "split_sd": split(sd),
        "split_ar": split(ar),
        "match_sd_ar": match_rate(sd.tokens, ar.tokens),
    }
    # c: one drafter forward / one target AR step (medians, robust to stragglers).
    d_fwd = [s.draft_s / s.drafted for s in sd.steps if s.drafted]
    t_fwd = [s.verify_s for s in ar.steps]
    v_fwd = [s.verify_s for s in sd.steps if s.drafted]
    if d_fwd and t_fwd:
        rec["c"] = statistics.median(d_fwd) / statistics.median(t_fwd)
        rec["c_verify"] = statistics.median(d_fwd) / statistics.median(v_fwd)
        rec["predicted_speedup"] = expected_speedup(sd.alpha_geometric, args.gamma, rec["c"])
        # Leviathan's model assumes a verification costs one target step. Where it costs
        # v = verify time / AR step time > 1 (small-batch GEMMs on a CPU), the speed-up is
        # E[tau] / (gamma c + v); this is the prediction to hold the measurement against.
        rec["v"] = statistics.median(v_fwd) / statistics.median(t_fwd)
        rec["predicted_speedup_v"] = rec["predicted_speedup"] * (args.gamma * rec["c"] + 1) / (
            args.gamma * rec["c"] + rec["v"]
        )
    rec["speedup"] = sd.tokens_per_s / ar.tokens_per_s if ar.tokens_per_s else None
    if args.variants:
        rec["variants"] = run_variants(pair, task, ids, ar, args.variants, n, args.indexes)
    if args.conf_gamma:
        # HF's default algorithm (up to 20 drafts, stop below 0.4 drafter confidence) in ours.
        sdc = speculative_generate(target, drafter, ids, max_new_tokens=n,
                                   gamma=FixedGamma(args.conf_gamma),
                                   draft_threshold=args.draft_threshold)  # fmt: skip
        rec["sd_conf"] = {"tokens": len(sdc.tokens), "tps": sdc.tokens_per_s,
                          "wall_s": sdc.wall_s, "alpha": sdc.alpha, "tau": sdc.tau,
                          "match_ar": match_rate(sdc.tokens, ar.tokens)}  # fmt: skip
    if not args.no_hf:
        if args.no_hf_ar:  # HF's assisted output is held against ours instead
            hf_tokens = ar.tokens
        else:
            hf = transformers_generate(target, ids, n)
            hf_tokens, hf_s = hf.tokens, hf.wall_s
            rec["hf_ar"] = {"tokens": len(hf_tokens), "tps": len(hf_tokens) / hf_s,
                            "wall_s": hf_s}
            rec["match_sd_hf"] = match_rate(sd.tokens, hf_tokens)
            rec["match_ar_hf"] = match_rate(ar.tokens, hf_tokens)
        hf_runs = (("hf_sd", None),) + (() if args.no_hf_gamma else (("hf_sd_g", args.gamma),))
        for key, gamma in hf_runs:
            try:
                hf = transformers_generate(target, ids, n, drafter=drafter, gamma=gamma)
                toks, secs = hf.tokens, hf.wall_s
            except Exception as e:  # e.g. vocabularies of different sizes
                rec[key] = {"error": f"{type(e).__name__}: {e}"[:200]}
                console.print(f"[yellow]{pid}: {key} failed: {rec[key]['error']}")
                continue
            rec[key] = {
                "tokens": len(toks),
                "tps": len(toks) / secs,
                "wall_s": secs,
                "match_hf_ar": match_rate(toks, hf_tokens),
            }
    return rec


def parse_variants(specs: list[str]) -> list[tuple[str, DraftingPolicy, str]]:
    """``POLICY[+PROPOSER]`` specs -> (label, policy, proposer); a bad spec is a SpecfairError."""
    out = []
    for spec in specs:
        try:
            out.append(parse_variant(spec))
        except SpecfairError as e:
            raise SpecfairError(f"--variants {spec}: {e}") from None
    labels = [v[0] for v in out]
    if len(set(labels)) != len(labels):
        raise SpecfairError(f"--variants: the same variant twice in {labels}")
    return out


def parse_verify_curve(spec: str, variants) -> str | float:
    """``--verify-curve``: "cache", "online" or a slope (checked against each adaptive
    variant's bound before anything is loaded)."""
    if spec in ("cache", "online"):
        return spec
    try:
        slope = float(spec)
    except ValueError:
        raise SpecfairError(f"--verify-curve must be cache, online or a slope, got {spec!r}"
                            ) from None  # fmt: skip
    for _, pol, _ in variants:
        pol.with_verify_slope(slope)
    return slope


def with_verify_curve(pair, args) -> dict | None:
    """The verify curve of the ``adaptive`` variants (``args.variants`` rebuilt with it);
    None when no variant is adaptive."""
    if not any(pol.kind == "adaptive" for _, pol, _ in args.variants):
        return None
    if args.verify_curve == "online":
        return {"source": "online"}
    curve = {"source": "given", "verify_slope": args.verify_curve}
    if args.verify_curve == "cache":
        ids = encode(pair.tokenizer, prompts_of(args)[0][2])
        key = curve_key(pair.target_name, pair.drafter_name, model_dtype(pair.target))
        curve = {"source": "cache", "key": key} | verify_curve(pair.target, pair.drafter, ids, key)
    args.variants = [(label, pol.with_verify_slope(curve["verify_slope"]), prop)
                     for label, pol, prop in args.variants]  # fmt: skip
    return curve


def variant_indexes(variants, default: str | None) -> dict:
    """The per-task index of each suffix variant (``+suffix:DIR``, else ``--index``; none: the
    request's own tokens only), each directory loaded (and checked) once."""
    dirs = {label: index_dir(prop) or default for label, _, prop in variants
            if parse_proposer(prop)[0] in SUFFIX_KINDS}  # fmt: skip
    if default and not dirs:
        raise SpecfairError("--index is for the suffix variants (+suffix, +suffix-hybrid); "
                            "there is none")
    loaded = {d: load_index(d) for d in set(dirs.values()) if d}
    return {label: loaded[d] for label, d in dirs.items() if d}


def run_variants(pair, task: str, ids: list[int], ar: GenerationResult, variants, n: int,
                 indexes: dict | None = None) -> dict:  # fmt: skip
    """Each variant's SD on one prompt, against the prompt's AR run ``ar`` (a suffix variant
    drafting from the index of the prompt's task, ``indexes[label]``)."""
    out = {}
    for label, pol, proposer in variants:
        index = (indexes or {}).get(label)
        res = speculative_generate(
            pair.target, pair.drafter if uses_drafter(proposer) else None, ids, max_new_tokens=n,
            gamma=pol.for_task(task), draft_threshold=pol.draft_threshold, proposer=proposer,
            index=index.for_task(task) if index is not None else None,
        )  # fmt: skip
        out[label] = {"tokens": len(res.tokens), "tps": res.tokens_per_s, "wall_s": res.wall_s,
                      "alpha": res.alpha, "tau": res.tau, "steps": len(res.steps),
                      "speedup": res.tokens_per_s / ar.tokens_per_s if ar.tokens_per_s else None,
                      "match_ar": match_rate(res.tokens, ar.tokens),
                      "by_proposer": res.by_proposer()}  # fmt: skip
    return out


def warm_up(pair, args) -> None:
    ids = encode(pair.tokenizer, PROMPTS[0][2])
    autoregressive_generate(pair.target, ids, max_new_tokens=8)
    speculative_generate(pair.target, pair.drafter, ids, max_new_tokens=8, gamma=args.gamma)
    if not args.no_hf:
        transformers_generate(pair.target, ids, 8)
        try:
            transformers_generate(pair.target, ids, 8, drafter=pair.drafter, gamma=args.gamma)
        except Exception:
            pass


def profile(pair, args, console) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ids = encode(pair.tokenizer, PROMPTS[0][2])
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with torch_profile(activities=acts) as prof:
        speculative_generate(
            pair.target,
            pair.drafter,
            ids,
            max_new_tokens=min(32, args.max_new_tokens),
            gamma=args.gamma,
        )
    console.print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=DEFAULT_TARGET, help="name, HF id, local dir or .gguf")
    ap.add_argument("--drafter", default=DEFAULT_DRAFTER)
    ap.add_argument("--dtype", default="auto", help="auto|bfloat16|float32")
    ap.add_argument(
        "--kernels", default="auto", help="auto|packed|default (see specfair.models.cpu_kernels)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gamma", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument("--conf-gamma", type=int, default=20,
                    help="max drafts of the confidence-stopped SD mode (0: skip that mode)")
    ap.add_argument("--draft-threshold", type=float, default=0.4,
                    help="drafter confidence below which a draft stops (sd_conf mode)")
    ap.add_argument("--variants", nargs="*", default=[],
                    help="POLICY[+PROPOSER] drafting variants to time too, e.g. adaptive "
                    "fixed:5+ngram heuristic+hybrid table:policy.json")
    ap.add_argument("--index", default=None,
                    help="the per-task index (`specfair index build`) of the +suffix and "
                    "+suffix-hybrid variants that name none")
    ap.add_argument("--verify-curve", default="cache",
                    help="the adaptive variants' verify curve: cache (this machine's, measured "
                    "once per pair and dtype), online (fitted per request) or a slope s of "
                    "v(k) = 1 + s (k - 1)")
    ap.add_argument("--suite", default=None,
                    help="take the prompts (first turns) from this suite instead of the built-in "
                         "ones ('default', 'study', a packaged name or a TOML file)")
    ap.add_argument("--split", default="test", help="with --suite: train|test|all")
    ap.add_argument("--n-per-task", type=int, default=2, help="with --suite: prompts per task")
    ap.add_argument("--data-root", default=None, help="with --suite: base of its data paths")
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face generate runs")
    ap.add_argument("--no-hf-ar", action="store_true",
                    help="skip HF's plain generate (HF assisted output is matched to our AR)")
    ap.add_argument("--tasks", nargs="*", default=None, help="with --suite study: these tasks")
    ap.add_argument("--no-hf-gamma", action="store_true",
                    help="skip HF assisted generation at a fixed gamma (keep its defaults)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of one SD call")
    ap.add_argument("--out", type=Path, default=None, help="write the records as JSON")
    args = ap.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    try:
        if args.gamma < 1:
            raise SpecfairError(f"--gamma must be >= 1, got {args.gamma}")
        args.variants = parse_variants(args.variants)
        args.verify_curve = parse_verify_curve(args.verify_curve, args.variants)
        args.indexes = variant_indexes(args.variants, args.index)
        partial = args.out.with_suffix(".partial.jsonl") if args.out else None
        settings = _settings(args)
        done = _resumed(partial, settings) if partial else {}
        pair = load_pair(
            args.target, args.drafter, dtype=args.dtype, device=args.device, kernels=args.kernels
        )
        for index in set(args.indexes.values()):
            index.check_tokenizer(pair.tokenizer)
        console.print(
            f"target {pair.target_name}, drafter {pair.drafter_name}, "
            f"{pair.target.dtype} on {pair.target.device}, "
            f"{torch.get_num_threads()} threads"
        )
        warm_up(pair, args)
        curve = with_verify_curve(pair, args)
        if curve is not None:
            console.print(f"verify curve ({curve['source']}): "
                          + (f"v(k) = 1 + {curve['verify_slope']:.3f} (k - 1)"
                             if "verify_slope" in curve else "fitted per request"))
        records = []
        if done:
            console.print(f"resuming: {len(done)} prompts done in {partial}")
        elif partial:  # a fresh file: its first line records the settings
            partial.write_text(json.dumps({"settings": settings}) + "\n")
        chosen = prompts_of(args)[: args.limit]
        records += [done[pid] for pid, _, _ in chosen if pid in done]
        todo = [c for c in chosen if c[0] not in done]
        # a line every 30 s with the ETA, also when the output is redirected (a prompt takes
        # minutes with the variants and HF's assisted generation)
        with progress_bar(len(todo), "engine") as advance:
            for pid, task, text in todo:
                rec = run_prompt(pair, pid, task, text, args, console)
                if partial:
                    with open(partial, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                console.print(
                    f"{pid}: AR {rec['ar']['tps']:.2f} t/s, SD {rec['sd']['tps']:.2f} t/s, "
                    f"alpha {rec['alpha']:.2f}, tau {rec['tau']:.2f}"
                )
                records.append(rec)
                advance(pid)
        report(records, args, console)
        if args.profile:
            profile(pair, args, console)
    except SpecfairError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        meta = {
            "target": pair.target_name,
            "drafter": pair.drafter_name,
            "dtype": str(pair.target.dtype),
            "kernels": args.kernels,
            "device": str(pair.target.device),
            "gamma": args.gamma,
            "max_new_tokens": args.max_new_tokens,
            "threads": torch.get_num_threads(),
            "variants": [label for label, _, _ in args.variants],
            "suite": args.suite, "split": args.split, "n_per_task": args.n_per_task,
            "cpu": cpu_name(), "verify_curve": curve,
            "indexes": {label: str(ix.path) for label, ix in args.indexes.items()},
        }
        meta["against_hf"] = against_hf(records)
        meta["per_task"] = task_speedup_cis(records)
        meta["adaptive_vs_flat"] = adaptive_pairs(records)
        args.out.write_text(json.dumps({"meta": meta, "prompts": records}, indent=1))
        console.print(f"wrote {args.out}")
    return 0


# what a resumed run must share with the killed one (its prompts, models and decoding)
_RESUME_KEYS = ("target", "drafter", "dtype", "kernels", "device", "gamma", "max_new_tokens",
                "conf_gamma", "draft_threshold", "suite", "split", "n_per_task", "tasks",
                "data_root", "no_hf", "no_hf_ar", "no_hf_gamma")


def _settings(args) -> dict:
    adaptive = any(pol.kind == "adaptive" for _, pol, _ in args.variants)
    return {k: getattr(args, k) for k in _RESUME_KEYS} | {
        "variants": [label for label, _, _ in args.variants]} | (
        {"verify_curve": args.verify_curve} if adaptive else {}) | (
        {"indexes": {label: ix.settings() for label, ix in args.indexes.items()}}
        if args.indexes else {})


def _resumed(partial: Path, settings: dict) -> dict:
    """The records of the prompts a killed run finished (``--out``'s ``.partial.jsonl``),
    refused (one error, nothing written) where that run had other settings: its records would
    be mixed into these. Files from before the settings line resume as they are."""
    if not partial.is_file():
        return {}
    rows = [json.loads(x) for x in partial.read_text().splitlines() if x.strip()]
    had = next((r["settings"] for r in rows if "settings" in r), None)
    now = json.loads(json.dumps(settings))  # as the file holds them (tuples as lists)
    if had is not None and had != now:
        diff = sorted(k for k in now.keys() | had.keys() if had.get(k) != now.get(k))
        raise SpecfairError(f"{partial} holds a run with other settings ({', '.join(diff)}); "
                            "use another --out or delete it")
    return {r["id"]: r for r in rows if "id" in r}


if __name__ == "__main__":
    sys.exit(main())

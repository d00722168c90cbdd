"""Check an exported drafter: llama-server on the GGUF vs the HF model, greedy and logits.

    python benchmarks/check_gguf_export.py DRAFTER_DIR [--outtype f16] [--prompts 4] \
        [--max-new-tokens 32] [--gguf OUT.gguf]

Exports DRAFTER_DIR with ``specfair export-gguf`` (unless --gguf exists), serves it alone, and
for the first prompts of the default suite's test split (chat template, one per task) compares
llama.cpp's greedy tokens with specfair's HF greedy decoding (float32), and the top-5
log-probabilities llama.cpp reports at each generated position with the HF model's
log-softmax at the same position (llama.cpp reports one entry per text piece: a character made
of several tokens gets one, for its last token). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("drafter")
    ap.add_argument("--outtype", default="f16")
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specfair.backends.gguf_export import export_gguf
    from specfair.backends.llama_server import LlamaServer
    from specfair.decoding import autoregressive_generate
    from specfair.tasks import encode_prompt, load_suite

    src = Path(a.drafter)
    gguf = Path(a.gguf or f"/tmp/{src.name}-{a.outtype}.gguf")
    t0 = time.time()
    if not gguf.exists():
        export_gguf(src, gguf, outtype=a.outtype)
    export_s = time.time() - t0
    tok = AutoTokenizer.from_pretrained(src)
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    by_task: dict = {}
    for p in load_suite("default").prompts("test"):
        by_task.setdefault(p.task, p)
    prompts = list(by_task.values())[: a.prompts]
    rows = []
    with LlamaServer(gguf, threads=a.threads, ctx_size=2048) as srv:
        for p in prompts:
            ids = encode_prompt(tok, p, turn=0)
            ref = autoregressive_generate(hf, ids, max_new_tokens=a.max_new_tokens,
                                          eos_token_id=tok.eos_token_id).tokens  # fmt: skip
            out = srv.request("/completion", {
                "prompt": ids, "n_predict": a.max_new_tokens, "temperature": 0.0,
                "cache_prompt": False, "return_tokens": True, "n_probs": 5,
                "post_sampling_probs": False})  # fmt: skip
            got = list(out["tokens"])
            if out.get("stop_type") == "eos" and (not got or got[-1] != tok.eos_token_id):
                got.append(tok.eos_token_id)
            same = next((i for i, (x, y) in enumerate(zip(got, ref, strict=False)) if x != y),
                        min(len(got), len(ref)))  # fmt: skip
            # compare log-probs up to the first divergence (same context on both sides)
            seq = torch.tensor([ids + ref])
            with torch.no_grad():
                logp = torch.log_softmax(hf(seq).logits[0].float(), -1)
            # llama-server sends one probability entry per *text piece*: tokens that only
            # together make a UTF-8 character (two-token kanji, say) share one entry, carrying
            # the last token's id and distribution. Align each entry with its token by id.
            diffs, k = [], 0
            for pos in out["completion_probabilities"]:
                while k < same and ref[k] != pos["id"]:
                    k += 1
                if k >= same:
                    break
                row = logp[len(ids) - 1 + k]
                diffs += [abs(c["logprob"] - row[c["id"]].item()) for c in pos["top_logprobs"]]
                k += 1
            rows.append({"id": p.id, "task": p.task, "n_hf": len(ref), "n_llamacpp": len(got),
                         "identical": got == ref, "first_divergence": same,
                         "positions_compared": len(diffs) // 5,
                         "max_abs_logprob_diff": max(diffs) if diffs else None,
                         "mean_abs_logprob_diff": sum(diffs) / len(diffs) if diffs else None})
    print(json.dumps({"drafter": str(src), "gguf": str(gguf), "outtype": a.outtype,
                      "gguf_mb": round(gguf.stat().st_size / 1e6, 1),
                      "export_s": round(export_s, 1), "prompts": rows,
                      "greedy_match_rate": sum(r["identical"] for r in rows) / len(rows)},
                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

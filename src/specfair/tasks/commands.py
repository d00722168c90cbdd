"""``specfair data synthesize``: the target writes the prompts of tasks short of real data
(:mod:`specfair.tasks.synthetic`)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from specfair.defaults import DEFAULT_TARGET
from specfair.errors import SpecfairError
from specfair.rundir import check_out_dir


def synthesize_command(tasks: list[str], *, n: int, model: str = DEFAULT_TARGET, seed: int = 0,
                       batch_size: int = 16, dtype: str = "auto", device: str = "auto",
                       out: Path | None = None, force: bool = False) -> None:
    from specfair.decoding.batched import batched_greedy
    from specfair.models.eos import eos_ids
    from specfair.models.load import load_model, load_tokenizer
    from specfair.tasks.chat import encode_prompt
    from specfair.tasks.synthetic import SPECS, synthesize, synthetic_path, write_synthetic

    if unknown := [t for t in tasks if t not in SPECS]:
        raise SpecfairError(f"no synthetic recipe for {unknown} (known: {sorted(SPECS)})")
    if n < 1:
        raise SpecfairError(f"--n must be >= 1, got {n}")
    if out is not None:
        out = check_out_dir(out, "--out")
    todo = [t for t in tasks if force or not synthetic_path(t, out).is_file()]
    for t in sorted(set(tasks) - set(todo)):
        print(f"{t}: {synthetic_path(t, out)} exists (--force to write it again)")
    if not todo:
        return
    target = load_model(model, dtype=dtype, device=device)
    tok = load_tokenizer(model)
    eos = eos_ids(target, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]

    def generate(requests: list[str], batch_seed: int) -> list[str]:
        torch.manual_seed(batch_seed)
        ids = [encode_prompt(tok, r) for r in requests]
        outs = batched_greedy(target, ids, max_new_tokens=80, eos_token_id=eos,
                              pad_token_id=pad, batch_size=batch_size,
                              sampling={"temperature": 0.9, "top_p": 0.95, "top_k": 0})
        return [tok.decode(toks, skip_special_tokens=True) for toks, _ in outs]

    for task in todo:
        t0 = time.perf_counter()

        def progress(kept: int, tried: int, task=task, t0=t0) -> None:
            print(f"{task}: {kept}/{n} kept of {tried} sampled "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

        rows, meta = synthesize(task, n, generate, seed=seed, batch_size=batch_size,
                                on_progress=progress)
        meta["seconds"] = round(time.perf_counter() - t0, 1)
        path = write_synthetic(task, rows, meta, model, out)
        print(f"wrote {path} ({len(rows)} prompts, {meta['samples']} sampled, "
              f"{meta['seconds']} s)")

"""``specfair index build``: the per-task SuffixDecoding index of a suite's train split
(:mod:`specfair.drafters.index`: the format), from the prompts' references and the target's
answers (``responses.jsonl`` files, read by :mod:`specfair.measure.responses`: hence here, above
``drafters``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from specfair.drafters.index import INDEX_FILE, build_index
from specfair.errors import SpecfairError
from specfair.measure.responses import read_responses
from specfair.rundir import check_out_dir


def index_build_command(target: str, suite: str, out: str | Path, *, split: str = "train",
                        responses: list[Path] | None = None,
                        data_root: str | Path | None = None) -> dict:  # fmt: skip
    """Write the index directory ``out`` (replaced whole if it is an index already); returns
    the manifest. Everything is checked before the tokenizer loads or anything is written."""
    from specfair.models.load import load_tokenizer, resolve_source
    from specfair.tasks import load_suite

    out = check_out_dir(out)
    if out.is_dir() and any(out.iterdir()) and not (out / INDEX_FILE).is_file():
        raise SpecfairError(f"--out {out} holds other files (not an index); give a new or empty "
                            "directory")
    for f in responses or []:
        if not Path(f).is_file():
            raise SpecfairError(f"--responses {f}: no such file")
    if suite == "study":  # the study's suite as the engine benchmark splits it (seed 0)
        from specfair.tasks.study import load_study_suite

        suite_obj = load_study_suite(seed=0)
    else:
        suite_obj = load_suite(suite, data_root=data_root)
    prompts = suite_obj.prompts(split)
    if not prompts:
        raise SpecfairError(f"suite {suite_obj.name}: no prompts in split {split!r}")
    if split != "train":
        print(f"notice: indexing split {split!r}: drafts from it are in-sample for its prompts",
              file=sys.stderr)
    answers: dict = {}
    for f in responses or []:
        for key, rec in read_responses(f).items():
            answers.setdefault(key, rec)
    resolve_source(target)
    tokenizer = load_tokenizer(target)
    t0 = time.perf_counter()
    manifest = build_index(out, prompts, tokenizer, tokenizer_name=str(target), responses=answers,
                           meta={"suite": str(suite), "data_hash": suite_obj.content_hash(),
                                 "split": split,
                                 "responses": [str(f) for f in responses or []]})  # fmt: skip
    for task, t in manifest["tasks"].items():
        src = ", ".join(f"{n} {k}" for k, n in t["from"].items())
        print(f"{task:16s} {t['sequences']:6d} sequences {t['tokens']:9d} tokens ({src})")
    for task in manifest["tasks_without_text"]:
        print(f"{task:16s} no text (no references, no answers): drafts from the request only")
    print(f"index: {out} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    return manifest

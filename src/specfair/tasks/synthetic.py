"""Synthetic prompts for tasks where real public data is short: the target model itself writes
new requests from real seed examples (``specfair data synthesize TASK``).

ShareGPT (the one chat source we can fetch) holds 22 Chinese and 2 Japanese first turns, so the
study's open-ended ``zh`` / ``ja`` requests and its short factual ``qa`` questions are written by
the target: each new prompt is sampled (temperature 0.9, top-p 0.95, seeded) from a request that
shows it 4 seed examples drawn from the embedded default suite's *train* split of the same task
(the default suite's test prompts are never shown), in the seed language. Outputs are cleaned
(first line, quotes and numbering stripped), filtered (the task's script, 6-300 characters, no
URL) and deduplicated against each other and every real prompt of the task (also near
duplicates: character-bigram Jaccard similarity > 0.6); the file says how it was made.

The study uses the packaged set (``specfair/tasks/synthetic/TASK.jsonl``, and ``MADE.json``:
how each file was made, by which model, its sha256), so no user has to wait for the writing;
``specfair data synthesize`` is how it was made and how to make another (into the data
directory's ``synthetic/`` or ``--out DIR``; copy a set into the package to change what the
study uses). Whether they stand for the real task is measured, not assumed:
``benchmarks/synthetic_check.py`` compares the base drafter's acceptance on them with the real
prompts of the same task.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from specfair.atomic import write_text
from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt, normalize_text

SOURCE = "synthetic"
_HAN = re.compile(r"[\u4e00-\u9fff]")
_KANA = re.compile(r"[\u3040-\u30ff]")


def _is_zh(s: str) -> bool:
    return len(_HAN.findall(s)) >= 0.4 * len(s) and not _KANA.search(s)


def _is_ja(s: str) -> bool:
    return len(_KANA.findall(s)) >= 0.1 * len(s)


def _is_en(s: str) -> bool:
    return sum(c.isascii() for c in s) >= 0.97 * len(s) and s.rstrip().endswith("?")


# questions that ask for an explanation rather than one fact: the real qa prompts ("What is the
# capital city of Australia?") are answered in a word or a phrase; the first synthetic set, whose
# questions ("Why did the Napoleonic Wars end?") invite paragraphs, failed the real-vs-synthetic
# check by -0.123 greedy alpha (docs/RESULTS.md)
_OPEN_QA = re.compile(
    r"^(why|how (do|does|did|can|could|is|are|was|were|has|have|would|should|to)|explain|"
    r"describe|discuss|compare|what (are|were) the|what is the (difference|role|purpose|"
    r"function|importance|significance|impact|effect|main|primary|process|reason|benefit|"
    r"advantage|relationship|meaning))\b", re.IGNORECASE)


def _is_short_fact(s: str) -> bool:
    """One short English question after one fact, as the real qa prompts are."""
    s = s.strip()
    return _is_en(s) and len(s) <= 120 and s.count("?") == 1 and not _OPEN_QA.match(s)


@dataclass(frozen=True)
class SynthSpec:
    task: str  # the study task the prompts are for
    seed_task: str  # the default suite's task whose train prompts are the seeds
    instruction: str  # the request to the target; {examples} is replaced by the numbered seeds
    accept: Callable[[str], bool]
    described: str


SPECS: dict[str, SynthSpec] = {
    "zh": SynthSpec(
        "zh", "zh",
        "下面是用户向AI助手提出的一些请求示例：\n{examples}\n请用中文写一个新的用户请求，话题要和"
        "上面的例子都不同。只输出这个请求本身，不要回答它。",
        _is_zh, "open-ended requests in Chinese (a few small math questions, like the seeds), "
        "written by the target from 4 of the "
        "default suite's zh train prompts each"),
    "ja": SynthSpec(
        "ja", "ja",
        "以下は、ユーザーがAIアシスタントに送った依頼の例です：\n{examples}\n上の例とは違う話題"
        "で、新しい依頼を日本語で一つ書いてください。依頼文だけを出力し、答えは書かないでください。",
        _is_ja, "open-ended requests in Japanese (a few small math questions, like the seeds), "
        "written by the target from 4 of the "
        "default suite's ja train prompts each"),
    "qa": SynthSpec(
        "qa", "qa",
        "Here are examples of short factual questions that users ask an AI assistant:\n"
        "{examples}\nWrite one new factual question on a different topic whose answer is a "
        "single word, name, number, date or short phrase, like the examples. Output only the "
        "question, not its answer.",
        _is_short_fact, "short one-fact questions in English (answered in a word or a phrase; "
        "questions asking why/how/explain rejected), written by the target from 4 of the "
        "default suite's qa train prompts each"),
}


def _grams(s: str) -> set[str]:
    s = normalize_text(s)
    return {s[i : i + 2] for i in range(max(1, len(s) - 1))}


def _near_duplicate(g: set[str], kept: list[set[str]], limit: float = 0.6) -> bool:
    """Character-bigram Jaccard similarity above ``limit`` with a kept prompt or a seed."""
    return any(len(g & k) > limit * len(g | k) for k in kept)


PACKAGED = "synthetic"  # specfair/tasks/synthetic/TASK.jsonl + MADE.json: what the study uses


def synthetic_path(task: str, out_dir: Path | None = None) -> Path:
    """Where ``specfair data synthesize`` writes ``task``'s prompts (default: the data
    directory's ``synthetic/``)."""
    from specfair.tasks.datasets import data_home

    return (out_dir if out_dir is not None else data_home() / SOURCE) / f"{task}.jsonl"


def _clean(text: str) -> str:
    line = text.strip().split("\n")[0].strip()
    line = re.sub(r"^(\d+[.、)]|[-*•])\s*", "", line)
    line = re.sub(r"^(请求|依頼|Question|问题|質問)\s*[:：]\s*", "", line)
    return line.strip().strip("\"'“”「」『』").strip()


def _seed_prompts(spec: SynthSpec) -> tuple[list[str], list[str]]:
    """The seeds (the default suite's train prompts of the task) and every real prompt of the
    task (both splits: a synthetic prompt must not repeat one, nor come close)."""
    from specfair.tasks.suite_load import load_default_suite

    suite = load_default_suite()
    seeds = [p.turns[0] for p in suite.prompts("train", [spec.seed_task])
             if spec.accept(p.turns[0]) or spec.task == "qa"]
    return seeds, [p.turns[0] for p in suite.prompts("all", [spec.seed_task])]


def synthesize(
    task: str,
    n: int,
    generate: Callable[[list[str], int], list[str]],
    *,
    seed: int = 0,
    batch_size: int = 16,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict], dict]:
    """``n`` new prompts for ``task``; ``generate(requests, seed)`` samples one answer per
    request (the target). Returns the rows and the file's provenance record."""
    if task not in SPECS:
        raise SpecfairError(f"no synthetic recipe for task {task!r} (known: {sorted(SPECS)})")
    spec = SPECS[task]
    seeds, real = _seed_prompts(spec)
    if len(seeds) < 4:
        raise SpecfairError(f"synthetic {task}: only {len(seeds)} seed prompts")
    seen = {normalize_text(s) for s in real}
    grams = [_grams(s) for s in real]
    rng = random.Random(seed)
    rows: list[dict] = []
    tried = rounds = 0
    while len(rows) < n:
        if rounds >= 8 * (n // batch_size + 1):
            raise SpecfairError(f"synthetic {task}: {len(rows)} of {n} prompts after {tried} "
                                "samples (too many rejected or duplicated)")
        batch = []
        for _ in range(batch_size):
            ex = rng.sample(seeds, 4)
            batch.append(spec.instruction.format(
                examples="\n".join(f"{i + 1}. {s}" for i, s in enumerate(ex))))
        outs = generate(batch, seed * 100_003 + rounds)
        rounds += 1
        for raw in outs:
            tried += 1
            text = _clean(raw)
            key = normalize_text(text)
            if not (6 <= len(text) <= 300) or "http" in text or key in seen:
                continue
            if not spec.accept(text) or _near_duplicate(g := _grams(text), grams):
                continue
            seen.add(key)
            grams.append(g)
            rows.append({"id": f"synth_{task}-{len(rows):04d}", "task": task, "prompt": text})
            if len(rows) == n:
                break
        if on_progress:
            on_progress(len(rows), tried)
    meta = {"task": task, "how": spec.described, "seed": seed, "n_seeds": len(seeds),
            "samples": tried, "kept": len(rows), "instruction": spec.instruction,
            "sampling": "temperature 0.9, top_p 0.95, max 80 new tokens"}
    return rows, meta


def write_synthetic(task: str, rows: list[dict], meta: dict, model: str,
                    out_dir: Path | None = None) -> Path:
    """Write ``TASK.jsonl`` into ``out_dir`` and how it was made into its ``MADE.json``."""
    path = synthetic_path(task, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    made_path = path.parent / "MADE.json"
    try:
        made = json.loads(made_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        made = {}
    made[path.name] = {**meta, "model": model,
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    write_text(made_path, json.dumps(made, indent=2, ensure_ascii=False))
    return path


def read_synthetic(task: str, folder: Path | None = None) -> list[Prompt]:
    """The synthetic prompts of ``task``: the packaged set (``specfair/tasks/synthetic/``),
    or those in ``folder``; the file's sha256 must be the one its ``MADE.json`` recorded."""
    from importlib import resources

    with resources.as_file(resources.files("specfair.tasks") / PACKAGED) as packaged:
        root = Path(folder) if folder is not None else Path(packaged)
        path = root / f"{task}.jsonl"
        if not path.is_file():
            raise SpecfairError(f"no synthetic prompts for task {task!r} ({path} missing); "
                                f"write them with `specfair data synthesize {task}`")
        data = path.read_bytes()
        try:
            made = json.loads((root / "MADE.json").read_text(encoding="utf-8"))[path.name]
        except (OSError, ValueError, KeyError, TypeError):
            raise SpecfairError(f"{root / 'MADE.json'} does not record {path.name}") from None
    if made.get("sha256") != hashlib.sha256(data).hexdigest():
        raise SpecfairError(f"{path} changed since it was written (sha256 differs from "
                            f"{root / 'MADE.json'}); write it again with `specfair data "
                            f"synthesize {task} --force`")
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return [Prompt(r["id"], task, (r["prompt"],), source=SOURCE) for r in rows]

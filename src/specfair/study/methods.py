"""The method comparison: which way of fine-tuning the drafter moves held-out acceptance most,
measured before the arms so that the study trains with the strongest one.

On the base drafter's worst and best task (greedy alpha on the held-out prompts' target
answers; or ``method_tasks``), paired at equal training tokens (``method_budget`` of the
per-task arm's largest budget, the same for every method), one copy per task:

1. how many top layers train (``method_layers``, e.g. 4, 8 and all 24: all layers is full
   fine-tuning of the decoder on the token embeddings) at each learning rate (``method_lrs``),
   on the configured training text;
2. then, at the best of those, the training text (``method_texts``: ``reference+drafter``,
   ``target`` answers, the ``drafter``'s own continuations scored by the target).

Each copy is evaluated on its task's held-out prompts' target answers (the selection) and test
sequences (reported beside it). ``method_select``: the arms train with the method of the best
held-out greedy alpha (mean over the compared tasks) when its paired gain over the configured
method is beyond its CI; otherwise with the configured one; ``methods.json`` says which, and why.

Records: ``methods/eval.jsonl`` (one line per method, task, split and prompt), ``methods/
train.jsonl`` (tokens and seconds per method and task: what each method costs on this CPU),
``methods/tasks.json`` (the tasks compared), ``methods.json`` (the summary). Resume is by
item (:mod:`specfair.study.records`): a (method, task) is trained again only while one of its
records (a prompt's evaluation, its ``train.jsonl`` line) is missing, and only those are
appended.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specfair.atomic import write_text
from specfair.distill.topn import train_copy
from specfair.measure.io import read_json, read_jsonl
from specfair.measure.progress import say
from specfair.measure.stats import bootstrap_mean
from specfair.study.config import StudyConfig
from specfair.study.records import Records

METHODS_FILE = "methods.json"


def _key(r: dict) -> tuple:
    """A ``methods/eval.jsonl`` record's item (:mod:`specfair.study.records`)."""
    return r["method"], r["split"], r["id"]


_say = functools.partial(say, "methods")


@dataclass(frozen=True)
class Method:
    layers: int  # top decoder layers trained
    lr: float
    text: str  # training text (StudyConfig.train_text)

    @property
    def name(self) -> str:
        return f"top{self.layers}-lr{self.lr:g}-{self.text}"

    def settings(self) -> dict:
        """The StudyConfig values this method sets."""
        return {"top_layers": self.layers, "lr": self.lr, "train_text": self.text}


def configured(cfg: StudyConfig) -> Method:
    return Method(cfg.top_layers, cfg.lr, cfg.train_text)


def enabled(cfg: StudyConfig) -> bool:
    return bool(cfg.method_layers or cfg.method_lrs or cfg.method_texts)


def grid(cfg: StudyConfig) -> list[Method]:
    """Layers x learning rates on the configured text (the configured method among them)."""
    layers = sorted(set(cfg.method_layers) | {cfg.top_layers})
    lrs = sorted(set(cfg.method_lrs) | {cfg.lr})
    return [Method(n, lr, cfg.train_text) for n in layers for lr in lrs]


def applied(cfg: StudyConfig, method: Method) -> StudyConfig:
    """``cfg`` with ``method``'s settings (the arms' config when the method is chosen)."""
    out = dataclasses.replace(cfg, **method.settings())
    out.origin = cfg.origin
    return out


# ---------------------------------------------------------------------------- the stage


def stage_methods(run) -> Method | None:
    """Compare the methods (resumable); returns the method the arms should train with, or
    None when there is no comparison or the configured method stays."""
    cfg = run.cfg
    if not enabled(cfg):
        return None
    root = run.dir / "methods"
    root.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(run, root)
    tokens = int(cfg.method_budget * _per_task_goal(run))
    _say(f"comparing methods on {', '.join(tasks)}: {tokens} training tokens per task each")
    methods = grid(cfg)
    for m in methods:
        _run_method(run, m, tasks, tokens, root)
    best = _choose(read_jsonl(root / "eval.jsonl"), methods, tasks, configured(cfg), cfg)[0]
    for text in cfg.method_texts:
        m = Method(best.layers, best.lr, text)
        if m not in methods:
            methods.append(m)
            _run_method(run, m, tasks, tokens, root)
    res = summarize_methods(run.dir, cfg, methods, tasks, tokens)
    write_text(run.dir / METHODS_FILE, json.dumps(res, indent=2))
    _say(f"chosen: {res['chosen']} ({res['why']})")
    chosen = next(m for m in methods if m.name == res["chosen"])
    return chosen if cfg.method_select and chosen != configured(cfg) else None


def _per_task_goal(run) -> int:
    """The per-task arm's tokens per task at the largest budget (as ``study.run``)."""
    return int(run.cfg.epochs * sum(len(s.ids) for s in run.train)) // len(run.cfg.tasks)


def _tasks(run, root: Path) -> list[str]:
    """``method_tasks``, else the base drafter's worst and best task by greedy alpha on the
    held-out prompts' target answers (stored: a resumed run compares the same tasks). The base
    drafter's records on the compared tasks' held-out and test sequences join
    ``methods/eval.jsonl`` as method ``base``: every method is paired with them."""
    path = root / "tasks.json"
    if path.is_file():
        return read_json(path)["tasks"]
    top, tags = run.fresh_top(), {"method": "base"}
    held = run.eval_records(top, run.policy, split="heldout", **tags)
    base = {t: float(np.mean([r["greedy"] for r in held if r["task"] == t]))
            for t in run.cfg.tasks if any(r["task"] == t for r in held)}
    if run.cfg.method_tasks:
        tasks = list(run.cfg.method_tasks)
    else:
        ranked = sorted(base, key=lambda t: (base[t], t))
        tasks = sorted({ranked[0], ranked[-1]}, key=ranked.index)  # worst, best
    test = [s for s in run.test if s.task in tasks]
    Records(root / "eval.jsonl", key=_key).append(
        [r for r in held + run.eval_records(top, test, split="test", **tags)
         if r["task"] in tasks])
    write_text(path, json.dumps({"tasks": tasks, "heldout_greedy_base": base}, indent=2))
    return tasks


def _train_seqs(run, text: str, task: str) -> list:
    """The task's training sequences with training text ``text``: the run's own for the
    configured text, else made (cached beside the run's) and leak-checked like them."""
    from specfair.study.data import train_sequences, training_text_leaks

    if text == run.cfg.train_text:
        return [s for s in run.train if s.task == task]
    prompts = [p for p in run.prompts.train if p.task == task]
    seqs = train_sequences(dataclasses.replace(run.cfg, train_text=text), run.target,
                           run.drafter, run.tok, prompts, run.dir)
    gone = {d["id"] for d in training_text_leaks(
        seqs, run.test, run.prompts.test,
        lambda ids: run.tok.decode(list(ids), skip_special_tokens=True))}
    return [s for s in seqs if s.id not in gone]


def _run_method(run, m: Method, tasks: list[str], tokens: int, root: Path) -> None:
    from specfair.study.data import fill_signals

    cfg = run.cfg
    evals = Records(root / "eval.jsonl", key=_key)
    trained = Records(root / "train.jsonl", key=lambda r: (r["method"], r["task"]))
    for task in tasks:
        held = [s for s in run.policy if s.task == task]
        test = [s for s in run.test if s.task == task]
        owed = (evals.lacks(held, method=m.name, split="heldout")
                or evals.lacks(test, method=m.name, split="test"))
        if not owed and (m.name, task) in trained.held:
            continue
        train = _train_seqs(run, m.text, task)
        teacher, lower = fill_signals(dataclasses.replace(cfg, top_layers=m.layers),
                                      run.target, run.drafter, train + held + test, run.dir)
        _say(f"{m.name} on {task}: {len(train)} sequences")
        top, state, secs = train_copy(
            run.drafter, run.head, [run.signals(s, teacher, lower) for s in train], tokens,
            layers=m.layers, lr=m.lr, batch_size=cfg.batch_size, seed=cfg.seed,
            warmup=cfg.warmup_steps, kind=cfg.loss, bf16=run.bf16)
        tags = {"method": m.name} | m.settings()
        for split, seqs in (("heldout", held), ("test", test)):
            evals.append(run.eval_records(top, seqs, teacher, lower, split=split, **tags))
        trained.append([tags | {
            "task": task, "n_sequences": len(train), "tokens": state.tokens, "seconds": secs,
            "tokens_per_s": state.tokens / max(secs, 1e-9),
            "supervised_tokens": sum(s.n_resp for s in train)}])
        _say(f"{m.name} on {task}: {state.tokens} tokens in {secs:.0f} s")
        del top


# ---------------------------------------------------------------------------- the summary


def _means(recs: list[dict], split: str, tasks: list[str]) -> dict[str, dict[str, float]]:
    """``{task: {prompt id: greedy}}`` of one method's records on ``split``."""
    return {t: {r["id"]: r["greedy"] for r in recs if r["split"] == split and r["task"] == t}
            for t in tasks}


def _stratified_diff(a: dict, b: dict, tasks: list[str], n_boot: int, seed: int) -> dict:
    """The mean over ``tasks`` of the per-task mean paired difference ``a - b`` (prompts of a
    task resampled within it), with its bootstrap CI and whether it excludes 0."""
    rng = np.random.default_rng(seed)
    points, boots = [], []
    for t in tasks:
        ids = sorted(set(a[t]) & set(b[t]))
        d = np.array([a[t][i] - b[t][i] for i in ids])
        points.append(d.mean())
        boots.append(d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1))
    point, boot = float(np.mean(points)), np.mean(boots, axis=0)
    lo, hi = (float(x) for x in np.quantile(boot, [0.025, 0.975]))
    return {"value": point, "lo": lo, "hi": hi, "claimed": bool(lo > 0 or hi < 0)}


def _choose(recs: list[dict], methods: list[Method], tasks: list[str], conf: Method,
            cfg: StudyConfig) -> tuple[Method, str]:
    """The method the arms train with: the best mean held-out greedy alpha over ``tasks`` if
    its paired gain over the configured method ``conf`` is beyond its CI, else ``conf``."""
    by = {m: _means([r for r in recs if r["method"] == m.name], "heldout", tasks)
          for m in methods}
    score = {m: float(np.mean([np.mean(list(v[t].values())) for t in tasks]))
             for m, v in by.items() if all(v[t] for t in tasks)}
    if conf not in score:
        return conf, "the configured method has no held-out records"
    best = max(score, key=lambda m: (score[m], m == conf))
    if best == conf:
        return conf, "the configured method has the best held-out greedy alpha"
    d = _stratified_diff(by[best], by[conf], tasks, cfg.bootstrap, cfg.seed)
    if d["lo"] > 0:
        return best, (f"best held-out greedy alpha, {d['value']:+.3f} [{d['lo']:+.3f}, "
                      f"{d['hi']:+.3f}] over the configured {conf.name}")
    return conf, (f"the best held-out method ({best.name}, {d['value']:+.3f} [{d['lo']:+.3f}, "
                  f"{d['hi']:+.3f}]) is not beyond its CI over the configured one")


def summarize_methods(run_dir: Path, cfg: StudyConfig, methods: list[Method],
                      tasks: list[str], tokens: int) -> dict:
    """Per method and task: held-out and test greedy alpha, paired change against the base
    drafter on both (CIs over prompts), training seconds and tokens/s; per method the held-out
    and test gain over the configured method (mean over tasks); the chosen method and why."""
    recs = read_jsonl(run_dir / "methods" / "eval.jsonl")
    train = {(r["method"], r["task"]): r for r in read_jsonl(run_dir / "methods" / "train.jsonl")}
    base = {(r["id"], r["split"]): r["greedy"] for r in recs if r["method"] == "base"}
    conf = configured(cfg)
    rows = []
    by = {m: [r for r in recs if r["method"] == m.name] for m in methods}
    for m in methods:
        per = {}
        for t in tasks:
            row = {"seconds": train[(m.name, t)]["seconds"],
                   "tokens_per_s": train[(m.name, t)]["tokens_per_s"],
                   "n_sequences": train[(m.name, t)]["n_sequences"]}
            for split in ("heldout", "test"):
                mine = [r for r in by[m] if r["task"] == t and r["split"] == split]
                row[split] = float(np.mean([r["greedy"] for r in mine]))
                ci = bootstrap_mean([r["greedy"] - base[(r["id"], split)] for r in mine],
                                    n_resamples=cfg.bootstrap, seed=cfg.seed)
                row[f"d_{split}_vs_base"] = {"value": ci["mean"], "lo": ci["lo"],
                                             "hi": ci["hi"]}
            per[t] = row
        out = {"name": m.name, **m.settings(), "tasks": per}
        for split in ("heldout", "test"):
            out[f"d_{split}_vs_configured"] = _stratified_diff(
                _means(by[m], split, tasks), _means(by[conf], split, tasks), tasks,
                cfg.bootstrap, cfg.seed)
        rows.append(out)
    chosen, why = _choose(recs, methods, tasks, conf, cfg)
    return {"tasks": tasks, "tokens_per_task": tokens, "configured": conf.name,
            "chosen": chosen.name, "why": why, "select": cfg.method_select,
            "base": {t: {split: float(np.mean([r["greedy"] for r in recs
                                               if r["method"] == "base" and r["task"] == t
                                               and r["split"] == split]))
                         for split in ("heldout", "test")} for t in tasks},
            "methods": rows}


def read_methods(run_dir: Path) -> dict | None:
    path = Path(run_dir) / METHODS_FILE
    return read_json(path) if path.is_file() else None


__all__ = ["Method", "applied", "configured", "enabled", "grid", "read_methods",
           "stage_methods", "summarize_methods"]

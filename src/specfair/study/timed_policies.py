"""The timed stage's drafting policies and HF assisted generation (issue 29, item 5: timed with
the policy users deploy).

``timed_policies`` (:class:`specfair.study.config.StudyConfig`; ``[]`` = the stage's fixed
``gamma`` only, as before) lists ``POLICY[+PROPOSER]`` variants, the syntax of
``specfair bench --policy/--proposer`` and ``benchmarks/engine.py --variants`` (e.g.
``fixed:5``, ``adaptive+hybrid``). The timed stage (:mod:`specfair.study.timed`) times every
timed drafter (the base drafter and each arm's at the largest budget, first seed) under each,
in its prompt-by-prompt loop: for each prompt the AR run once, then each drafter × policy's SD
run, then (``timed_hf``) HF assisted generation with its defaults and the base drafter
(:class:`specfair.backends.hf_assisted.HFAssistedBackend`). ``adaptive`` prices the run's
measured verify curve (``costs.json``, as ``benchmarks/engine.py`` prices the machine's
cached one; a curve that is no cost: fitted per request); each record's settings say which.

Files: under the stage's own ``fixed:<gamma>`` (the drafter alone) the files of runs made
before these keys existed, ``timed/<drafter>/bench.jsonl``; under another policy
``timed/policies/<policy>/<drafter>/bench.jsonl`` (``:`` written ``-``: ``fixed-7+model``);
HF assisted generation ``timed/hf-assisted/bench.jsonl``. Each file holds the base drafter's AR
records (relabelled with its own settings: the pairing) and its own SD records, resumable per
prompt as every bench file. A policy (or ``timed_hf``) added to a timed run is timed on, against
the AR records already made (``timed/machines.jsonl`` says in which sessions); one removed keeps
its files and is left out of ``timed.json``.

``timed.json`` keeps its blocks (``drafters``: the stage's own policy, with the predictions and
the index variants) and adds ``policies`` (per policy, per drafter: the measured speed-up per
task with its bootstrap CI, max/min, the worst task, the paired ratio to the base drafter under
the same policy per task and over all prompts, and the paired ratio to HF assisted generation)
and ``hf_assisted`` (its speed-up per task, max/min, worst task, its settings), when set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from specfair.backends.hf_assisted import NAME as HF_LABEL
from specfair.decoding.policy import DraftingPolicy
from specfair.errors import SpecfairError
from specfair.measure.bench import BENCH_FILE, BENCH_SUMMARY_FILE, load_bench_records
from specfair.measure.bench_summary import compare_bench, summarize_bench
from specfair.measure.io import write_json
from specfair.study.config import StudyConfig, timed_variants

TIMED = "timed"
POLICIES_DIR = "policies"  # timed/policies/<policy>/<drafter>/bench.jsonl


@dataclass(frozen=True)
class TimedPolicy:
    """One of ``timed_policies``: its label (``policy+proposer``), the parsed policy, the
    proposer, and whether it is the stage's own ``fixed:<gamma>`` with the drafter alone."""

    label: str
    policy: DraftingPolicy
    proposer: str
    own: bool

    @property
    def dir(self) -> str:
        """Its folder under ``timed/policies/`` (``:`` as ``-``)."""
        return self.label.replace(":", "-")


def timed_policies(cfg: StudyConfig, verify_slope: float | None = None) -> list[TimedPolicy]:
    """The stage's policies, its own first; ``adaptive`` with the verify curve
    ``verify_slope`` (None, or a curve that is no cost: fitted per request)."""
    out = []
    for label, pol, proposer in timed_variants(cfg.timed_policies, cfg.gamma, cfg.origin):
        if pol.kind == "adaptive" and verify_slope is not None:
            try:
                pol = pol.with_verify_slope(verify_slope)
            except SpecfairError:
                pass
        out.append(TimedPolicy(label, pol, proposer, label == f"fixed:{cfg.gamma}+model"))
    return out


def unit(name: str, policy: TimedPolicy) -> str:
    """The key of drafter ``name`` timed under ``policy`` (``name`` under the stage's own)."""
    return name if policy.own else f"{name}@{policy.label}"


def bench_path(run_dir: Path, name: str, policy: TimedPolicy) -> Path:
    """The bench file of drafter ``name`` timed under ``policy``."""
    where = run_dir / TIMED if policy.own else run_dir / TIMED / POLICIES_DIR / policy.dir
    return where / name / BENCH_FILE


def hf_path(run_dir: Path) -> Path:
    return run_dir / TIMED / HF_LABEL / BENCH_FILE


def measured(path: Path, base: Path | None, boot: dict) -> tuple[dict, list[dict]]:
    """``(block, records)`` of a bench file (its ``bench_summary.json`` written beside it):
    per task the prompts, the speed-up with its bootstrap CI, alpha and the paired ratio of
    its SD runs to ``base``'s (None without ``base``); over the tasks the pooled speed-up,
    max/min and the slowest task (``worst_task``); with ``base`` the pooled paired ratio
    (``vs_base_overall``)."""
    s = summarize_bench(path, **boot)
    write_json(path.with_name(BENCH_SUMMARY_FILE), s)
    paired = compare_bench(base, path, **boot) if base is not None else {}
    tasks = {t: {"n": b["n"], "speedup": b["speedup"], "alpha": b["alpha"]["mean"],
                 "vs_base": paired.get(t, {}).get("ratio")} for t, b in s["tasks"].items()}
    sp = {t: v["speedup"]["mean"] for t, v in tasks.items()}
    block = {"drafter": s["meta"]["drafter"], "tasks": tasks,
             "overall": (s["overall"] or {}).get("speedup"),
             "max_min": max(sp.values()) / min(sp.values()) if sp and min(sp.values()) > 0
             else None,
             "worst_task": min(sp, key=sp.get) if sp else None,
             "sd_matches_ar": (s["overall"] or {}).get("sd_matches_ar")}
    if base is not None:
        block["vs_base_overall"] = compare_bench(base, path, pooled=True, **boot).get(
            "all", {}).get("ratio")
    return block, load_bench_records(path)


def _vs(other: Path, path: Path, boot: dict) -> dict:
    """``path``'s SD runs paired with ``other``'s: per task and over all prompts."""
    return {"tasks": {t: v["ratio"] for t, v in compare_bench(other, path, **boot).items()},
            "overall": compare_bench(other, path, pooled=True, **boot).get("all", {}).get(
                "ratio")}


def summarize_policies(run_dir: Path, cfg: StudyConfig, names: list[str], own: dict[str, dict],
                       boot: dict) -> tuple[dict, dict | None]:
    """``(policies, hf_assisted)`` of ``timed.json``: per policy of ``timed_policies``, per
    drafter of ``names`` timed under it, its measured block (:func:`measured`; the stage's own
    policy: ``own``, the ``drafters`` block's), and with HF assisted generation timed the
    paired ratio to it (``vs_hf``); ``hf_assisted``: its block (None when not timed)."""
    hf = hf_path(run_dir)
    hf_block = None
    if cfg.timed_hf and hf.is_file():
        hf_block, recs = measured(hf, None, boot)
        sd = next((r for r in recs if r["mode"] == "sd"), None)
        hf_block["settings"] = (sd or {}).get("settings", {}).get("hf_assistant")
    out = {}
    for pol in timed_policies(cfg):
        blocks = {}
        for name in names:
            path, base = bench_path(run_dir, name, pol), bench_path(run_dir, names[0], pol)
            if not path.is_file():
                continue
            if pol.own:
                block = dict(own[name])
            else:
                block = measured(path, None if name == names[0] else base, boot)[0]
            if hf_block is not None:
                block["vs_hf"] = _vs(hf, path, boot)
            blocks[name] = block
        out[pol.label] = {"policy": pol.policy.spec, "proposer": pol.proposer,
                          "own": pol.own, "drafters": blocks}
    return out, hf_block

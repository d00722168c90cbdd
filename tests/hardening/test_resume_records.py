"""Resume by item (issue 31, cause 1): a tiny experiment stopped at an append point of any of
its record files, then rerun, ends with exactly the records of an uninterrupted run: no record
lost (a torn last line is redone), none written twice.

One uninterrupted reference run (module fixture) copies its run directory just before each
append to a record file: the state a kill at that moment leaves (checkpoints and all). Each
case reruns from such a copy (or from one with the next line torn half-way) and compares every
record file with the reference's, record by record and in order; ``tokens_per_s`` (training
logs, ``methods/train.jsonl``) and ``seconds`` (``methods/train.jsonl``) are timings and are
not compared (every other field is, exactly). The reports (figures: most of a rerun's time)
are not written, and files are not fsynced. By default each stage is stopped at its first,
middle and last append (and torn at the middle one); ``SPECFAIR_EVERY_APPEND=1`` stops it at
every one, each also torn (112 append points of the base, arm, seed, dose and routing stages
passed so, and the methods stage's at its first, middle and last); the index arm's
(``indexes/eval.jsonl``, :mod:`specfair.study.index_arm`) as every stage's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from study_data import write_study_sources

from specfair.study.config import StudyConfig

TOML = """target = "{t}"
drafter = "{d}"
tasks = ["chat", "code"]
n_train = 4
n_test = 2
n_heldout = 1
max_prompt_tokens = 24
train_response_tokens = 6
test_response_tokens = 6
topk = 8
top_layers = 1
batch_size = 2
epochs = 1.0
budgets = [0.5, 1.0]
lr = 1e-3
overfit_epochs = 1.0
bootstrap = 20
arms = ["uniform", "per-task"]
seeds = [0, 1]
prompt_fractions = [0.5, 1.0]
n_bench = 0
gamma = 3
method_lrs = [1e-2]
method_budget = 0.5
method_select = false
"""
TIMING = {"tokens_per_s", "seconds"}  # timings (training logs, methods/train.jsonl)
STAGES = ("methods", "base", "arm", "seeds", "dose", "routing", "indexes")


def _is_record_file(rel: str) -> bool:
    """The files the training and evaluation stages append records to."""
    return rel in ("eval.jsonl", "policy_eval.jsonl", "routing/eval.jsonl",
                   "indexes/eval.jsonl") or (
        rel.startswith(("arms/", "methods/")) and rel.endswith(".jsonl"))


def _stage(rel: str, rec: dict) -> str:
    """Which stage appended ``rec`` to ``rel``."""
    if rel.startswith(("routing/", "methods/", "indexes/")):
        return rel.split("/")[0]
    if rel.startswith("arms/dose/") or "@" in rec.get("arm", ""):
        return "dose"
    if rel.startswith("arms/seed") or rec.get("seed", 0) == 1:
        return "seeds"
    return "base" if rec.get("arm") == "base" else "arm"


def records(run: Path) -> dict[str, list[dict]]:
    """Every record file of ``run``: its records in order (timings dropped)."""
    out = {}
    for p in sorted(run.rglob("*.jsonl")):
        rel = p.relative_to(run).as_posix()
        if _is_record_file(rel):
            out[rel] = [{k: v for k, v in json.loads(x).items() if k not in TIMING}
                        for x in p.read_text().splitlines()]
    return out


class Snapshots:
    """Wraps ``append_jsonl`` wherever specfair bound it: before each append to a record file
    of ``run``, ``run`` is copied (the lock left out), and the append is listed."""

    def __init__(self, run: Path, root: Path) -> None:
        self.run, self.root, self.points = run, root, []

    def install(self, mp: pytest.MonkeyPatch) -> None:
        import specfair.measure.io as io

        orig = io.append_jsonl

        def append(path, record):
            p = Path(path)
            if p.is_relative_to(self.run) and _is_record_file(
                    rel := p.relative_to(self.run).as_posix()):
                dst = self.root / str(len(self.points))
                shutil.copytree(self.run, dst, ignore=shutil.ignore_patterns(".specfair.lock"))
                self.points.append({"dir": dst, "file": rel, "stage": _stage(rel, record),
                                    "arm": record.get("arm"),
                                    "line": json.dumps(record, separators=(",", ":"))})
            orig(path, record)

        for name, mod in list(sys.modules.items()):
            if name.startswith("specfair") and getattr(mod, "append_jsonl", None) is orig:
                mp.setattr(mod, "append_jsonl", append)


def chosen(points: list[dict], stage: str) -> list[tuple[int, bool]]:
    """``(point, torn)`` of ``stage``: its first, middle and last append, and the middle one's
    line torn half-way; every append point, torn and not, with
    ``SPECFAIR_EVERY_APPEND=1`` (224 reruns: 19 min on a shared 2-core machine)."""
    mine = [i for i, p in enumerate(points) if p["stage"] == stage]
    if os.environ.get("SPECFAIR_EVERY_APPEND") == "1":
        return [(i, torn) for i in mine for torn in (False, True)]
    mid = mine[len(mine) // 2]
    return [(mine[0], False), (mid, False), (mine[-1], False), (mid, True)]


def _run(cfg: Path, run_dir: Path) -> None:
    from specfair.study.run import run_study

    run_study(StudyConfig.load(cfg), run_dir)


@pytest.fixture(scope="module")
def reference(long_pair, tmp_path_factory):
    """The uninterrupted run, its records and its snapshots before each append."""
    root = tmp_path_factory.mktemp("resume")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECFAIR_HOME", str(root / "home"))
        write_study_sources(root / "home" / "data")
        cfg = root / "exp.toml"
        cfg.write_text(TOML.format(t=long_pair[0], d=long_pair[1]))
        mp.setattr("specfair.study.run.write_report", lambda run_dir: None)
        mp.setattr(os, "fsync", lambda fd: None)  # durability is not what is tested here
        snaps = Snapshots(root / "ref", root / "snaps")
        with pytest.MonkeyPatch.context() as hook:
            snaps.install(hook)
            _run(cfg, root / "ref")
        yield {"cfg": cfg, "root": root, "records": records(root / "ref"),
               "points": snaps.points}
    shutil.rmtree(root / "snaps")
    torch.set_num_threads(threads)


def assert_same_records(run: Path, want: dict[str, list[dict]], what: str,
                        ordered: bool = True) -> None:
    """The same record files, each with the same records (in the same order: a stop leaves a
    prefix, which the rerun completes; ``ordered=False`` for files edited in the middle)."""
    got = records(run)
    assert got.keys() == want.keys(), what
    for rel, recs in want.items():
        assert len(got[rel]) == len(recs), (what, rel, len(got[rel]), len(recs))
        if ordered:
            assert got[rel] == recs, (what, rel)
        else:
            key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
            assert sorted(got[rel], key=key) == sorted(recs, key=key), (what, rel)


def test_every_stage_appends_its_records(reference):
    """The reference run appends to every stage's files (the cases below are not vacuous)."""
    stages = {p["stage"] for p in reference["points"]}
    assert stages == set(STAGES)
    files = {p["file"] for p in reference["points"]}
    assert {"eval.jsonl", "policy_eval.jsonl", "routing/eval.jsonl",
            "arms/uniform/eval.jsonl", "arms/uniform/train_log.jsonl",
            "arms/seed1/per-task/chat/eval.jsonl", "arms/dose/uniform@0.5/eval.jsonl",
            "methods/eval.jsonl", "methods/train.jsonl", "indexes/eval.jsonl"} <= files


@pytest.mark.parametrize("stage", STAGES)
def test_a_stop_at_any_append_resumes_to_the_same_records(reference, stage, tmp_path):
    """Stopped before the first, middle or last append of each of the stage's blocks (and
    with the middle line torn), the rerun appends exactly what is missing."""
    cases = chosen(reference["points"], stage)
    assert cases
    for i, torn in cases:
        p = reference["points"][i]
        run = tmp_path / f"{i}{'t' if torn else ''}"
        shutil.copytree(p["dir"], run)
        if torn:  # the kill came half-way through writing the line
            (run / p["file"]).parent.mkdir(parents=True, exist_ok=True)
            with open(run / p["file"], "a") as f:
                f.write(p["line"][: len(p["line"]) // 2])
        what = f"stopped before append {i} ({p['file']}, {stage}{', torn' if torn else ''})"
        _run(reference["cfg"], run)
        assert_same_records(run, reference["records"], what)
        shutil.rmtree(run)


def _cut(path: Path, keep) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(keep(lines)))


def test_the_issues_reproductions_resume_to_the_same_records(reference, tmp_path):
    """The issue's cases on a finished run: eval.jsonl cut in the middle of a stage's block,
    its last line torn, one base record of four kept (was: KeyError), part of an arm's
    records kept (was: written again, duplicates), a record held twice (an older run)."""
    ref = reference["root"] / "ref"
    base = [i for i, r in enumerate(reference["records"]["eval.jsonl"]) if r["arm"] == "base"]
    arm = [i for i, r in enumerate(reference["records"]["eval.jsonl"])
           if r["arm"] == "per-task" and r["seed"] == 0]
    cases = {
        "cut mid-arm": lambda ls: ls[: arm[len(arm) // 2]],
        "torn last line": lambda ls: ls[:-1] + [ls[-1][: len(ls[-1]) // 2]],
        "one base record": lambda ls: [ls[base[0]]],
        "part of an arm": lambda ls: [x for i, x in enumerate(ls) if i not in arm[1:]],
        "a record twice": lambda ls: ls[: arm[2]] + ls[arm[1] : arm[2]] + ls[arm[2]:],
    }
    for what, keep in cases.items():
        run = tmp_path / what.replace(" ", "-")
        shutil.copytree(ref, run)
        _cut(run / "eval.jsonl", keep)
        _run(reference["cfg"], run)
        assert_same_records(run, reference["records"], what, ordered=False)
        shutil.rmtree(run)


KILLER = """
import json, os, signal, sys, torch
torch.set_num_threads(1)
import specfair.measure.io as io, specfair.study.run as run
from specfair.cli import main
run.write_report = lambda run_dir: None
orig, seen = io.append_jsonl, [0]
def append(path, record):
    if str(path).endswith("{file}") and record.get("arm") == "{arm}":
        seen[0] += 1
        if seen[0] == {n}:  # half the line on disk, then SIGKILL
            line = json.dumps(record)
            with open(path, "a") as f:
                f.write(line[: len(line) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    orig(path, record)
for name, mod in list(sys.modules.items()):  # wherever specfair bound it
    if name.startswith("specfair") and getattr(mod, "append_jsonl", None) is orig:
        mod.append_jsonl = append
main(["experiment", sys.argv[1], "--run-dir", sys.argv[2]])
"""


@pytest.mark.parametrize(("file", "arm"), [("/eval.jsonl", "base"),
                                           ("/policy_eval.jsonl", "per-task")])
def test_sigkill_mid_stage_resumes_to_the_same_records(reference, tmp_path, file, arm):
    """A real ``specfair experiment`` SIGKILLed half-way through writing a stage's records
    (the base drafter's test records; the per-task arm's held-out records joining
    ``policy_eval.jsonl``), then rerun: the uninterrupted run's records."""
    run = tmp_path / "run"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    n = 1 + sum(p["file"] == file[1:] and p["arm"] == arm for p in reference["points"]) // 2
    proc = subprocess.run(
        [sys.executable, "-c", KILLER.format(file=file, arm=arm, n=n), str(reference["cfg"]),
         str(run)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (run / "summary.json").exists()
    _run(reference["cfg"], run)
    assert_same_records(run, reference["records"], f"killed in {file} ({arm})")



def test_records_keep_one_record_per_key_and_redo_a_torn_one(tmp_path, capsys):
    """The one mechanism (:class:`specfair.study.records.Records`): a torn last line is cut and
    owed again; a key already held is not appended again; a file holding a key twice (an older
    run) keeps the first record and is rewritten without the other, with a notice."""
    from types import SimpleNamespace

    from specfair.study.records import Records

    path = tmp_path / "eval.jsonl"
    seqs = [SimpleNamespace(id=i) for i in "abc"]
    rec = lambda i, v=0: {"arm": "x", "budget": 1.0, "seed": 0, "id": i, "v": v}  # noqa: E731
    path.write_text("".join(json.dumps(rec(i)) + "\n" for i in "ab")
                    + json.dumps(rec("c"))[:9])  # c torn
    f = Records(path)
    assert [s.id for s in f.lacks(seqs, arm="x", budget=1.0, seed=0)] == ["c"]
    assert f.append([rec(i, 1) for i in "abcc"]) == 1  # only c, once
    got = [json.loads(x) for x in path.read_text().splitlines()]
    assert got == [rec("a"), rec("b"), rec("c", 1)]
    path.write_text(path.read_text() + json.dumps(rec("a", 2)) + "\n")  # a held twice
    assert not Records(path).lacks(seqs, arm="x", budget=1.0, seed=0)
    assert "1 record(s) of a key already held dropped" in capsys.readouterr().err
    assert [json.loads(x) for x in path.read_text().splitlines()] == got
    f = Records(path)
    f.keep(lambda r: r["id"] != "b")  # e.g. training steps past a checkpoint
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "c"]


def test_a_torn_signal_index_line_is_cut_and_the_next_entry_kept(tmp_path):
    """``signals/*/index.jsonl``: a torn last line is cut on open, so the next entry appended
    starts a line of its own (it used to be glued to the torn one and lost on every rerun)."""
    from specfair.measure.signals import SignalStore

    root, meta = tmp_path / "signals", {"kind": "test"}
    SignalStore(root, meta).put([("a", {"x": torch.ones(2, 3)})])
    idx = root / "index.jsonl"
    idx.write_text(idx.read_text() + '{"key": "b", "sha')  # a kill mid-write
    SignalStore(root, meta).put([("c", {"x": torch.zeros(1, 3)})])
    store = SignalStore(root, meta)
    assert "a" in store and "c" in store and "b" not in store
    assert torch.equal(store.get("c")["x"], torch.zeros(1, 3))
    assert all(json.loads(x) for x in idx.read_text().splitlines())

"""A run directory continued from its records alone (no ``arms/**/checkpoint/``, no
``drafters/``: what a later session on a fresh machine has): a stage that needs a copy's weights
trains it again from the start with the same seed and settings and checks it against its
records (``retrained.json``, :mod:`specfair.study.retrained`); a run that needs only its records
trains nothing. On the tiny pair in float32: the retrained copies are the same drafters bit for
bit, the records stay as they were, the timed stage times on; a stored record changed by hand
is reported as a difference (``retrained.json``, ``timed.json``, the report)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from study_data import write_study_sources

from specfair.study.config import StudyConfig
from specfair.study.run import run_study

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ["chat", "code", "mgsm_zh"]
COPIES = ["uniform", *(f"per-task/{t}" for t in TASKS)]


def _cfg(long_pair, **kw) -> StudyConfig:
    target, drafter = long_pair
    return StudyConfig(**(dict(
        target=str(target), drafter=str(drafter), tasks=TASKS, n_train=4, n_test=3,
        n_heldout=1, max_prompt_tokens=24, train_response_tokens=6, test_response_tokens=6,
        topk=8, top_layers=1, batch_size=2, epochs=1.0, budgets=[0.5, 1.0], lr=1e-3,
        overfit_epochs=1.0, bootstrap=20, n_bench=1, gamma=3, arms=["uniform", "per-task"],
        index_arm=False, dtype="float32") | kw))


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _records(run: Path) -> dict[str, bytes]:
    """Every record file of the training and evaluation stages, and the timed ones."""
    files = [run / "eval.jsonl", run / "policy_eval.jsonl", run / "routing/eval.jsonl",
             *(p for p in (run / "arms").rglob("*.jsonl") if p.name != "retrain_log.jsonl"),
             *(run / "timed").rglob("*.jsonl")]
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in files}


def _strip(run: Path) -> None:
    """What a later session rebuilds from the committed records: no checkpoints, no exports."""
    for c in list((run / "arms").rglob("checkpoint")):
        shutil.rmtree(c)
    shutil.rmtree(run / "drafters")


def _no_training(mp) -> None:
    def never(*a, **k):
        raise AssertionError("trained again")

    mp.setattr("specfair.study.arms.train_sampled", never)


@pytest.fixture(scope="module")
def finished(long_pair, tmp_path_factory):
    """A tiny run to the end (first report), its settings and its records."""
    root = tmp_path_factory.mktemp("retrain")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPECFAIR_HOME", str(root / "home"))
        write_study_sources(root / "home" / "data")
        cfg = _cfg(long_pair)
        run_study(cfg, root / "run")
    torch.set_num_threads(threads)
    return cfg, root / "run", root / "home"


@pytest.fixture
def run(finished, tmp_path, monkeypatch):
    """A copy of the finished run, to continue as a later session would."""
    cfg, out, home = finished
    monkeypatch.setenv("SPECFAIR_HOME", str(home))
    shutil.copytree(out, tmp_path / "run", ignore=shutil.ignore_patterns(".specfair.lock"))
    return cfg, tmp_path / "run"


def test_a_run_timed_to_the_end_needs_no_weights(run, monkeypatch):
    """Checkpoints and exports gone, every record there: the rerun trains nothing, loads no
    model for the timed stage, exports nothing, and leaves every record as it was."""
    cfg, out = run
    assert all((out / "arms" / c / "weights.jsonl").is_file() for c in COPIES)
    _strip(out)
    before = _records(out)
    _no_training(monkeypatch)

    def no_load(*a, **k):
        raise AssertionError("the timed stage loaded the models again")

    monkeypatch.setattr("specfair.study.timed.load_model", no_load)
    run_study(cfg, out)
    assert _records(out) == before
    assert not (out / "drafters").exists() and not list(out.rglob("retrained.json"))
    assert not list((out / "arms").rglob("checkpoint"))


def test_a_copy_whose_checkpoint_is_gone_is_trained_again_to_the_same_drafter(run,
                                                                                monkeypatch):
    """More prompts to time, checkpoints and exports gone, and the routing matrix's rows of one
    copy lost: each copy is trained again from the start once, equal to its records bit for
    bit (Δ 0 on every metric, the same weights' digest, the same loss at every step, in
    float32 on this machine); the lost rows come back the same; every other record is
    unchanged; the timed stage times on with the rebuilt exports; a further rerun trains
    nothing."""
    cfg, out = run
    _strip(out)
    before = _records(out)
    routing = (out / "routing/eval.jsonl").read_text().splitlines()
    (out / "routing/eval.jsonl").write_text("".join(
        x + "\n" for x in routing if json.loads(x)["copy"] != "code"))
    more = _cfg(_pair(cfg), n_bench=2)
    run_study(more, out)
    after = _records(out)
    for rel, data in before.items():
        if rel.startswith("timed/"):  # timed on: the old records a prefix of the new
            assert after[rel].startswith(data), rel
        elif rel != "routing/eval.jsonl":
            assert after[rel] == data, rel
    assert sorted((out / "routing/eval.jsonl").read_text().splitlines()) == sorted(routing)
    from specfair.models.hardware import cpu_name

    for c in COPIES:
        r = json.loads((out / "arms" / c / "retrained.json").read_text())
        assert r["status"] == "equal", (c, r)
        assert set(r["max_abs_diff"].values()) == {0.0} and r["same_weights"] is True
        assert r["loss"]["max_abs_diff"] == 0.0 and r["loss"]["steps"] == r["loss"]["of"] > 0
        assert r["n_compared"] == (9 if c == "uniform" else 3) and r["budget"] == 1.0
        assert r["cpu"] == r["original_cpu"] == cpu_name()
        assert r["original_cpu_from"] == "train_machines.json" and "earlier" not in r
        assert json.loads((out / "arms" / c / "checkpoint/state.json").read_text())[
            "budget"] == 1.0
        # the retraining's own log, the same steps as the records' log (timings aside)
        strip = lambda rs: [{k: v for k, v in x.items() if k != "tokens_per_s"}  # noqa: E731
                            for x in rs]
        assert strip(_lines(out / "arms" / c / "retrain_log.jsonl")) == strip(
            _lines(out / "arms" / c / "train_log.jsonl"))
    assert (out / "drafters/uniform/config.json").is_file()
    assert (out / "drafters/per-task/task_router.json").is_file()
    sd = [x for x in _lines(out / "timed/uniform/bench.jsonl") if x["mode"] == "sd"]
    assert len(sd) == 2 * len(TASKS)
    timed = json.loads((out / "timed.json").read_text())
    assert set(timed["retrained"]) == {"uniform", "per-task"}
    u = timed["retrained"]["uniform"]
    assert u["status"] == "equal" and not u["differs"]
    assert u["sd_runs"] == 6 and u["sd_runs_before"] == 3  # n_bench 1 before, 2 now
    assert "trained again" not in (out / "report.md").read_text()  # equal: unsaid
    # the checkpoints are back: nothing is trained again
    kept = {c: (out / "arms" / c / "retrained.json").read_bytes() for c in COPIES}
    _no_training(monkeypatch)
    run_study(more, out)
    assert {c: (out / "arms" / c / "retrained.json").read_bytes() for c in COPIES} == kept


def _pair(cfg: StudyConfig):
    return cfg.target, cfg.drafter


def test_a_stored_record_changed_by_hand_is_reported_as_a_difference(run):
    """A run from before the weights' digests and machines were recorded, one stored alpha
    changed by hand: the retrained copy differs from its records by that much
    (``retrained.json``, ``timed.json``, the report), the run goes on."""
    cfg, out = run
    _strip(out)
    for c in COPIES:
        (out / "arms" / c / "weights.jsonl").unlink()
        (out / "arms" / c / "train_machines.json").unlink()
    own = out / "arms/uniform/eval.jsonl"
    recs = _lines(own)
    i = next(k for k, x in enumerate(recs) if x["budget"] == 1.0 and x["task"] == "code")
    recs[i]["alpha"] += 0.05
    own.write_text("".join(json.dumps(x) + "\n" for x in recs))
    run_study(_cfg(_pair(cfg), n_bench=2), out)
    r = json.loads((out / "arms/uniform/retrained.json").read_text())
    assert r["status"] == "differs" and r["max_abs_diff"]["alpha"] == pytest.approx(0.05)
    assert r["max_abs_diff"]["greedy"] == 0.0 and r["max_abs_diff"]["ce"] == 0.0
    assert r["same_weights"] is None and r["original_cpu_from"].startswith("costs.json")
    assert r["original_cpu"] == json.loads((out / "costs.json").read_text())["cpu"]
    for t in TASKS:  # untouched: equal
        assert json.loads((out / f"arms/per-task/{t}/retrained.json").read_text())[
            "status"] == "equal"
    timed = json.loads((out / "timed.json").read_text())["retrained"]
    assert timed["uniform"]["differs"] and timed["per-task"]["status"] == "equal"
    assert timed["uniform"]["max_abs_diff"]["alpha"] == pytest.approx(0.05)
    report = (out / "report.md").read_text()
    assert "The timed drafter uniform was trained again from the start" in report
    assert "differs from its records (max |Δ alpha| 0.05" in report
    assert "The timed drafter per-task" not in report


def test_an_arm_cut_short_without_its_checkpoint_is_checked_where_it_has_records(run):
    """A session ended during an arm's training (its budget-1.0 records missing) and its
    checkpoint not kept: the arm is trained again from the start, checked at budget 0.5
    against the records kept (equal), and its budget-1.0 records come back the same."""
    cfg, out = run
    adir = out / "arms/uniform"
    shutil.rmtree(adir / "checkpoint")
    whole = {p: p.read_text().splitlines() for p in (
        out / "eval.jsonl", out / "policy_eval.jsonl", adir / "eval.jsonl",
        adir / "policy_eval.jsonl")}
    for p, lines in whole.items():
        p.write_text("".join(x + "\n" for x in lines if not (
            json.loads(x).get("arm", "uniform") == "uniform" and json.loads(x)["budget"] == 1.0)))
    run_study(cfg, out)
    for p, lines in whole.items():
        assert sorted(p.read_text().splitlines()) == sorted(lines), p
    r = json.loads((adir / "retrained.json").read_text())
    assert r["status"] == "equal" and r["budget"] == 0.5 and r["same_weights"] is True
    assert r["loss"] is None and "1.0 missing" in r["why"]
    assert not (adir / "retrain_log.jsonl").exists()


def test_training_is_deterministic_and_independent_of_the_thread_count(tiny_pair):
    """The same seed trains the same weights bit for bit, with one thread or two (what a copy
    trained again relies on; another CPU kind may still differ: retrained.json says so)."""
    from transformers import AutoModelForCausalLM

    from specfair.distill.topn import (
        Signals,
        TopLayers,
        TrainState,
        make_optimizer,
        train_sampled,
    )
    from specfair.distill.weighting import TaskSampler
    from specfair.study.retrained import digest

    drafter = AutoModelForCausalLM.from_pretrained(str(tiny_pair[1]), dtype=torch.float32)
    g, n = torch.Generator().manual_seed(1), drafter.config.hidden_size
    pool = [Signals(torch.randn(20, n, generator=g).bfloat16(),
                    torch.randint(0, 200, (14, 8), generator=g).int(),
                    torch.log_softmax(torch.randn(14, 8, generator=g), -1), 6, None)
            for _ in range(9)]
    head = drafter.get_output_embeddings().weight.detach()

    def train(threads: int, seed: int, bf16: bool) -> str:
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            torch.manual_seed(seed)
            top = TopLayers(drafter, 1)
            train_sampled(top, head, make_optimizer(top, 1e-2), TrainState(), pool,
                          TaskSampler(["a", "b", "c"] * 3, "uniform", seed=seed), 400,
                          batch_size=2, lr=1e-2, warmup=2, kind="fkl", bf16=bf16)
            return digest(top)
        finally:
            torch.set_num_threads(old)

    for bf16 in (False, True):
        first = train(1, 0, bf16)
        assert train(1, 0, bf16) == first == train(2, 0, bf16), bf16
        assert train(1, 1, bf16) != first  # another seed draws other batches

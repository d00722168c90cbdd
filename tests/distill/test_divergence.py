"""Training stops at its first non-finite loss, gradient norm or weight, with one error naming
the step, keeps the last good checkpoint, and never writes a drafter with non-finite weights
(the second line of defence behind the config's own checks: these settings pass them)."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from distill_helpers import load
from safetensors.torch import load_file

from specfair.distill import student as student_mod
from specfair.distill import topn
from specfair.distill.cached import train_cached
from specfair.distill.checkpoint import latest_checkpoint
from specfair.distill.config import DistillConfig
from specfair.distill.data import heldout_split
from specfair.distill.guard import check_step
from specfair.distill.trainer import train
from specfair.drafters.export import export_drafter
from specfair.drafters.router import TaskRoutedDrafter
from specfair.errors import SpecfairError


def cfg(**kw):
    base = dict(steps=6, batch_size=2, reestimate_every=10, checkpoint_every=1,
                heldout_per_task=1, progress=False, lora_rank=4, keep_checkpoints=10)
    return DistillConfig(**{**base, **kw})


def nan_from_call(monkeypatch, owner, name: str, first_bad: int) -> None:
    """``owner.name`` returns NaN times its result from call ``first_bad`` (1-based) on."""
    orig, calls = getattr(owner, name), [0]

    def patched(*a, **kw):
        calls[0] += 1
        out = orig(*a, **kw)
        return out * float("nan") if calls[0] >= first_bad else out

    monkeypatch.setattr(owner, name, patched)


def finite_checkpoints(out) -> list[str]:
    names = []
    for c in sorted((out / "checkpoints").glob("step-*")):
        w = load_file(str(c / "trainable.safetensors"))
        assert all(bool(torch.isfinite(t).all()) for t in w.values()), c
        names.append(c.name)
    return names


def test_a_nan_loss_stops_at_its_step_and_keeps_the_checkpoint_before(
        tiny_pair, tok, examples, tmp_path, monkeypatch):
    tr, ho = heldout_split(examples, 1)
    out = tmp_path / "run"
    nan_from_call(monkeypatch, student_mod.StudentLoss, "forward", 3)
    with pytest.raises(SpecfairError) as e:
        train(cfg(), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, out)
    msg = str(e.value)
    assert msg.startswith("training diverged at step 3: loss is nan (lr=")
    assert f"kept the last good checkpoint at {out / 'checkpoints' / 'step-000002'}" in msg
    assert finite_checkpoints(out) == ["step-000001", "step-000002"]
    assert not (out / "distill_summary.json").exists()


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_a_huge_learning_rate_diverges_with_one_error_and_finite_checkpoints(
        tiny_pair, tok, examples, tmp_path, max_grad_norm):
    """lr = 1e30 is finite (the config accepts it); the weights blow up within a few steps."""
    tr, ho = heldout_split(examples, 1)
    out = tmp_path / "run"
    with pytest.raises(SpecfairError, match=r"training diverged at step \d+: .*lr=") as e:
        train(cfg(lr=1e30, max_grad_norm=max_grad_norm), load(tiny_pair[0]),
              load(tiny_pair[1]), tok, tr, ho, out)
    step = int(str(e.value).split("step ")[1].split(":")[0])
    kept = latest_checkpoint(out)
    assert finite_checkpoints(out) == [f"step-{s:06d}" for s in range(1, step)]
    assert (str(kept) in str(e.value)) if kept else "no checkpoint" in str(e.value)
    assert not (out / "distill_summary.json").exists()


def test_an_infinite_learning_rate_is_caught_after_the_first_update(
        tiny_pair, tok, examples, tmp_path, monkeypatch):
    """Whatever the config lets through, an update that leaves a non-finite weight stops the
    run before that step's checkpoint is written."""
    tr, ho = heldout_split(examples, 1)
    out = tmp_path / "run"
    c = cfg(warmup_steps=0)
    monkeypatch.setattr(DistillConfig, "learning_rate", property(lambda self: float("inf")))
    with pytest.raises(SpecfairError, match=r"diverged at step 1: .*not finite after the update"
                       r".*no checkpoint of this run"):
        train(c, load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, out)
    assert finite_checkpoints(out) == []


def test_topn_training_stops_at_a_nan_loss_and_writes_no_summary(
        tiny_pair, examples, tmp_path, monkeypatch):
    tr, ho = heldout_split(examples, 1)
    out = tmp_path / "run"
    nan_from_call(monkeypatch, topn, "batch_loss", 3)  # step 3
    c = DistillConfig(method="topn", top_layers=1, topk=8, steps=6, batch_size=2, lr=3e-3,
                      reestimate_every=3, heldout_per_task=1, progress=False)
    with pytest.raises(SpecfairError, match=r"diverged at step 3: loss is nan .*no checkpoint"):
        train_cached(c, load(tiny_pair[0]), load(tiny_pair[1]), tr, ho, out, names=("t", "d"),
                     store_root=tmp_path / "signals", bf16=False)
    assert not (out / "distill_summary.json").exists()
    steps = [json.loads(x).get("step") for x in (out / "train_log.jsonl").read_text().splitlines()
             if '"loss"' in x]
    assert steps == [1, 2]


def test_train_until_names_the_callers_checkpoint(tiny_pair, tmp_path):
    drafter = load(tiny_pair[1])
    top = topn.TopLayers(drafter, 1)
    head = drafter.get_output_embeddings().weight.detach()
    sig = topn.Signals(torch.randn(6, drafter.config.hidden_size),
                       torch.zeros(3, 4, dtype=torch.long), torch.full((3, 4), float("nan")), 3)
    ck = re.escape(str(tmp_path / "ck"))
    with pytest.raises(SpecfairError, match=f"diverged at step 1: .*{ck}"):
        topn.train_until(top, head, topn.make_optimizer(top, 1e-3), topn.TrainState(),
                         lambda: [sig], 100, lr=1e-3, warmup=0, kind="fkl", bf16=False,
                         checkpoint=tmp_path / "ck")


def test_check_step_passes_finite_numbers_only():
    check_step(1, 0.5, 2.0, 1e-3)
    for loss, norm, what in [(float("nan"), 1.0, "loss is nan"), (float("inf"), 1.0, "loss is inf"),
                             (1.0, float("inf"), "gradient norm is inf")]:
        with pytest.raises(SpecfairError, match=f"step 7: {what} .lr=0.001"):
            check_step(7, loss, norm, 1e-3)


def test_no_export_of_non_finite_weights(tiny_pair, tok, tmp_path):
    model = load(tiny_pair[1])
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(SpecfairError, match=r"not finite.*up_proj.*nothing was written"):
        export_drafter(model, tok, tmp_path / "drafter")
    router = TaskRoutedDrafter(None, base=load(tiny_pair[1]), models={"code": model})
    with pytest.raises(SpecfairError, match="not finite"):
        export_drafter(router, tok, tmp_path / "drafter", tasks=["code"])
    assert list(tmp_path.iterdir()) == []
    export_drafter(copy.deepcopy(load(tiny_pair[1])), tok, tmp_path / "drafter")  # finite: ok
    assert (tmp_path / "drafter" / "model.safetensors").is_file()

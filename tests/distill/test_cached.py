"""``method = "topn"``: distillation of the drafter's top layers on cached target signals."""

from __future__ import annotations

import json

import pytest
import torch
from distill_helpers import load

from specfair.distill.cached import train_cached
from specfair.distill.config import DistillConfig
from specfair.distill.data import heldout_split
from specfair.drafters.export import export_drafter
from specfair.drafters.load import load_drafter
from specfair.drafters.router import TaskRoutedDrafter
from specfair.errors import SpecfairError
from specfair.measure.io import read_jsonl


def cfg(**kw):
    base = dict(method="topn", top_layers=1, topk=8, steps=6, batch_size=2, lr=3e-3,
                reestimate_every=3, heldout_per_task=1, progress=False)
    return DistillConfig(**(base | kw))


def run(tiny_pair, examples, out, **kw):
    tr, ho = heldout_split(examples, 1)
    drafter = load(tiny_pair[1])
    res = train_cached(cfg(**kw), load(tiny_pair[0]), drafter, tr, ho, out,
                       names=("t", "d"), store_root=out.parent / "signals", bf16=False)
    return res, drafter, tr


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits


def test_topn_trains_only_the_top_layers_and_logs_like_the_trainer(tiny_pair, examples,
                                                                   tmp_path):
    res, drafter, tr = run(tiny_pair, examples, tmp_path / "a", weighting="disparity")
    before = {n: p.clone() for n, p in drafter.named_parameters()}
    s = dict(res.student.named_parameters())
    changed = {n for n in s if not torch.equal(s[n], before[n])}
    last = drafter.config.num_hidden_layers - 1
    assert changed and all(n.startswith((f"model.layers.{last}.", "model.norm.")) for n in changed)
    log = read_jsonl(tmp_path / "a" / "train_log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 7))
    est = [r for r in log if r.get("event") == "estimate"]
    assert [r["step"] for r in est] == [0, 3, 6] and set(est[0]["alpha"]) == {e.task for e in tr}
    summary = json.loads((tmp_path / "a" / "distill_summary.json").read_text())
    assert summary["method"] == "topn" and summary["alpha_after"] == res.alpha_after
    # a second variant reuses the signal store: nothing is recomputed
    idx = (tmp_path / "signals" / "target-top8" / "index.jsonl").read_text()
    run(tiny_pair, examples, tmp_path / "b", weighting="uniform")
    assert (tmp_path / "signals" / "target-top8" / "index.jsonl").read_text() == idx


def test_topn_learns_its_training_text(tiny_pair, examples, tmp_path):
    """Enough steps at a high learning rate raise the alpha of the training text itself (the
    overfit check of this path: a pipeline that cannot overfit cannot help)."""
    tr, _ = heldout_split(examples, 1)
    res, _, _ = run(tiny_pair, examples, tmp_path / "a", weighting="uniform", steps=40,
                    reestimate_every=40)
    from specfair.distill.cached import _Trainer

    trainer = _Trainer(cfg(), load(tiny_pair[0]), load(tiny_pair[1]), tr, tr, ("t", "d"),
                       tmp_path / "signals", False)
    from specfair.distill.topn import TopLayers

    base = trainer.alphas(TopLayers(load(tiny_pair[1]), 1), sorted({e.task for e in tr}))
    trained = TopLayers(res.student, 1)
    after = trainer.alphas(trained, sorted(base))
    miss = lambda d: sum(1 - d[t]["alpha"] for t in base)  # noqa: E731
    assert miss(after) < 0.5 * miss(base), (base, after)  # the tiny pair starts near 0.98


def test_per_task_copies_share_the_lower_layers_and_round_trip(tiny_pair, examples, tmp_path):
    res, drafter, tr = run(tiny_pair, examples, tmp_path / "a", weighting="per-task")
    router = res.student
    assert isinstance(router, TaskRoutedDrafter) and set(router.models) == {e.task for e in tr}
    a, b = list(router.models.values())[:2]
    # the tiny drafter has one layer: what is shared is the embeddings (and the tied head)
    assert a.model.embed_tokens is b.model.embed_tokens is drafter.model.embed_tokens
    assert a.model.layers[-1] is not b.model.layers[-1]
    out = export_drafter(router, None, tmp_path / "drafter", tasks=list(router.models),
                         meta={"top_layers": 1})
    spec = json.loads((out / "router.json").read_text())
    assert spec["mode"] == "top-layers"
    again = load_drafter(out)
    ids = list(tr[0].prompt_ids) + list(tr[0].response_ids)
    for t, m in router.models.items():
        assert torch.allclose(logits(m, ids), logits(again.models[t], ids), atol=1e-5)
        assert torch.allclose(logits(m, ids), logits(again.for_task(t), ids), atol=1e-5)
    assert again.models[t].model.embed_tokens is again.base.model.embed_tokens


def test_topn_settings_are_checked():
    with pytest.raises(SpecfairError, match="topn"):
        cfg(loss="rkl")
    with pytest.raises(SpecfairError, match="per-task"):
        DistillConfig(method="full", weighting="per-task")
    with pytest.raises(SpecfairError, match="top_layers"):
        cfg(top_layers=0)


def test_distill_command_with_topn_exports_a_loadable_drafter(tiny_pair, suite, tmp_path):
    from specfair.distill.commands import distill_command

    out = distill_command(
        tmp_path, suite=suite, target=str(tiny_pair[0]), drafter=str(tiny_pair[1]),
        device="cpu", method="topn", top_layers=1, topk=8, steps=2, batch_size=2, lr=1e-3,
        heldout_per_task=1, response_max_new_tokens=4, progress=False, weighting="per-task")
    assert json.loads((out / "router.json").read_text())["mode"] == "top-layers"
    assert isinstance(load_drafter(out), TaskRoutedDrafter)
    assert (tmp_path / "signals" / "target-top8" / "meta.json").is_file()
    assert json.loads((tmp_path / "distill_summary.json").read_text())["method"] == "topn"

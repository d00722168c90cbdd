"""Training loop, resume, export/load round trips, per-task routing, train-split-only data."""

from __future__ import annotations

import json

import pytest
import torch
from distill_helpers import load

from specfair.distill.config import DistillConfig
from specfair.distill.data import assert_train_only, check_examples, heldout_split
from specfair.distill.trainer import train
from specfair.drafters.export import export_drafter
from specfair.drafters.load import load_drafter
from specfair.drafters.router import TaskRoutedDrafter
from specfair.errors import SpecfairError

X = torch.tensor([[257, 84, 82, 68, 81, 198, 66, 78, 258, 198, 257, 64, 82]])


def cfg(**kw):
    base = dict(steps=6, batch_size=2, reestimate_every=3, checkpoint_every=3,
                heldout_per_task=1, progress=False, lora_rank=4)
    base.update(kw)
    return DistillConfig(**base)


def trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n} or {
        n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "kw",
    [
        dict(weighting="disparity", method="lora", loss="fkl"),
        dict(weighting="uniform", method="full", loss="jsd", grad_accum=2, on_policy_frac=0.5),
    ],
    ids=["lora-disparity", "full-onpolicy-accum"],
)
def test_resume_equals_uninterrupted(tiny_pair, tok, examples, tmp_path, kw):
    tr, ho = heldout_split(examples, 1)
    c = cfg(**kw)
    t, d = load(tiny_pair[0]), load(tiny_pair[1])
    straight = train(c, t, d, tok, tr, ho, tmp_path / "a")
    # interrupted after step 4 (a crash after the step-3 checkpoint: step 4 is logged but not
    # checkpointed), then resumed with fresh models: step 4 is redone and logged once
    t, d = load(tiny_pair[0]), load(tiny_pair[1])
    part = train(c, t, d, tok, tr, ho, tmp_path / "b", stop_after=4)
    assert part.steps == 4 and not (tmp_path / "b" / "distill_summary.json").exists()
    t, d = load(tiny_pair[0]), load(tiny_pair[1])
    resumed = train(c, t, d, tok, tr, ho, tmp_path / "b", resume=True)
    assert resumed.steps == 6
    a, b = trainable(straight.student), trainable(resumed.student)
    assert a.keys() == b.keys()
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-6, rtol=0), n
    assert any(not torch.equal(a[n], p) for n, p in trainable(load(tiny_pair[1])).items()
               if n in a) or kw["method"] == "lora"
    # logs: every step once, same losses
    def losses(p):
        return [r["loss"] for r in map(json.loads, open(p / "train_log.jsonl")) if "loss" in r]
    assert losses(tmp_path / "a") == pytest.approx(losses(tmp_path / "b"), abs=1e-6)
    steps_b = [json.loads(x)["step"] for x in open(tmp_path / "b" / "train_log.jsonl")
               if "loss" in x]
    assert steps_b == [1, 2, 3, 4, 5, 6]
    rec = [json.loads(x) for x in open(tmp_path / "a" / "train_log.jsonl")]
    steps = [r for r in rec if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert {"lr", "tokens_per_s", "weights"} <= steps[0].keys()
    assert any("alpha" in r for r in rec)
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-000003", "step-000006"]
    summ = json.loads((tmp_path / "a" / "distill_summary.json").read_text())
    assert set(summ["alpha_after"]) == {e.task for e in ho}


def test_resume_refuses_changed_config(tiny_pair, tok, examples, tmp_path):
    tr, ho = heldout_split(examples, 1)
    train(cfg(steps=2), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, tmp_path)
    with pytest.raises(SpecfairError, match="lora_rank"):
        train(cfg(steps=2, lora_rank=8), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho,
              tmp_path, resume=True)


def test_lora_export_loads_back_with_identical_logits(tiny_pair, tok, examples, tmp_path):
    tr, ho = heldout_split(examples, 1)
    res = train(cfg(steps=2, lr=1e-2), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho,
                tmp_path / "run")
    out = export_drafter(res.student, tok, tmp_path / "export")
    for f in ("config.json", "generation_config.json", "model.safetensors",
              "tokenizer.json", "tokenizer_config.json"):
        assert (out / f).is_file(), f
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    loaded = load_drafter(out)
    with torch.no_grad():
        want = res.student(input_ids=X).logits
        base = load(tiny_pair[1])(input_ids=X).logits
        assert torch.allclose(loaded(input_ids=X).logits, want, atol=1e-5)
        assert torch.allclose(plain(input_ids=X).logits, want, atol=1e-5)
        assert not torch.allclose(base, want, atol=1e-4)  # training changed the drafter


def test_cheap_drafter_trains_and_exports(tiny_pair, tok, examples, tmp_path):
    """A 1-layer drafter cut from the 2-layer target, fully fine-tuned, exports as 1 layer."""
    tr, ho = heldout_split(examples, 1)
    c = cfg(steps=2, method="full", cheap_layers="first:1")
    res = train(c, load(tiny_pair[0]), load(tiny_pair[0]), tok, tr, ho, tmp_path / "run")
    out = export_drafter(res.student, tok, tmp_path / "export")
    loaded = load_drafter(out)
    assert loaded.config.num_hidden_layers == 1
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=X).logits, res.student(input_ids=X).logits,
                              atol=1e-5)


@pytest.mark.parametrize("merge", [False, True], ids=["adapters", "merged"])
def test_per_task_router_export_and_decoding(tiny_pair, tok, examples, tmp_path, merge):
    tr, ho = heldout_split(examples, 1)
    c = cfg(steps=4, weighting="per-task", lr=1e-2, reestimate_every=2)
    res = train(c, load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, tmp_path / "run")
    tasks = sorted({e.task for e in tr})
    assert isinstance(res.router, TaskRoutedDrafter) and res.router.tasks == tasks
    with torch.no_grad():
        want = {t: res.router.for_task(t)(input_ids=X).logits for t in tasks}
        base_want = res.router.for_task("unknown-task")(input_ids=X).logits
    assert torch.allclose(base_want, load(tiny_pair[1])(input_ids=X).logits, atol=1e-5)
    # each adapter trained only on its task's batches: all different from the base and each other
    for t in tasks:
        assert not torch.allclose(want[t], base_want, atol=1e-4), t
    assert not torch.allclose(want[tasks[0]], want[tasks[1]], atol=1e-4)

    out = export_drafter(res.student, tok, tmp_path / "export", tasks=tasks, merge_per_task=merge)
    spec = json.loads((out / "router.json").read_text())
    assert spec["mode"] == ("merged" if merge else "adapter") and set(spec["tasks"]) == set(tasks)
    router = load_drafter(out)
    assert isinstance(router, TaskRoutedDrafter)
    with torch.no_grad():
        for t in tasks:
            assert torch.allclose(router.for_task(t)(input_ids=X).logits, want[t], atol=1e-5), t
        assert torch.allclose(router.for_task(None)(input_ids=X).logits, base_want, atol=1e-5)
        assert torch.allclose(router.for_task("nope")(input_ids=X).logits, base_want, atol=1e-5)

    # usable as the drafter of speculative decoding (lossless: the target's greedy output)
    from specfair.decoding import autoregressive_generate, speculative_generate

    target = load(tiny_pair[0])
    ids = list(tr[0].prompt_ids)
    ar = autoregressive_generate(target, ids, max_new_tokens=8)
    for label in (tasks[0], "unknown"):
        sd = speculative_generate(target, router.for_task(label), ids, max_new_tokens=8, gamma=3)
        assert sd.tokens == ar.tokens


def test_training_data_comes_from_train_split_only(tiny_pair, tok, suite, tmp_path):
    from specfair.distill.commands import build_examples
    from specfair.tasks import split_of

    c = cfg(data_source="both", response_max_new_tokens=4)
    tr, ho = build_examples(c, suite, load(tiny_pair[0]), load(tiny_pair[1]), tok, tmp_path)
    train_ids = {p.id for p in suite.prompts("train")}
    assert tr and ho
    assert {e.source for e in tr + ho} == {"target", "reference"}
    for e in tr + ho:
        assert e.base_id in train_ids
        assert split_of(suite.get(e.base_id)) == "train"
    assert not {e.base_id for e in tr} & {e.base_id for e in ho}
    cached = [json.loads(x)["id"] for x in open(tmp_path / "responses.jsonl")]
    assert set(cached) <= train_ids
    # the guards
    test_p = suite.prompts("test")
    with pytest.raises(SpecfairError):
        assert_train_only(suite.prompts("train") + test_p[:1], test_p)
    with pytest.raises(SpecfairError):
        check_examples(tr, [p for p in suite.prompts("train") if p.id != tr[0].base_id])


def test_distill_command_end_to_end(tiny_pair, suite, tmp_path):
    from specfair.distill.commands import distill_command

    out = distill_command(
        tmp_path, suite=suite, target=str(tiny_pair[0]), drafter=str(tiny_pair[1]),
        device="cpu", steps=2, batch_size=2, heldout_per_task=1, response_max_new_tokens=4,
        progress=False, lora_rank=4, weighting="balanced", loss="tvd",
    )
    assert out == tmp_path / "drafter" and (out / "model.safetensors").is_file()
    assert load_drafter(out).config.vocab_size == 272
    for f in ("responses.jsonl", "train_log.jsonl", "distill_summary.json",
              "distill_config.json"):
        assert (tmp_path / f).is_file(), f
    with pytest.raises(SpecfairError):
        distill_command(tmp_path / "new", suite=suite, target=str(tiny_pair[0]),
                        drafter=str(tiny_pair[1]), resume=True)
    with pytest.raises(SpecfairError):
        distill_command(tmp_path, suite=suite, loss="nope")


def test_packed_target_and_shared_teacher_states(tiny_pair, tok, examples, tmp_path):
    """A target with pre-packed CPU kernels teaches like the plain one, and a second run on the
    same target reuses its remembered hidden states (no target forward) with the same result."""
    from specfair.measure.signals import forget_target_states, target_states
    from specfair.models.cpu_kernels import pack_linears, packed_linear_available

    if not packed_linear_available():
        pytest.skip("PyTorch without oneDNN")
    tr, ho = heldout_split(examples, 1)
    c = cfg(weighting="balanced")
    plain = train(c, load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, tmp_path / "a")
    t = load(tiny_pair[0])
    pack_linears(t)
    forget_target_states()
    packed = train(c, t, load(tiny_pair[1]), tok, tr, ho, tmp_path / "b")
    assert 0 < len(target_states(t)) <= len({e.id for e in tr + ho})
    calls = []
    t.get_decoder().register_forward_hook(lambda *a: calls.append(1))
    again = train(c, t, load(tiny_pair[1]), tok, tr, ho, tmp_path / "c")
    assert calls == []
    a, b, d = (trainable(r.student) for r in (plain, packed, again))
    for n in a:
        assert torch.allclose(a[n], b[n], atol=1e-4), n
        assert torch.equal(b[n], d[n]), n


def test_reused_responses_are_not_regenerated(tiny_pair, tok, suite, tmp_path, monkeypatch):
    """A responses cache given as responses_path (e.g. an experiment's shared data) is used as
    is when its settings match, and ignored (regenerated) when they do not."""
    from specfair.distill.commands import build_examples
    from specfair.measure import responses as responses_mod

    t, d = load(tiny_pair[0]), load(tiny_pair[1])
    first, _ = build_examples(cfg(response_max_new_tokens=4), suite, t, d, tok, tmp_path / "a")
    shared = str(tmp_path / "a" / "responses.jsonl")

    def no_generation(*a, **k):
        raise AssertionError("regenerated a cached response")

    monkeypatch.setattr(responses_mod, "generate_response", no_generation)
    c = cfg(response_max_new_tokens=4, responses_path=shared)
    again, _ = build_examples(c, suite, t, d, tok, tmp_path / "b")
    assert sorted(e.id for e in again) == sorted(e.id for e in first)
    with pytest.raises(AssertionError, match="regenerated"):  # other settings: not reused
        build_examples(cfg(response_max_new_tokens=5, responses_path=shared), suite, t, d, tok,
                       tmp_path / "c")


def test_select_train_prompts_per_task_caps(suite):
    from collections import Counter

    from specfair.distill.commands import select_train_prompts

    prompts = suite.prompts("train")
    tasks = sorted({p.task for p in prompts})
    full = Counter(p.task for p in prompts)
    assert select_train_prompts(DistillConfig(), prompts) == list(prompts)
    assert select_train_prompts(DistillConfig(max_prompts_per_task=0), prompts) == list(prompts)
    c = DistillConfig(max_prompts_per_task=2, prompts_per_task={tasks[0]: 1, tasks[1]: 0})
    got = select_train_prompts(c, prompts)
    n = Counter(p.task for p in got)
    assert n[tasks[0]] == 1 and n[tasks[1]] == 0
    assert all(n[t] == min(2, full[t]) for t in tasks[2:])
    assert got == [p for p in prompts if p in got]  # suite order kept
    with pytest.raises(SpecfairError, match="prompts_per_task"):
        DistillConfig(prompts_per_task={"code": -1})


def test_failed_export_leaves_previous_export_and_no_partial_files(tiny_pair, tok, tmp_path,
                                                                   monkeypatch):
    import specfair.drafters.export as export

    model = load(tiny_pair[1])
    out = export_drafter(model, tok, tmp_path / "drafter")
    before = (out / "model.safetensors").read_bytes()
    real = export._save_hf

    def disk_full(model, tokenizer, path, dtype, meta):
        real(model, tokenizer, path, dtype, meta)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_save_hf", disk_full)
    with pytest.raises(OSError):
        export_drafter(model, tok, tmp_path / "drafter")
    with pytest.raises(OSError):
        export_drafter(model, tok, tmp_path / "fresh")
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drafter"]  # no temp, no "fresh"
    with pytest.raises(SpecfairError, match="not a drafter export"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "notes.txt").write_text("mine")
        monkeypatch.setattr(export, "_save_hf", real)
        export_drafter(model, tok, tmp_path / "other")


def test_resuming_a_finished_run_says_so(tiny_pair, tok, examples, tmp_path, capsys):
    tr, ho = heldout_split(examples, 1)
    train(cfg(steps=2), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, tmp_path)
    capsys.readouterr()
    res = train(cfg(steps=2, progress=True), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr,
                ho, tmp_path, resume=True)
    out = capsys.readouterr()
    assert res.steps == 2
    assert "already trained (2 of 2 steps)" in out.out
    assert "nan" not in out.out + out.err and "tok/s" not in out.out + out.err


def _drawn_tasks(tr, tasks, seed, n_micro):
    """The tasks the trainer's sampler draws in the first step (one per micro-batch)."""
    from specfair.distill.weighting import TaskSampler

    s = TaskSampler([e.task for e in tr], "per-task", seed=seed, tasks=tasks)
    return {tr[s.sample(2)[0]].task for _ in range(n_micro)}


def test_per_task_grad_accum_trains_every_drawn_adapter(tiny_pair, tok, examples, tmp_path):
    """Per-task adapters with grad_accum > 1: each micro-batch draws its own task, and every
    adapter drawn in a step gets its micro-batch's gradient (none is dropped)."""
    from specfair.drafters.router import adapter_name

    tr, ho = heldout_split(examples, 1)
    tasks = sorted({e.task for e in tr})
    seed = next(s for s in range(50) if len(_drawn_tasks(tr, tasks, s, 2)) == 2)
    c = cfg(steps=1, warmup_steps=0, weighting="per-task", grad_accum=2, lr=1e-2, seed=seed,
            checkpoint_every=1, reestimate_every=1)
    res = train(c, load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, tmp_path / "run")
    moved = {t for t in tasks  # lora_B starts at zero and moves only with a gradient
             if any(f".{adapter_name(t)}." in n and "lora_B" in n and bool(p.abs().sum() > 0)
                    for n, p in res.student.named_parameters())}
    assert moved == _drawn_tasks(tr, tasks, seed, 2)

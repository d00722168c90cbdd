"""Checkpoints and exported drafters hold no pickle, and a pickle planted in a run directory
is never run (opening someone else's run directory must not run their code)."""

from __future__ import annotations

import shutil

import pytest
import torch
from distill_helpers import load

from specfair.distill.checkpoint import decode, encode, latest_checkpoint
from specfair.distill.config import DistillConfig
from specfair.distill.data import heldout_split
from specfair.distill.trainer import train
from specfair.drafters.export import export_drafter
from specfair.drafters.load import load_drafter
from specfair.errors import SpecfairError


class Payload:
    """Unpickling this writes ``marker``: the proof that a pickle was run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def plant(path, marker) -> None:
    torch.save(Payload(marker), path)


def cfg(**kw):
    base = dict(steps=3, batch_size=2, reestimate_every=10, checkpoint_every=1,
                heldout_per_task=1, progress=False, lora_rank=4)
    return DistillConfig(**{**base, **kw})


def test_planted_pickles_in_a_checkpoint_are_not_run(tiny_pair, tok, examples, tmp_path):
    tr, ho = heldout_split(examples, 1)
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    train(cfg(), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, out, stop_after=2)
    ckpt = latest_checkpoint(out)
    assert sorted({p.suffix for p in ckpt.iterdir()}) == [".json", ".safetensors"]
    for f in ckpt.iterdir():  # no pickle (nor torch.save zip) in any checkpoint file
        head = f.read_bytes()[:2]
        assert head not in (b"\x80\x02", b"\x80\x04", b"\x80\x05", b"PK"), f
    # the files older versions read with torch.load(weights_only=False)
    for name in ("optimizer.pt", "scheduler.pt", "rng.rank0.pt", "trainable.pt"):
        plant(ckpt / name, marker)
    res = train(cfg(), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, out, resume=True)
    assert res.steps == 3 and not marker.exists()


def test_old_pickle_checkpoint_is_refused_unread(tiny_pair, tok, examples, tmp_path):
    tr, ho = heldout_split(examples, 1)
    out, marker = tmp_path / "run", tmp_path / "PWNED"
    train(cfg(), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, out, stop_after=1)
    ckpt = latest_checkpoint(out)
    for f in ckpt.iterdir():
        if f.name != "state.json":
            f.unlink()
    (ckpt / "state.json").write_text('{"step": 1, "sampler": {}}')  # the old layout
    for name in ("optimizer.pt", "scheduler.pt", "rng.rank0.pt", "trainable.pt"):
        plant(ckpt / name, marker)
    with pytest.raises(SpecfairError, match="old format"):
        train(cfg(), load(tiny_pair[0]), load(tiny_pair[1]), tok, tr, ho, out, resume=True)
    assert not marker.exists()


def test_load_drafter_reads_safetensors_only(tiny_pair, tok, tmp_path):
    marker = tmp_path / "PWNED"
    out = export_drafter(load(tiny_pair[1]), tok, tmp_path / "export")
    (out / "model.safetensors").unlink()
    plant(out / "pytorch_model.bin", marker)
    with pytest.raises(SpecfairError, match="safetensors"):
        load_drafter(out)
    assert not marker.exists()


def test_load_drafter_refuses_pickled_adapters(tiny_pair, tok, examples, tmp_path):
    tr, ho = heldout_split(examples, 1)
    marker = tmp_path / "PWNED"
    res = train(cfg(steps=1, weighting="per-task"), load(tiny_pair[0]), load(tiny_pair[1]), tok,
                tr, ho, tmp_path / "run")
    tasks = sorted({e.task for e in tr})
    out = export_drafter(res.student, tok, tmp_path / "export", tasks=tasks)
    adapter = next((out / "tasks").iterdir())
    (adapter / "adapter_model.safetensors").unlink()
    plant(adapter / "adapter_model.bin", marker)
    with pytest.raises(SpecfairError, match="safetensors"):
        load_drafter(out)
    assert not marker.exists()
    shutil.rmtree(out)


@pytest.mark.parametrize("router, why", [
    ('{"format": "specfair-task-routed/1", ', "not valid JSON"),
    ('["tasks"]', "not a per-task drafter index"),
    ('{"format": "specfair-task-routed/1", "mode": "merged", "tasks": {"code": 3}}',
     "tasks.code = 3 should be a relative path"),
    ('{"format": "specfair-task-routed/1", "mode": "merged", "tasks": {"code": "/etc"}}',
     "should be a relative path"),
    ('{"format": "specfair-task-routed/1", "mode": "adapter", "tasks": {"code": "../../x"}}',
     "leads outside the export directory"),
    ('{"format": "specfair-task-routed/1", "mode": "merged", "base": "base/../..", "tasks": {}}',
     "base = 'base/../..' leads outside"),
    ('{"format": "specfair-task-routed/1", "mode": "top-layers", "tasks": {}, "top_layers": '
     '"2"}', "top_layers = '2' should be a whole number"),
])
def test_a_corrupt_or_escaping_router_json_is_one_error_naming_it(tmp_path, router, why):
    (tmp_path / "router.json").write_text(router)
    with pytest.raises(SpecfairError, match="router.json: ") as e:
        load_drafter(tmp_path)
    assert str(tmp_path / "router.json") in str(e.value) and why in str(e.value)


def test_encode_decode_round_trip_keeps_types():
    import numpy as np

    state = {"state": {0: {"step": torch.tensor(3.0), "m": torch.ones(2, 3)}},
             "groups": [{"betas": (0.9, 0.99), "lr": 1e-3, "params": [0], "x": None}],
             "np": ("MT19937", np.arange(4, dtype=np.uint32), 2, 0, 0.0)}
    tensors: dict = {}
    back = decode(encode(state, tensors), tensors)
    assert list(back["state"]) == [0] and torch.equal(back["state"][0]["m"], torch.ones(2, 3))
    assert back["groups"][0]["betas"] == (0.9, 0.99)
    assert back["np"][1].dtype == np.uint32 and back["np"][0] == "MT19937"
    with pytest.raises(TypeError):
        encode({"f": object()}, {})

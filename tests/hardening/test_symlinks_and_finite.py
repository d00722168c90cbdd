"""Run directories that cannot be turned against the user, and no non-finite or incomplete
model ever used (issue 31, causes 2 and 3).

* Symlinks: nothing in a run or output directory is written through a symlink. A whole-file
  write replaces the link itself (its target keeps its bytes); an append, a tail repair and the
  lock refuse it with one error.
* Weights: a NaN/inf, missing or mis-shaped tensor in a target, a drafter, an exported drafter,
  a resume checkpoint, an fp32 cache copy or a LoRA adapter is one ``error:`` line naming the
  file, exit status 2, and no record written; nothing non-finite is written (signals,
  checkpoints, evaluation records).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from specfair.errors import SpecfairError

pytestmark = pytest.mark.usefixtures("one_thread")

VICTIM = b"the user's precious file\n"
PAIR = ["--dtype", "float32", "--device", "cpu"]


def _victim(tmp_path) -> Path:
    v = tmp_path / "elsewhere" / "precious.txt"
    v.parent.mkdir(parents=True, exist_ok=True)
    v.write_bytes(VICTIM)
    return v


def _one_error(cli, *argv) -> str:
    """Run the CLI; it must end with exactly one ``error:`` line, exit 2, no traceback."""
    code, out, err = cli(*argv)
    assert "Traceback" not in out + err, err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert code == 2 and len(lines) == 1, (code, err)
    return lines[0]


def _copy_model(src: Path, dst: Path, change) -> Path:
    """A copy of the model directory ``src`` whose ``model.safetensors`` is ``change(tensors)``."""
    shutil.copytree(src, dst)
    tensors = load_file(dst / "model.safetensors")
    change(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


LAYER = "model.layers.0.self_attn.q_proj.weight"


def _nan(t):
    t[LAYER][0, 0] = float("nan")


def _inf(t):
    t[LAYER][1, 2] = float("-inf")


def _missing(t):
    del t[LAYER]


def _misshaped(t):
    t[LAYER] = torch.zeros(3, 5)


BROKEN = {"nan": (_nan, "NaN or infinite"), "inf": (_inf, "NaN or infinite"),
          "missing": (_missing, "missing"), "misshaped": (_misshaped, "wrong shape")}


# ============================================================================ symlinks


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(cli, tiny_pair, tmp_path):
    from specfair.rundir import LOCK_FILE, dir_lock

    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).symlink_to(victim)
    with pytest.raises(SpecfairError, match="symlink"):
        with dir_lock(out):
            pass
    t, d = tiny_pair
    line = _one_error(cli, "bench", "--out", out, "--target", t, "--drafter", d, *PAIR,
                      "--n-per-task", "1", "--max-new-tokens", "4")
    assert LOCK_FILE in line
    assert victim.read_bytes() == VICTIM
    assert not (out / "bench.jsonl").exists()


def test_a_hard_linked_lock_file_is_refused_and_its_other_name_untouched(tmp_path):
    from specfair.rundir import LOCK_FILE, dir_lock

    victim = _victim(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    os.link(victim, out / LOCK_FILE)
    with pytest.raises(SpecfairError, match="hard link"):
        with dir_lock(out):
            pass
    assert victim.read_bytes() == VICTIM


def test_appending_to_a_symlinked_records_file_is_refused(tmp_path):
    from specfair.measure.io import append_jsonl, read_jsonl

    victim = _victim(tmp_path)
    path = tmp_path / "run" / "eval.jsonl"
    path.parent.mkdir()
    path.symlink_to(victim)
    with pytest.raises(SpecfairError, match="symlink"):
        append_jsonl(path, {"alpha": 0.5})
    assert victim.read_bytes() == VICTIM
    # a torn last line is cut off the file: never off the file a symlink points to
    victim.write_bytes(b'{"a": 1}\n{"a": 2')
    with pytest.raises(SpecfairError, match="symlink"):
        read_jsonl(path, repair=True)
    assert victim.read_bytes() == b'{"a": 1}\n{"a": 2'


def test_the_summary_and_policy_replace_a_symlink_and_leave_its_target(tmp_path):
    from test_study_report import _run_dir

    from specfair.measure.io import write_json
    from specfair.study.config import StudyConfig
    from specfair.study.summary import write_summary

    victim = _victim(tmp_path)
    run = _run_dir(tmp_path, full=True)
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(victim)
    write_summary(run, StudyConfig(tasks=["a", "b"], arms=["uniform"], budgets=[0.5, 1.0],
                                   seeds=[0, 1], prompt_fractions=[0.5, 1.0], bootstrap=20))
    assert victim.read_bytes() == VICTIM
    assert not (run / "summary.json").is_symlink()
    assert "config" in json.loads((run / "summary.json").read_text())
    (run / "policy.json").symlink_to(victim)
    write_json(run / "policy.json", {"gamma": 3})
    assert victim.read_bytes() == VICTIM and not (run / "policy.json").is_symlink()
    assert not list(run.glob(".*tmp*"))  # no temporaries left


def test_report_replaces_a_symlinked_report_md_and_refuses_a_symlinked_figures_dir(
        cli, tmp_path):
    from test_study_report import _run_dir

    victim = _victim(tmp_path)
    run = _run_dir(tmp_path, full=True)
    (run / "report.md").symlink_to(victim)
    (run / "report.html").symlink_to(victim)
    code, _, err = cli("report", run)
    assert code == 0, err
    assert victim.read_bytes() == VICTIM
    assert not (run / "report.md").is_symlink() and "greedy" in (run / "report.md").read_text()
    assert not (run / "report.html").is_symlink()
    # a figures/ that is a symlink to another directory: nothing written (or removed) there
    elsewhere = victim.parent
    (elsewhere / "speedup.png").write_bytes(VICTIM)
    shutil.rmtree(run / "figures")
    (run / "figures").symlink_to(elsewhere, target_is_directory=True)
    assert "figures" in _one_error(cli, "report", run)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt", "speedup.png"]
    assert (elsewhere / "speedup.png").read_bytes() == VICTIM


def _top(tiny_pair):
    from specfair.distill.topn import TopLayers, make_optimizer
    from specfair.models.load import load_model

    top = TopLayers(load_model(tiny_pair[1], "float32", "cpu"), 1)
    return top, make_optimizer(top, 1e-3)


def test_a_checkpoint_replaces_symlinks_without_touching_their_targets(tiny_pair, tmp_path):
    from specfair.distill.topn import TrainState, load_checkpoint, save_checkpoint

    top, opt = _top(tiny_pair)
    victim = _victim(tmp_path)
    # the checkpoint directory is a symlink to another directory
    ckpt = tmp_path / "arms" / "uniform" / "checkpoint"
    ckpt.parent.mkdir(parents=True)
    ckpt.symlink_to(victim.parent, target_is_directory=True)
    save_checkpoint(ckpt, top, opt, TrainState(3, 30), {"budget": 1.0})
    assert not ckpt.is_symlink() and (ckpt / "top.st").is_file()
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]
    # a file inside it is a symlink
    (ckpt / "top.st").unlink()
    (ckpt / "top.st").symlink_to(victim)
    save_checkpoint(ckpt, top, opt, TrainState(4, 40), {"budget": 1.0})
    assert victim.read_bytes() == VICTIM and not (ckpt / "top.st").is_symlink()
    assert load_checkpoint(ckpt, top, opt)[0].step == 4


def test_an_export_replaces_symlinks_without_touching_their_targets(tiny_pair, tmp_path):
    from specfair.drafters.export import export_drafter
    from specfair.models.load import load_model, load_tokenizer

    model, tok = load_model(tiny_pair[1], "float32", "cpu"), load_tokenizer(tiny_pair[1])
    victim = _victim(tmp_path)
    out = tmp_path / "drafters" / "uniform"
    export_drafter(model, tok, out)
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").symlink_to(victim)
    export_drafter(model, tok, out)
    assert victim.read_bytes() == VICTIM
    assert not (out / "model.safetensors").is_symlink()
    # the export itself a symlink: to a directory that is not an export, refused; to another
    # export, the link is replaced and that export keeps its bytes
    shutil.rmtree(out)
    out.symlink_to(victim.parent, target_is_directory=True)
    with pytest.raises(SpecfairError, match="not a drafter export"):
        export_drafter(model, tok, out)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.txt"]
    other = export_drafter(model, tok, tmp_path / "someone" / "export")
    kept = {p: p.read_bytes() for p in other.iterdir()}
    out.unlink()
    out.symlink_to(other, target_is_directory=True)
    export_drafter(model, tok, out)
    assert {p: p.read_bytes() for p in other.iterdir()} == kept
    assert (out / "config.json").is_file() and not out.is_symlink()


def test_signal_shards_and_index_are_never_written_through_a_symlink(tmp_path):
    from specfair.measure.signals import SignalStore

    victim = _victim(tmp_path)
    store = SignalStore(tmp_path / "signals", {"kind": "test"})
    (tmp_path / "signals" / "index.jsonl").symlink_to(victim)
    with pytest.raises(SpecfairError, match="symlink"):
        store.put([("k", {"x": torch.ones(2, 3)})])
    assert victim.read_bytes() == VICTIM


# ============================================================================ weights


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_target_is_one_error_naming_its_file(cli, tiny_pair, tmp_path, case):
    change, said = BROKEN[case]
    bad = _copy_model(tiny_pair[0], tmp_path / "target", change)
    line = _one_error(cli, "generate", "hi", "--model", bad, *PAIR, "--max-new-tokens", "2")
    assert str(bad / "model.safetensors") in line and said in line, line


@pytest.mark.parametrize("case", ["nan", "inf", "missing", "misshaped"])
def test_a_broken_drafter_is_one_error_and_no_record(cli, tiny_pair, tmp_path, case):
    change, said = BROKEN[case]
    bad = _copy_model(tiny_pair[1], tmp_path / "drafter", change)
    out = tmp_path / "out"
    line = _one_error(cli, "bench", "--out", out, "--target", tiny_pair[0], "--drafter", bad,
                      *PAIR, "--n-per-task", "1", "--max-new-tokens", "4")
    assert str(bad / "model.safetensors") in line and said in line, line
    assert not list(out.rglob("*.jsonl")) if out.exists() else True


def _per_task_export(tiny_pair, out: Path) -> Path:
    from specfair.drafters.export import export_drafter
    from specfair.drafters.router import TaskRoutedDrafter, copy_top
    from specfair.models.load import load_model, load_tokenizer

    base = load_model(tiny_pair[1], "float32", "cpu")
    router = TaskRoutedDrafter(None, base=base,
                               models={t: copy_top(base, 1) for t in ("code", "chat")})
    return export_drafter(router, load_tokenizer(tiny_pair[1]), out, tasks=["code", "chat"])


@pytest.mark.parametrize("case", ["nan", "missing", "misshaped"])
def test_a_broken_exported_drafter_is_one_error_naming_its_file(cli, tiny_pair, tmp_path, case):
    out = _per_task_export(tiny_pair, tmp_path / "drafters" / "per-task")
    spec = json.loads((out / "router.json").read_text())
    assert spec["mode"] == "top-layers"
    f = out / spec["tasks"]["chat"] / "model.safetensors"
    t = load_file(f)
    key = next(k for k in t if k.endswith("q_proj.weight"))
    if case == "nan":
        t[key][0, 0] = float("nan")
    elif case == "missing":
        del t[key]
    else:
        t[key] = torch.zeros(2, 2)
    save_file(t, f)
    line = _one_error(cli, "generate", "hi", "--model", tiny_pair[0], "--drafter", out, *PAIR,
                      "--max-new-tokens", "2")
    assert str(f) in line, line


def test_an_exported_plain_drafter_with_nan_is_one_error(cli, tiny_pair, tmp_path):
    from specfair.drafters.export import export_drafter
    from specfair.models.load import load_model, load_tokenizer

    out = export_drafter(load_model(tiny_pair[1], "float32", "cpu"),
                         load_tokenizer(tiny_pair[1]), tmp_path / "drafters" / "uniform")
    t = load_file(out / "model.safetensors")
    t[LAYER][0, 0] = float("inf")
    save_file(t, out / "model.safetensors", metadata={"format": "pt"})
    line = _one_error(cli, "generate", "hi", "--model", tiny_pair[0], "--drafter", out, *PAIR,
                      "--max-new-tokens", "2")
    assert str(out / "model.safetensors") in line and "NaN or infinite" in line


@pytest.fixture
def no_bf16(monkeypatch):
    import specfair.models.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)


def _cached(src: Path, home: Path, change=None) -> Path:
    """A tiny model in the model cache under a known name, stored in bf16."""
    from transformers import AutoModelForCausalLM

    dst = home / "models" / "qwen2.5-coder-0.5b-instruct"
    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.bfloat16)
    for f in dst.glob("*.safetensors"):
        f.unlink()
    model.save_pretrained(dst)
    if change is not None:
        t = load_file(dst / "model.safetensors")
        change(t)
        save_file(t, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_a_nan_model_is_never_copied_to_the_fp32_cache(cli, tiny_pair, tmp_path, monkeypatch,
                                                       no_bf16):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    src = _cached(tiny_pair[1], tmp_path, _nan)
    line = _one_error(cli, "generate", "hi", "--model", "qwen2.5-coder-0.5b-instruct", *PAIR,
                      "--max-new-tokens", "2")
    assert str(src / "model.safetensors") in line and "NaN or infinite" in line
    assert not (src / "fp32").exists()


def test_a_nan_in_the_fp32_cache_copy_is_one_error_naming_it(cli, tiny_pair, tmp_path,
                                                             monkeypatch, no_bf16):
    from specfair.models.fp32cache import ensure_fp32_mirror, is_fresh

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    src = _cached(tiny_pair[1], tmp_path)
    copy = ensure_fp32_mirror(src) / "model.safetensors"
    t = load_file(copy)
    t[LAYER][0, 0] = float("nan")
    save_file(t, copy, metadata={"format": "pt"})
    assert is_fresh(src)  # the copy's stamp is of the source: the copy is used as it is
    line = _one_error(cli, "generate", "hi", "--model", "qwen2.5-coder-0.5b-instruct", *PAIR,
                      "--max-new-tokens", "2")
    assert str(copy) in line and "NaN or infinite" in line


@pytest.mark.parametrize("case", ["nan", "missing"])
def test_a_broken_lora_adapter_is_one_error_naming_its_file(tiny_pair, tmp_path, case):
    from peft import LoraConfig, get_peft_model

    from specfair.models.load import load_model
    from specfair.models.weights import load_adapter

    peft = get_peft_model(load_model(tiny_pair[1], "float32", "cpu"),
                          LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(tmp_path / "adapter")
    f = tmp_path / "adapter" / "adapter_model.safetensors"
    t = load_file(f)
    key = sorted(t)[0]
    if case == "nan":
        t[key].view(-1)[0] = float("nan")
    else:
        del t[key]
    save_file(t, f, metadata={"format": "pt"})
    with pytest.raises(SpecfairError, match="NaN or infinite" if case == "nan" else "missing") \
            as e:
        load_adapter(load_model(tiny_pair[1], "float32", "cpu"), tmp_path / "adapter")
    assert str(f) in str(e.value)


@pytest.mark.parametrize("case", ["nan", "missing", "misshaped"])
def test_a_broken_resume_checkpoint_is_one_error_naming_its_file(tiny_pair, tmp_path, case):
    from specfair.distill.topn import TrainState, load_checkpoint, save_checkpoint

    top, opt = _top(tiny_pair)
    ckpt = tmp_path / "checkpoint"
    save_checkpoint(ckpt, top, opt, TrainState(3, 30), {"budget": 1.0})
    t = load_file(ckpt / "top.st")
    key = next(k for k in t if k.endswith("q_proj.weight"))
    {"nan": lambda: t[key].view(-1).__setitem__(0, float("nan")),
     "missing": lambda: t.pop(key),
     "misshaped": lambda: t.__setitem__(key, torch.zeros(2, 2))}[case]()
    save_file(t, ckpt / "top.st")
    with pytest.raises(SpecfairError) as e:
        load_checkpoint(ckpt, *_top(tiny_pair))
    assert str(ckpt / "top.st") in str(e.value)


def test_nothing_non_finite_is_written_as_checkpoint_signals_or_records(tiny_pair, tmp_path):
    from specfair.distill.topn import Signals, TrainState, evaluate, save_checkpoint
    from specfair.measure.signals import SignalStore

    top, opt = _top(tiny_pair)
    with torch.no_grad():
        top.norm.weight[0] = float("nan")
    with pytest.raises(SpecfairError, match="not finite"):
        save_checkpoint(tmp_path / "ckpt", top, opt, TrainState(1, 1), {})
    assert not (tmp_path / "ckpt").exists()
    store = SignalStore(tmp_path / "signals", {"kind": "test"})
    with pytest.raises(SpecfairError, match="NaN or infinite"):
        store.put([("k", {"hidden": torch.tensor([[1.0, float("inf")]])})])
    assert sorted(p.name for p in (tmp_path / "signals").iterdir()) == ["meta.json"]
    # an evaluation of NaN weights is an error, never a record with null metrics
    hidden = torch.randn(6, top.norm.weight.shape[0])
    s = Signals(hidden, torch.zeros(3, 2, dtype=torch.long), torch.full((3, 2), -0.7), 3)
    head = torch.randn(300, top.norm.weight.shape[0])
    with pytest.raises(SpecfairError, match="no record was written"):
        evaluate(top, head, [s], bf16=False)


# ---------------------------------------------------------------- the experiment resumes


EXP = """target = "{t}"
drafter = "{d}"
n_train = 4
n_test = 3
n_heldout = 2
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
n_bench = 0
arms = ["uniform"]
"""


def test_an_experiment_resuming_from_a_nan_checkpoint_stops_and_appends_nothing(
        cli, long_pair, tmp_path, monkeypatch):
    from study_data import write_study_sources

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    toml = tmp_path / "exp.toml"
    toml.write_text(EXP.format(t=long_pair[0], d=long_pair[1]))
    run = tmp_path / "run"
    code, _, err = cli("experiment", toml, "--run-dir", run)
    assert code == 0, err
    # a kill after the checkpoint of the largest budget, before its records were appended
    arm = run / "arms" / "uniform"
    for f in (run / "eval.jsonl", arm / "eval.jsonl"):
        f.write_text("".join(x + "\n" for x in f.read_text().splitlines()
                             if json.loads(x).get("budget") != 1.0))
    top = arm / "checkpoint" / "top.st"
    t = load_file(top)
    t[next(iter(t))].view(-1)[0] = float("nan")
    save_file(t, top)
    before = {p: p.read_bytes() for p in run.rglob("*.jsonl")}
    line = _one_error(cli, "experiment", toml, "--run-dir", run)
    assert str(top) in line and "NaN or infinite" in line, line
    assert {p: p.read_bytes() for p in run.rglob("*.jsonl")} == before


def test_an_experiment_with_a_nan_drafter_stops_before_any_signal_is_cached(
        cli, long_pair, tmp_path, monkeypatch):
    from study_data import write_study_sources

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    bad = _copy_model(long_pair[1], tmp_path / "drafter", _nan)
    toml = tmp_path / "exp.toml"
    toml.write_text(EXP.format(t=long_pair[0], d=bad))
    run = tmp_path / "run"
    line = _one_error(cli, "experiment", toml, "--run-dir", run)
    assert str(bad / "model.safetensors") in line and "NaN or infinite" in line, line
    assert not (run / "signals").exists() and not list(run.rglob("*.jsonl"))


@pytest.mark.parametrize("sub", ["arms", "signals", "timed/base"])
def test_a_symlinked_directory_inside_a_run_is_refused_before_anything(cli, tiny_pair, tmp_path,
                                                                        sub):
    """A file symlink is replaced by every write; a directory symlink (arms/, signals/,
    timed/…) would send new files into another directory: refused up front."""
    from specfair.rundir import check_out_dir

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    (out / sub).parent.mkdir(parents=True)
    (out / sub).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SpecfairError, match="symlink to a directory"):
        check_out_dir(out)
    t, d = tiny_pair
    line = _one_error(cli, "bench", "--out", out, "--target", t, "--drafter", d, *PAIR,
                      "--n-per-task", "1", "--max-new-tokens", "4")
    assert "symlink to a directory" in line
    assert list(elsewhere.iterdir()) == [] and not (out / "bench.jsonl").exists()

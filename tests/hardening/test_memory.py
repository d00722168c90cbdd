"""Issue 31, cause 7: memory bounded by design. Per-task drafters (and every drafter the timed
stage loads beside the base drafter) hold the base drafter's frozen layers once, unpacked or
oneDNN-packed; packing gives back the pages of a memory-mapped weight file; the experiment's
``dtype`` setting (``--dtype``) reaches every model it loads."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import torch
from study_data import write_study_sources
from tiny import make_tiny_model, make_tokenizer

from specfair.decoding.proposer import as_proposer
from specfair.drafters.export import export_drafter
from specfair.drafters.load import load_drafter
from specfair.drafters.router import TaskRoutedDrafter, copy_top
from specfair.drafters.routing import pack_drafters
from specfair.errors import SpecfairError
from specfair.models.cpu_kernels import PackedLinear, pack_linears, packed_linear_available
from specfair.models.load import load_model
from specfair.study.config import StudyConfig

pytestmark = pytest.mark.usefixtures("one_thread")
TASKS = ["chat", "code", "qa", "zh"]
N_TOP = 1  # of 4 layers
needs_packing = pytest.mark.skipif(not packed_linear_available(), reason="no oneDNN")


def _bytes(modules) -> int:
    """Bytes of the distinct tensors held by ``modules`` (parameters, buffers, packed weights):
    each storage once, however many modules hold it."""
    seen, total = set(), 0
    for mod in modules:
        ts = [*mod._parameters.values(), *mod._buffers.values()]
        if isinstance(mod, PackedLinear):
            ts += [mod.packed, mod.weight, mod.bias]
        for t in ts:
            if t is None:
                continue
            if t.is_mkldnn:  # opaque: no storage to name
                key, n = ("mkldnn", id(t)), t.numel() * t.element_size()
            else:
                key, n = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
            if key not in seen:
                seen.add(key)
                total += n
    return total


def held_bytes(*drafters) -> int:
    """What the plain models behind ``drafters`` hold together."""
    return _bytes([mod for d in drafters for m in as_proposer(d).plain_models()
                   for mod in m.modules()])


def top_bytes(model) -> int:
    """What one drafter's own top layers and final norm hold."""
    return _bytes([mod for part in [*model.model.layers[-N_TOP:], model.model.norm]
                   for mod in part.modules()])


@pytest.fixture(scope="module")
def drafter_dir(tmp_path_factory):
    # a head as large as a layer: a head copied per task shows beside the top layers
    return make_tiny_model(tmp_path_factory.mktemp("drafter4") / "d", 260, 7, layers=4,
                           tok=make_tokenizer(), hidden=64)


def _trained(base, seed: int):
    """``base`` with its top layer changed (as an arm's training changes it), the rest shared."""
    model = copy_top(base, N_TOP)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*model.model.layers[-1].parameters(), *model.model.norm.parameters()]:
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def exports(drafter_dir, tmp_path_factory):
    """A plain export (one arm) and a per-task export (``top-layers``) of ``drafter_dir``."""
    out = tmp_path_factory.mktemp("exports")
    tok = make_tokenizer()
    base = load_model(drafter_dir, "float32", "cpu")
    plain = export_drafter(_trained(base, 99), tok, out / "uniform")
    routed = TaskRoutedDrafter(None, base=base,
                               models={t: _trained(base, i) for i, t in enumerate(TASKS)})
    per_task = export_drafter(routed, tok, out / "per-task", tasks=TASKS)
    return plain, per_task


def _frozen_shared(drafter) -> None:
    base = dict(drafter.base.named_parameters())
    first = len(drafter.base.model.layers) - N_TOP
    for t, model in drafter.models.items():
        for name, p in model.named_parameters():
            own = name.startswith("model.norm.") or (
                name.startswith("model.layers.") and int(name.split(".")[2]) >= first)
            assert (p.data_ptr() == base[name].data_ptr()) != own, (t, name)


def test_per_task_drafters_hold_the_frozen_layers_once(exports):
    drafter = load_drafter(exports[1], dtype="float32")
    assert sorted(drafter.models) == sorted(TASKS)
    _frozen_shared(drafter)
    one = top_bytes(drafter.models["chat"])
    assert held_bytes(drafter) < held_bytes(drafter.base) + len(TASKS) * one * 1.1


@needs_packing
def test_packed_per_task_drafters_share_every_packed_frozen_module(exports):
    """Packing (the fp32 path's kernels) packs a module the copies share once: the head and
    the lower layers are not packed again for each task."""
    drafter = load_drafter(exports[1], dtype="float32")
    pack_drafters([drafter])
    base = drafter.base
    for model in drafter.models.values():
        assert model.get_output_embeddings() is base.get_output_embeddings()
        assert all(a is b for a, b in zip(model.model.layers[:-N_TOP],
                                          base.model.layers[:-N_TOP], strict=True))
        assert isinstance(model.model.layers[-1].mlp.up_proj, PackedLinear)
    one = top_bytes(drafter.models["chat"])
    assert held_bytes(drafter) < held_bytes(base) + len(TASKS) * one * 1.1


@pytest.mark.parametrize("packed", [False, pytest.param(True, marks=needs_packing)])
def test_per_task_copies_are_swapped_one_at_a_time(drafter_dir, exports, packed):
    """n per-task copies hold one copy's top layers, not n: a copy is built from its file
    when routed to (by ``for_task``, before the call that would be timed), the one before is
    released (its memory freed), and each copy drafts exactly as the trained model it was
    exported from (packed: as that model packed)."""
    import gc
    import weakref

    base = load_model(drafter_dir, "float32", "cpu")
    trained = {t: _trained(base, i) for i, t in enumerate(TASKS)}
    routed = load_drafter(exports[1], dtype="float32", frozen_from=base)
    assert routed.models.held() == []  # nothing built at load
    if packed:
        pack_drafters([base, routed])
        pack_drafters(list(trained.values()))
    x = torch.tensor([[5, 9, 33, 2, 71, 8]])
    one = top_bytes(trained["chat"])
    gone = []
    with torch.no_grad():
        for _ in range(2):
            for t in TASKS:
                view = routed.for_task(t)
                built = routed.models.builds
                assert len(routed.models.held()) == 1  # built by for_task, before the call
                assert torch.equal(view(x).logits, trained[t](x).logits), (t, packed)
                assert routed.models.builds == built  # the call built nothing
                held = routed.models.held()[0]
                if packed:
                    assert isinstance(held.model.layers[-1].mlp.up_proj, PackedLinear)
                    assert held.get_output_embeddings() is base.get_output_embeddings()
                assert all(a is b for a, b in zip(held.model.layers[:-N_TOP],
                                                  base.model.layers[:-N_TOP], strict=True))
                assert held_bytes(base, routed) < held_bytes(base) + one * 1.1
                gone.append(weakref.ref(held.model.layers[-1]))
                del view, held
    gc.collect()
    assert sum(r() is not None for r in gone) == 1  # every copy released but the one held
    assert routed.models.builds == 2 * len(TASKS)
    assert torch.equal(routed.for_task(None)(x).logits, base(x).logits)  # unknown: the base


@pytest.mark.parametrize("packed", [False, pytest.param(True, marks=needs_packing)])
def test_the_timed_stage_drafters_share_the_base_drafter(drafter_dir, exports, packed):
    """As ``study.timed`` loads them: the base drafter, one arm's plain export and the per-task
    export, each export taking the base drafter's modules where its weights are the same; the
    drafts are those of the exports loaded on their own."""
    plain, per_task = exports
    base = load_model(drafter_dir, "float32", "cpu")
    arm = load_drafter(plain, dtype="float32", frozen_from=base)
    routed = load_drafter(per_task, dtype="float32", frozen_from=base)
    assert all(a is b for a, b in zip(arm.model.layers[:-N_TOP], base.model.layers[:-N_TOP],
                                      strict=True))
    assert arm.model.layers[-1] is not base.model.layers[-1]
    assert all(a is b for a, b in zip(routed.base.model.layers, base.model.layers, strict=True))
    _frozen_shared(routed)
    if packed:
        pack_drafters([base, arm, routed])
    one = top_bytes(arm)
    assert held_bytes(base, arm, routed) < held_bytes(base) + (1 + len(TASKS)) * one * 1.1
    x = torch.tensor([[5, 9, 33, 2, 71, 8]])
    alone = {"arm": load_drafter(plain, dtype="float32"),
             **load_drafter(per_task, dtype="float32").models}
    shared = {"arm": arm, **routed.models}
    with torch.no_grad():
        for name, model in alone.items():
            assert torch.allclose(model(x).logits, shared[name](x).logits, atol=1e-4), name


@needs_packing
def _synced_model(path: Path) -> tuple[Path, Path]:
    """A tiny fp32 model whose weight file is on disk (dirty pages are not reclaimed)."""
    if not Path("/proc/self/smaps").is_file():
        pytest.skip("no /proc/self/smaps")
    path = make_tiny_model(path, 4000, 3, layers=4, tok=make_tokenizer(), hidden=256)
    weights = path / "model.safetensors"
    with open(weights, "rb") as f:
        os.fsync(f.fileno())
    return path, weights


def _resident_kb(*files: Path) -> int:
    """This process's resident pages of ``files`` (mapped), in kB."""
    kb, inside = 0, False
    names = {str(f) for f in files}
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
            inside = line.split()[-1] in names
        elif inside and line.startswith("Rss:"):
            kb += int(line.split()[1])
    return kb


def test_a_model_replaced_next_hands_back_the_pages_its_check_read(tmp_path):
    """The finite check reads every weight: a model packed next, or loaded to share another
    model's layers, hands each page back as it goes (its file is never resident whole beside
    the replacement); a model used as loaded keeps them (it would read them again)."""
    from specfair.drafters.load import share_frozen
    from specfair.models.weights import load_hf_model

    path, weights = _synced_model(tmp_path / "m")
    size_kb = weights.stat().st_size // 1024
    kept = load_hf_model(path, torch.float32)
    assert _resident_kb(weights) > 0.9 * size_kb
    del kept
    model = load_hf_model(path, torch.float32, release_pages=True)
    assert _resident_kb(weights) < 0.2 * size_kb
    copy_dir = tmp_path / "copy"
    import shutil

    shutil.copytree(path, copy_dir)
    with open(copy_dir / "model.safetensors", "rb") as f:
        os.fsync(f.fileno())
    other = load_hf_model(copy_dir, torch.float32, release_pages=True)
    assert share_frozen(other, model) > 0
    # the comparison read both files; neither stays resident
    assert _resident_kb(weights, copy_dir / "model.safetensors") < 0.3 * size_kb
    x = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(other(x).logits, model(x).logits)


def _resident_share(t: torch.Tensor) -> float:
    """The share of ``t``'s whole pages resident in this process (``mincore``)."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    start = -(-t.data_ptr() // page) * page
    end = (t.data_ptr() + t.numel() * t.element_size()) // page * page
    n = (end - start) // page
    vec = (ctypes.c_ubyte * n)()
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.mincore(ctypes.c_void_p(start), ctypes.c_size_t(end - start), vec) == 0
    return sum(v & 1 for v in vec) / n


def test_an_untied_input_embedding_is_not_kept_resident_by_the_check(tmp_path):
    """A model used as loaded keeps the pages its finite check read, but not those of an input
    embedding of its own (read by rows only: the offline target's 0.93 GB in fp32)."""
    from safetensors.torch import load_file, save_file

    from specfair.models.weights import load_hf_model

    path, weights = _synced_model(tmp_path / "m")
    tensors = load_file(str(weights))
    if "lm_head.weight" not in tensors:  # untie it, as the offline target is
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone() * 0.5
        cfg = path / "config.json"
        cfg.write_text(cfg.read_text().replace('"tie_word_embeddings": true',
                                               '"tie_word_embeddings": false'))
        save_file(tensors, str(weights), metadata={"format": "pt"})
        with open(weights, "rb") as f:
            os.fsync(f.fileno())
    model = load_hf_model(path, torch.float32)
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    assert _resident_share(model.get_input_embeddings().weight) < 0.2
    assert _resident_share(model.get_output_embeddings().weight) > 0.9
    assert _resident_share(model.model.layers[0].mlp.up_proj.weight) > 0.9
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]))


def test_packing_gives_back_the_weight_files_pages(tmp_path):
    """A model memory-mapped from an fp32 safetensors file and packed keeps no more than a
    fraction of the file resident (the whole file stayed resident beside the packed copy)."""
    path, weights = _synced_model(tmp_path / "m")

    def resident_kb() -> int:
        return _resident_kb(weights)

    x = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        before = load_model(path, "float32", "cpu")(x).logits
    model = load_model(path, "float32", "cpu")  # as every packed load: loaded, then packed
    with torch.no_grad():
        for p in model.parameters():
            p.sum()  # every weight read once: the file is resident (packing reads it)
    size_kb = weights.stat().st_size // 1024
    assert resident_kb() > 0.9 * size_kb
    model.requires_grad_(False)
    pack_linears(model)
    assert resident_kb() < 0.2 * size_kb
    with torch.no_grad():  # the pages given back are read again when needed
        assert torch.allclose(model(x).logits, before, atol=1e-4)


# ------------------------------------------------------------------ the experiment's dtype


def test_the_dtype_setting_is_checked_with_the_config():
    assert StudyConfig().dtype == "auto" and StudyConfig.load("demo").dtype == "auto"
    assert StudyConfig.from_dict({"dtype": "float32"}).dtype == "float32"
    for bad in ("fp32", "float16", 32):
        with pytest.raises(SpecfairError, match="dtype"):
            StudyConfig.from_dict({"dtype": bad}, "x.toml")


def test_experiment_dtype_option(cli, monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr("specfair.study.run.run_study", lambda cfg, d: ran.append(cfg))
    assert cli("experiment", "demo", "--dtype", "float32")[0] == 0
    assert ran[-1].dtype == "float32" and ran[-1].name == "demo"
    code, out, err = cli("experiment", "demo", "--dtype", "fp32", "--run-dir", tmp_path / "r")
    assert code == 2 and err.strip().count("\n") == 0 and err.startswith("error: --dtype")
    assert len(ran) == 1 and not (tmp_path / "r").exists()


class _Loaded(Exception):
    pass


def test_the_dtype_reaches_every_model_the_experiment_loads(long_pair, tmp_path, monkeypatch):
    """float32 on this machine whatever its CPU: the run's target and drafter (answers,
    signals, training) and the timed stage's models, in the dtype asked for."""
    import specfair.study.run as study_run
    import specfair.study.timed as timed
    from specfair.study.run import Run

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = StudyConfig(target=str(long_pair[0]), drafter=str(long_pair[1]), n_train=4, n_test=3,
                      n_heldout=2, max_prompt_tokens=24, train_response_tokens=6,
                      test_response_tokens=6, topk=8, top_layers=1, n_bench=1,
                      dtype="float32")
    loads = []

    def record(real, stop_after):
        def load(spec, dtype="auto", device="auto", kernels="default"):
            model = real(spec, dtype, device, kernels)
            loads.append((str(spec), dtype, next(model.parameters()).dtype))
            if len(loads) == stop_after:
                raise _Loaded
            return model
        return load

    monkeypatch.setattr(study_run, "load_model", record(load_model, 2))
    with pytest.raises(_Loaded):
        Run(cfg, tmp_path / "run")
    assert loads == [(cfg.target, "float32", torch.float32),
                     (cfg.drafter, "float32", torch.float32)]
    loads.clear()
    monkeypatch.setattr(timed, "load_model", record(load_model, 2))
    from specfair.tasks.prompt import Prompt

    run = types.SimpleNamespace(cfg=cfg, dir=tmp_path / "run", tok=None, prompts=types.
                                SimpleNamespace(test=[Prompt(id="p", task="chat", turns=("hi",))]))
    with pytest.raises(_Loaded):
        timed.run_timed(run, {})
    assert [(d, t) for _, d, t in loads] == [("float32", torch.float32),
                                             ("float32", torch.float32)]


def test_the_fp32_copy_is_written_a_shard_at_a_time(tiny_pair, tmp_path, monkeypatch):
    """A CPU without bf16 writes a float32 copy of each cached model once: read and converted a
    shard at a time (the 1.5B target held whole, bf16 and float32 at once, was 9 GB), loaded
    through the shards' index with the logits of an upcast at load."""
    import shutil

    from transformers import AutoModelForCausalLM

    import specfair.models.fp32cache as fp32cache
    import specfair.models.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    name = "qwen2.5-coder-0.5b-instruct"
    src = tmp_path / "models" / name
    shutil.copytree(tiny_pair[1], src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)
    for f in src.glob("*.safetensors"):
        f.unlink()
    model.save_pretrained(src)
    monkeypatch.setattr(fp32cache, "SHARD_BYTES", 8 << 10)
    ids = torch.randint(0, 259, (1, 9))
    ref = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    loaded = load_model(name, dtype="float32", device="cpu")
    shards = sorted(fp32cache.mirror_dir(src).glob("*.safetensors"))
    assert len(shards) > 3 and (fp32cache.mirror_dir(src) / fp32cache.INDEX).is_file()
    largest = max(p.numel() * 2 for p in model.parameters())  # bf16 bytes
    assert all(s.stat().st_size <= 2 * max(fp32cache.SHARD_BYTES, largest) + 4096
               for s in shards)
    with torch.no_grad():
        assert torch.equal(ref(ids).logits, loaded(ids).logits)

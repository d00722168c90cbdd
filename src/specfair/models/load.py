"""Load causal LMs and tokenizers by short name, HF id, local HF directory or GGUF file.

Weights are loaded only from safetensors or GGUF (never pickle) and ``trust_remote_code`` is off,
through :mod:`specfair.models.weights` (the one weight reader).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from specfair.errors import SpecfairError
from specfair.models.cpu_kernels import pack_linears, packed_linear_available
from specfair.models.fp32cache import fp32_dir, wants_fp32_mirror
from specfair.models.hardware import resolve_device, resolve_dtype
from specfair.models.registry import KNOWN_MODELS, is_cached, model_dir
from specfair.models.tokenizers import check_tokenizers_match, same_tokenizer_files
from specfair.models.weights import pretrained
from specfair.schema import loads_json


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "known" | "dir" | "gguf" | "hub"
    path: str  # directory, file or hub id
    name: str  # what the user called it


def resolve_source(spec: str | os.PathLike) -> ModelSource:
    spec = str(spec)
    if spec in KNOWN_MODELS:
        if not is_cached(spec):
            raise SpecfairError(
                f"model {spec!r} is not in the cache; run `specfair models fetch {spec}` first"
            )
        return ModelSource("known", str(model_dir(spec)), spec)
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise SpecfairError(f"GGUF file not found: {p}")
        return ModelSource("gguf", str(p), spec)
    if p.exists():
        if not (p / "config.json").is_file():
            raise SpecfairError(f"{p} is not a Hugging Face model directory (no config.json)")
        return ModelSource("dir", str(p), spec)
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise SpecfairError(
            f"model {spec!r} not found: not a known name ({', '.join(KNOWN_MODELS)}), "
            "an existing directory, a .gguf file or a Hugging Face id (owner/name)"
        )
    return ModelSource("hub", spec, spec)


def _from_pretrained(cls, src: ModelSource, **kwargs):
    """``cls.from_pretrained`` of a resolved source, through :func:`weights.pretrained`."""
    if src.kind == "gguf":
        p = Path(src.path)
        return pretrained(cls, p.parent, name=src.name, gguf_file=p.name, **kwargs)
    return pretrained(cls, src.path, name=src.name, local=src.kind != "hub", **kwargs)


def context_length(spec) -> int | None:
    """The context window (``max_position_embeddings``) of a model, read from its config
    without loading weights; None where it cannot be known beforehand (GGUF, hub ids)."""
    src = resolve_source(spec)
    if src.kind not in ("known", "dir"):
        return None
    try:
        cfg = loads_json((Path(src.path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SpecfairError(f"{src.name}: unreadable config.json ({e})") from None
    cfg = cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}
    n = cfg.get("max_position_embeddings")
    return n if isinstance(n, int) and not isinstance(n, bool) else None


@dataclass(frozen=True)
class ModelShape:
    """What the settings are checked against before any weights load: the decoder's layer
    count, the vocabulary (output rows) and the names of its linear modules."""

    name: str
    n_layers: int
    vocab_size: int
    linear_names: frozenset[str]


def model_shape(spec) -> ModelShape:
    """Read a model's config (``config.json``, or the GGUF header) and build its module tree
    on the meta device: no weights are read or allocated."""
    from transformers import AutoConfig, AutoModelForCausalLM

    src = resolve_source(spec)
    cfg = _from_pretrained(AutoConfig, src)
    text = getattr(cfg, "text_config", None) or cfg
    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(cfg)
    except (ValueError, KeyError, TypeError) as e:
        raise SpecfairError(f"could not read the architecture of {src.name!r}: {e}") from None
    names = {n.rsplit(".", 1)[-1] for n, m in skeleton.named_modules()
             if isinstance(m, torch.nn.Linear)}
    return ModelShape(src.name, int(text.num_hidden_layers), int(text.vocab_size),
                      frozenset(names))


def check_max_new_tokens(max_new_tokens: int, *specs) -> None:
    """Refuse ``max_new_tokens`` that no prompt could fit in a model's context (before any
    model is loaded)."""
    if max_new_tokens < 1:
        raise SpecfairError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    for spec in specs:
        if not isinstance(spec, (str, os.PathLike)):
            continue
        limit = context_length(spec)
        if limit is not None and max_new_tokens >= limit:
            raise SpecfairError(
                f"--max-new-tokens {max_new_tokens} does not fit the context of {spec} "
                f"({limit} tokens, prompt included)")


KERNELS = ("default", "packed", "auto")


def load_model(
    spec, dtype: str | torch.dtype = "auto", device: str = "auto", kernels: str = "default"
):
    """Load a causal LM in eval mode on ``device`` with ``dtype``.

    ``kernels``: ``default`` (PyTorch's), ``packed`` (oneDNN pre-packed fp32 weights, CPU,
    inference only: see :mod:`specfair.models.cpu_kernels`) or ``auto`` (packed where it
    applies: CPU, float32, oneDNN present). Use ``default`` for a model that will be trained.
    """
    from transformers import AutoModelForCausalLM

    if kernels not in KERNELS:
        raise SpecfairError(f"unknown kernels {kernels!r}; use one of {', '.join(KERNELS)}")
    src = resolve_source(spec)
    dev = resolve_device(device)
    kwargs = {"dtype": resolve_dtype(dtype, dev)}
    if src.kind == "known" and wants_fp32_mirror(kwargs["dtype"], dev):
        src = ModelSource("known", str(fp32_dir(Path(src.path))), src.name)
    fits = dev.type == "cpu" and kwargs["dtype"] == torch.float32
    if kernels == "packed" and not (fits and packed_linear_available()):
        raise SpecfairError("--kernels packed needs a CPU, float32 and PyTorch built with oneDNN")
    pack = kernels == "packed" or (kernels == "auto" and fits and packed_linear_available())
    # a model packed next hands back the pages its check read: the packed copy replaces them
    model = _from_pretrained(AutoModelForCausalLM, src, release_pages=pack, **kwargs)
    model.to(dev).eval()
    model.specfair_name = src.name
    if pack:
        model.requires_grad_(False)
        pack_linears(model)
    return model


def load_tokenizer(spec):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, resolve_source(spec))


@dataclass
class Pair:
    target: object
    drafter: object
    tokenizer: object
    target_name: str
    drafter_name: str


def load_pair(
    target, drafter, dtype: str | torch.dtype = "auto", device: str = "auto",
    kernels: str = "default",
) -> Pair:  # fmt: skip
    """Load a target/drafter pair; refuses a pair whose tokenizers disagree.

    ``drafter`` may also be an already-built model object (e.g. a fine-tuned drafter), in which
    case its tokenizer is taken to be the target's.
    """
    tok_t = load_tokenizer(target)
    if isinstance(drafter, (str, os.PathLike)):
        src_t, src_d = resolve_source(target), resolve_source(drafter)
        local = src_t.kind in ("known", "dir") and src_d.kind in ("known", "dir")
        if not (local and same_tokenizer_files(src_t.path, src_d.path)):
            check_tokenizers_match(tok_t, load_tokenizer(drafter), "target", "drafter")
        d_model, d_name = load_model(drafter, dtype, device, kernels), str(drafter)
    else:
        d_model, d_name = drafter, getattr(drafter, "specfair_name", type(drafter).__name__)
    t_model = load_model(target, dtype, device, kernels)
    return Pair(t_model, d_model, tok_t, str(target), d_name)

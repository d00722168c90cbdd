"""The one reader of weights: every ``from_pretrained``, peft adapter load and safetensors read
in specfair goes through here (``tests/test_structure.py`` checks that no other module calls
them).

Weights come from safetensors (or a GGUF file, through transformers), never from pickle: a local
directory must hold ``*.safetensors`` for what is loaded (``model*.safetensors`` for a model,
``adapter_model.safetensors`` for a LoRA adapter), ``use_safetensors=True`` is always passed, and
every safetensors file is checked before it is opened (the 8-byte header length, the JSON
header, each tensor's byte range against the file size), so a truncated or garbled file is one
error naming it, not a library traceback. ``trust_remote_code`` is off.

Nothing read here is used unless it is finite and complete: every tensor read (:func:`read_tensors`,
:func:`load_weights`) and every model or adapter loaded is checked for NaN or infinite values, for
missing tensors (which transformers would fill with random values) and for tensors of another
shape than the model's; each is one :class:`SpecfairError` naming the file.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.models.finite import nonfinite
from specfair.schema import loads_json

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_MAX_HEADER = 100_000_000  # the safetensors library's own limit


def check_safetensors(path: str | Path) -> dict:
    """The parsed header of a safetensors file (tensor name -> dtype, shape, data_offsets);
    :class:`SpecfairError` naming the file where it is not a whole, well-formed one."""
    path = Path(path)

    def bad(why: str) -> SpecfairError:
        return SpecfairError(f"{path}: not a valid safetensors file ({why})")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad(f"{size} bytes, shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, _MAX_HEADER):
                raise bad(f"header of {n} bytes in a file of {size} bytes: truncated or garbled")
            raw = f.read(n)
    except OSError as e:
        raise SpecfairError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        header = loads_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("the header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    data = size - 8 - n
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(t, dict) and isinstance(t.get("shape"), list)
                and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2
                and all(isinstance(x, int) and x >= 0 for x in t["data_offsets"] + t["shape"])):
            raise bad(f"tensor {name!r} has no valid shape/data_offsets")
        b, e = t["data_offsets"]
        if not b <= e <= data:
            raise bad(f"tensor {name!r} ends at byte {e} of {data}: truncated")
        item = _ITEMSIZE.get(t.get("dtype"))
        if item is not None and math.prod(t["shape"]) * item != e - b:
            raise bad(f"tensor {name!r}: {e - b} bytes for shape {t['shape']} {t['dtype']}")
    return header


def require_safetensors(folder: str | Path, stem: str = "model") -> list[Path]:
    """The ``stem*.safetensors`` files of ``folder``, each checked; refuses a folder without
    them (pickled weights such as ``pytorch_model.bin`` are never loaded)."""
    folder = Path(folder)
    files = sorted(folder.glob(f"{stem}*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in folder.glob("*") if p.suffix in PICKLE_SUFFIXES)
        found = f"; found {', '.join(pickles)}" if pickles else ""
        raise SpecfairError(f"{folder}: no {stem}*.safetensors (weights are read from safetensors "
                            f"only, pickled weights are never loaded{found})")
    for f in files:
        check_safetensors(f)
    return files


def check_finite(named, where: str | Path) -> None:
    """Refuse ``named`` (``(name, tensor)`` pairs) read from ``where`` if a floating-point
    tensor holds a NaN or an infinity: one :class:`SpecfairError` naming ``where``."""
    bad = nonfinite(named)
    if bad:
        raise SpecfairError(f"{where}: {len(bad)} tensor(s) not finite (NaN or infinite), "
                            f"e.g. {bad[0]}; refusing to use them")


def check_complete(tensors: dict, shapes: dict, where: str | Path) -> None:
    """Refuse ``tensors`` read from ``where`` unless they are exactly the names of ``shapes``
    (name -> expected shape), each of its shape."""
    missing = [k for k in shapes if k not in tensors]
    extra = [k for k in tensors if k not in shapes]
    if missing:
        raise SpecfairError(f"{where}: {len(missing)} tensor(s) missing, e.g. {missing[0]}")
    if extra:
        raise SpecfairError(f"{where}: {len(extra)} unexpected tensor(s), e.g. {extra[0]}")
    for k, shape in shapes.items():
        if tuple(tensors[k].shape) != tuple(shape):
            raise SpecfairError(f"{where}: tensor {k} has shape {list(tensors[k].shape)}, "
                                f"expected {list(shape)}")


def read_tensors(path: str | Path, device: str = "cpu") -> dict:
    """All tensors of a safetensors file (checked first; every one finite)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        raise SpecfairError(f"{path}: not a valid safetensors file ({e})") from e
    check_finite(tensors.items(), path)
    return tensors


def load_weights(module, path: str | Path, keys=None) -> None:
    """Copy the tensors of the safetensors file ``path`` into ``module``: the file holds
    exactly ``keys`` of its state dict (default: all of them), each finite and of the module's
    shape; otherwise one :class:`SpecfairError` naming the file and nothing is copied."""
    state = module.state_dict()
    keys = list(state) if keys is None else list(keys)
    tensors = read_tensors(path)
    check_complete(tensors, {k: state[k].shape if k in state else None for k in keys}, path)
    module.load_state_dict(tensors, strict=len(keys) == len(state))


def read_tensors_and_metadata(path: str | Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file (checked first)."""
    from safetensors import SafetensorError, safe_open

    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as sf:
            tensors, meta = {k: sf.get_tensor(k) for k in sf.keys()}, dict(sf.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise SpecfairError(f"{path}: not a valid safetensors file ({e})") from e
    check_finite(tensors.items(), path)
    return tensors, meta


def tensor_groups(path: str | Path, max_bytes: int) -> list[list[str]]:
    """The tensor names of a safetensors file (checked first) in file order, in groups of at
    most ``max_bytes`` as stored (a larger tensor alone): for :func:`read_tensor_group`."""
    header = check_safetensors(path)
    names = sorted((k for k in header if k != "__metadata__"),
                   key=lambda k: header[k]["data_offsets"][0])
    groups: list[list[str]] = [[]]
    size = 0
    for k in names:
        b, e = header[k]["data_offsets"]
        if groups[-1] and size + e - b > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += e - b
    return groups


def read_tensor_group(path: str | Path, names: list[str]) -> tuple[dict, dict]:
    """``(tensors, metadata)``: the tensors ``names`` of a safetensors file (every one finite),
    the file opened for them alone, so that what was read of it is not kept mapped."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as sf:
            tensors, meta = {k: sf.get_tensor(k) for k in names}, dict(sf.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise SpecfairError(f"{path}: not a valid safetensors file ({e})") from e
    check_finite(tensors.items(), path)
    return tensors, meta


def pretrained(cls, path: str | Path, *, name: str | None = None, gguf_file: str | None = None,
               local: bool = True, release_pages: bool = False, **kwargs):
    """``cls.from_pretrained`` (a transformers auto class) with specfair's rules: a local
    model directory is checked first (``require_safetensors``), models load with
    ``use_safetensors=True``, no remote code; a library error on bad files is one
    :class:`SpecfairError` naming ``name`` (default: the path). A model is then checked
    complete (no tensor missing or of another shape) and finite (:func:`check_model_loaded`;
    ``release_pages``: for a model whose weights are replaced next, see there)."""
    from safetensors import SafetensorError
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    name = str(path) if name is None else name
    kwargs["trust_remote_code"] = False
    is_model = not cls.__name__.endswith("Tokenizer")
    weights = is_model and "Config" not in cls.__name__
    files: list[Path] = []
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
        files = [Path(path) / gguf_file]
    elif is_model:
        kwargs["use_safetensors"] = True
        if local:
            files = require_safetensors(path)
    if weights:  # transformers reports what it could not load instead of raising or filling
        kwargs |= {"output_loading_info": True, "ignore_mismatched_sizes": True}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report: we say it in one line below
    try:
        out = cls.from_pretrained(str(path), **kwargs)
    except SpecfairError:
        raise
    except (OSError, ValueError, EOFError, struct.error, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpecfairError(f"could not load {name!r}: {first}") from e
    except (IndexError, KeyError, TypeError) as e:
        if gguf_file is None:
            raise
        raise SpecfairError(f"could not load {name!r}: not a valid GGUF file "
                            f"({type(e).__name__}: {e})") from e
    finally:
        hf_logging.set_verbosity(verbosity)
    if not weights:
        return out
    model, info = out
    where = str(files[0]) if len(files) == 1 else name if not files else str(Path(path))
    check_model_loaded(model, info, where, release_pages=release_pages)
    return model


def check_model_loaded(model, info: dict, where: str, release_pages: bool = False) -> None:
    """Refuse a model that transformers loaded from ``where`` with tensors missing (filled
    with random values) or of another shape (``info``: its ``output_loading_info``), or with
    a NaN or infinite weight (checked parameter by parameter, in place). ``release_pages``:
    the pages of a memory-mapped file each check reads are handed back as it goes
    (:func:`specfair.models.memory.page_out`), for a model whose weights are replaced next
    (packed, or shared with a model already loaded): its file is then never resident whole
    beside their replacements. Not for a model used as loaded: it would read them again,
    except its input embedding where it is not the head's weight: a lookup reads only the rows
    of its tokens (the offline target's 0.93 GB table in fp32)."""
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise SpecfairError(f"{where}: incomplete weights, {len(missing)} tensor(s) missing, "
                            f"e.g. {missing[0]}")
    wrong = sorted(info.get("mismatched_keys") or ())
    if wrong:
        key, *shapes = wrong[0] if isinstance(wrong[0], tuple) else (wrong[0],)
        how = f" ({list(shapes[0])} in the file, {list(shapes[1])} in the model)" \
            if len(shapes) == 2 else ""
        raise SpecfairError(f"{where}: {len(wrong)} tensor(s) of the wrong shape, e.g. "
                            f"{key}{how}")
    from specfair.models.memory import file_mappings, page_out, page_out_ranges

    mapped, bad, paged = file_mappings(), [], []
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    # an input embedding of its own (not tied to the head) is only ever read by rows
    rows = None if emb is None or (head is not None and head.weight is emb.weight) else emb.weight
    for name, p in model.named_parameters():  # not buffers: a mask may hold -inf
        bad += nonfinite([(name, p)])
        if release_pages or p is rows:
            paged += page_out([p], mapped)
    page_out_ranges(paged)  # again: pages read a moment ago may not have been reclaimable
    if bad:
        raise SpecfairError(f"{where}: {len(bad)} tensor(s) not finite (NaN or infinite), "
                            f"e.g. {bad[0]}; refusing to use them")


def load_hf_model(path: str | Path, dtype="auto", release_pages: bool = False):
    """A causal LM from a local HF directory (safetensors checked), in ``dtype``
    (``release_pages``: see :func:`check_model_loaded`)."""
    from transformers import AutoModelForCausalLM

    return pretrained(AutoModelForCausalLM, path, dtype=dtype, release_pages=release_pages)


def load_adapter(model, folder: str | Path, adapter_name: str = "default"):
    """Add the LoRA adapter in ``folder`` (``adapter_model.safetensors`` only) to ``model``:
    a plain model becomes a ``PeftModel``, a ``PeftModel`` gets one more adapter."""
    from peft import PeftModel, get_peft_model_state_dict

    file = require_safetensors(folder, "adapter_model")[0]
    stored = read_tensors(file)  # finite
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(folder), adapter_name=adapter_name)
        else:
            model = PeftModel.from_pretrained(model, str(folder), adapter_name=adapter_name)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpecfairError(f"could not load the adapter {folder}: {first}") from e
    wanted = get_peft_model_state_dict(model, adapter_name=adapter_name)
    check_complete({k: v for k, v in stored.items() if k in wanted},
                   {k: v.shape for k, v in wanted.items()}, file)
    return model

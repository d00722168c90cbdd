"""How a per-task export (``router.json``) picks the drafter of a prompt: ``oracle`` (the prompt's
task label) or ``classifier`` (the export's task router, :mod:`specfair.drafters.task_classifier`;
a prompt with no label, as in ``specfair generate``, is always routed this way). Plain drafters
ignore the routing.
"""

from __future__ import annotations

import os
from pathlib import Path

from specfair.decoding.proposer import as_proposer
from specfair.drafters.load import load_drafter, read_router
from specfair.drafters.router import ClassifierRoutedDrafter, TaskRoutedDrafter
from specfair.drafters.task_classifier import has_classifier, load_classifier
from specfair.errors import SpecfairError
from specfair.models.cpu_kernels import pack_linears
from specfair.models.load import (
    check_max_new_tokens,
    load_model,
    load_tokenizer,
    model_shape,
    resolve_source,
)
from specfair.models.tokenizers import check_tokenizers_match, same_tokenizer_files

ROUTINGS = ("oracle", "classifier")


def is_routed_export(spec) -> bool:
    """Whether ``spec`` names a per-task drafter export (a directory with ``router.json``)."""
    return isinstance(spec, str | os.PathLike) and (Path(spec) / "router.json").is_file()


def routed_base(spec) -> Path:
    """The base drafter directory of a per-task export (its tokenizer and config), from its
    checked ``router.json`` (:func:`specfair.drafters.load.read_router`: the path stays inside
    the export)."""
    path = read_router(spec)["base"]
    if not (path / "config.json").is_file():
        raise SpecfairError(f"{spec}: the per-task export has no base drafter ({path})")
    return path


def check_routing(routing: str, drafter) -> str:
    """Refuse a bad ``--routing`` before any weights load; returns what will be used:
    ``"none"`` for a plain drafter, else ``routing``. ``classifier`` needs a valid task router
    in the export (checked here)."""
    if routing not in ROUTINGS:
        raise SpecfairError(f"--routing must be one of {', '.join(ROUTINGS)}, got {routing!r}")
    if not is_routed_export(drafter):
        return "none"
    if routing == "classifier":
        load_classifier(drafter)
    return routing


def check_drafter_context(max_new_tokens: int, target, drafter) -> None:
    """:func:`specfair.models.load.check_max_new_tokens` for a drafter that may be an export."""
    check_max_new_tokens(max_new_tokens, target,
                         routed_base(drafter) if is_routed_export(drafter) else drafter)


def with_routing(drafter, routing: str, export_dir, tokenizer):
    """``drafter`` routed by the task router of ``export_dir`` when ``routing`` is
    ``classifier`` and it is a :class:`TaskRoutedDrafter`; else ``drafter`` itself."""
    if routing != "classifier" or not isinstance(drafter, TaskRoutedDrafter):
        return drafter
    return ClassifierRoutedDrafter(drafter, load_classifier(export_dir), tokenizer)


def load_routed_drafter(spec, target_spec, *, dtype: str, device: str, packed: bool = False,
                        routing: str = "oracle", tokenizer=None, frozen_from=None):
    """A per-task export as a proposer: its tokenizer checked against the target's, loaded in
    ``dtype`` on ``device`` (``packed``: oneDNN-packed plain models, as the target's, each
    module shared by the per-task copies packed once), routed by ``routing``. ``frozen_from``:
    a loaded drafter whose modules it takes where their weights are equal
    (:func:`specfair.drafters.load.share_frozen`)."""
    base = routed_base(spec)
    src_t = resolve_source(target_spec)
    if not (src_t.kind in ("known", "dir") and same_tokenizer_files(src_t.path, base)):
        check_tokenizers_match(tokenizer or load_tokenizer(target_spec), load_tokenizer(base),
                               "target", "drafter")
    drafter = load_drafter(spec, dtype=dtype, device=device, frozen_from=frozen_from)
    if packed:
        pack_drafters([drafter])
    drafter.specfair_name = str(spec)
    return with_routing(drafter, routing, spec, tokenizer or load_tokenizer(base))


def pack_drafters(drafters) -> None:
    """oneDNN-pack the plain models behind ``drafters`` (models, per-task or classifier-routed
    drafters; :mod:`specfair.models.cpu_kernels`), in place: a module several of them share (the
    frozen layers) is packed once, so they go on sharing it."""
    shared: dict = {}
    for d in drafters:
        p = as_proposer(d)
        for m in p.plain_models():
            m.requires_grad_(False)
            pack_linears(m, shared=shared)
        if callable(getattr(p, "on_build", None)):  # per-task copies built later, when routed to
            p.on_build(_pack_built)


def _pack_built(model) -> None:
    """Pack a per-task copy built after its base was packed: only its own layers are still
    plain ``nn.Linear`` (the shared ones were packed with the base); a fresh ``shared`` dict,
    so that nothing keeps a released copy's packed layers alive."""
    model.requires_grad_(False)
    pack_linears(model)


def load_feature_model(spec, *, dtype: str = "auto", device: str = "cpu"):
    """The model whose hidden states a task router reads: the base drafter of a per-task
    export (or the drafter itself)."""
    return load_model(routed_base(spec) if is_routed_export(spec) else spec, dtype, device,
                      kernels="default")


def has_task_router(spec) -> bool:
    return is_routed_export(spec) and has_classifier(spec)


def drafter_layers(spec) -> int:
    """The base drafter's layer count, read from its config (no weights loaded)."""
    return model_shape(routed_base(spec)).n_layers


def train_task_router(spec, train_prompts, test_prompts, *, layer: int | None = None,
                      threshold: float = 0.5, l2: float = 1e-3, max_tokens: int = 512,
                      dtype: str = "auto", device: str = "cpu") -> tuple:
    """Fit the task router of the per-task export ``spec`` on ``train_prompts`` (their task
    labels), save it beside ``router.json``, evaluate it on ``test_prompts`` and write
    ``router_eval.json``; returns ``(classifier, evaluation)``."""
    import torch

    from specfair.drafters.task_classifier import EVAL_FILE, evaluate, fit_router, prompt_features
    from specfair.measure.io import write_json

    model = load_feature_model(spec, dtype=dtype, device=device)
    tokenizer = load_tokenizer(routed_base(spec))
    clf = fit_router(model, tokenizer, train_prompts, layer=layer, l2=l2, threshold=threshold,
                     max_tokens=max_tokens)
    copies = export_tasks(spec)
    test = (prompt_features(model, tokenizer, test_prompts, clf.layer, max_tokens)
            if test_prompts else torch.zeros(0, clf.weight.shape[1]))
    result = evaluate(clf, test, [p.task for p in test_prompts], copies)
    result["train"] = clf.train
    clf.save(spec)
    write_json(Path(spec) / EVAL_FILE, result)
    return clf, result


def export_tasks(spec) -> list[str]:
    """The tasks of a per-task export that have their own drafter (``router.json``)."""
    return list(read_router(spec)["tasks"])

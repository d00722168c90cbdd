"""A classifier of a prompt's task: multinomial logistic regression on the drafter's mean-pooled
prompt hidden states, so that per-task drafters can be routed without a task label.

Features: the drafter's hidden states at ``layer`` (HF ``hidden_states`` index: 0 = embeddings,
``num_hidden_layers`` = the last layer) over the chat-templated first user message, averaged
over the tokens after the chat template's prefix that every prompt shares (those positions'
states are the same for every prompt under causal attention), at most ``max_tokens`` of them;
standardised with the train features' mean and standard deviation. The model: softmax(W x + b),
L2 on W, fitted full-batch with L-BFGS in float64 on the CPU (deterministic).

On disk, beside the export's ``router.json``::

    task_router.safetensors   weight [C, H], bias [C], mean [H], std [H] (float32)
    task_router.json          {"format": "specfair-task-router/1", "tasks": [...], "layer": L,
                               "threshold": 0.5, "max_tokens": N, "hidden_size": H, "train": {..}}

:meth:`TaskClassifier.route` gives the predicted task, or None (the base drafter) when the
predicted class's probability is below ``threshold``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from specfair.atomic import atomic_file, write_text
from specfair.errors import SpecfairError
from specfair.models.weights import read_tensors
from specfair.schema import loads_json
from specfair.tasks import encode_prompt

FORMAT = "specfair-task-router/1"
WEIGHTS_FILE = "task_router.safetensors"
META_FILE = "task_router.json"
EVAL_FILE = "router_eval.json"
DEFAULT_THRESHOLD = 0.5
DEFAULT_MAX_TOKENS = 512
_TENSORS = ("weight", "bias", "mean", "std")


def shared_prefix_len(tokenizer) -> int:
    """The number of leading tokens the chat template gives every prompt (system message,
    role markers): the common prefix of two different one-character prompts."""
    a, b = encode_prompt(tokenizer, "a"), encode_prompt(tokenizer, "b")
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _n_layers(model) -> int:
    return int(model.config.num_hidden_layers)


def resolve_layer(model, layer: int | None) -> int:
    """``layer`` as a ``hidden_states`` index (None: the last layer; negative: from the end)."""
    n = _n_layers(model)
    if layer is None:
        return n
    if not -(n + 1) <= layer <= n:
        raise SpecfairError(f"--layer must be in [{-(n + 1)}, {n}] for this drafter, got {layer}")
    return layer % (n + 1)


@torch.no_grad()
def prompt_features(model, tokenizer, prompts, layer: int,
                    max_tokens: int = DEFAULT_MAX_TOKENS) -> torch.Tensor:
    """``[len(prompts), H]`` float32 (CPU): each prompt's (a ``Prompt`` or a user message)
    mean hidden state at ``layer`` over its own tokens (see the module docstring)."""
    skip = shared_prefix_len(tokenizer)
    device = next(model.parameters()).device if hasattr(model, "parameters") else "cpu"
    rows = []
    for p in prompts:
        ids = encode_prompt(tokenizer, p)
        start = min(skip, len(ids) - 1)
        ids = ids[: start + max_tokens]
        out = model(input_ids=torch.tensor([ids], device=device), output_hidden_states=True,
                    use_cache=False)
        rows.append(out.hidden_states[layer][0, start:].float().mean(0).cpu())
    return torch.stack(rows)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = 1e-3,
                 max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Multinomial logistic regression on standardised ``x`` [N, H] with labels ``y`` [N]:
    ``(weight [C, H], bias [C], final loss)``; loss = mean cross-entropy + ``l2`` · ||W||²."""
    x, y = x.double().cpu(), y.long().cpu()
    w = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20,
                            line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(loss_fn)
        final = float(loss_fn().detach())
    return w.detach().float(), b.detach().float(), final


@dataclass
class TaskClassifier:
    tasks: list[str]
    layer: int
    weight: torch.Tensor  # [C, H]
    bias: torch.Tensor  # [C]
    mean: torch.Tensor  # [H]
    std: torch.Tensor  # [H]
    threshold: float = DEFAULT_THRESHOLD
    max_tokens: int = DEFAULT_MAX_TOKENS
    train: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, features: torch.Tensor, labels: list[str], *, layer: int, l2: float = 1e-3,
            threshold: float = DEFAULT_THRESHOLD,
            max_tokens: int = DEFAULT_MAX_TOKENS) -> TaskClassifier:
        """Fit on train ``features`` [N, H] and their task ``labels`` (at least two tasks)."""
        tasks = sorted(set(labels))
        if len(tasks) < 2:
            raise SpecfairError(f"a task router needs prompts of two tasks or more, got {tasks}")
        x = features.double()
        mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
        y = torch.tensor([tasks.index(t) for t in labels])
        w, b, loss = fit_logistic((x - mean) / std, y, len(tasks), l2=l2)
        clf = cls(tasks, layer, w, b, mean.float(), std.float(), threshold, max_tokens)
        acc = float((clf.predict_proba(features).argmax(1) == y).float().mean())
        clf.train = {"n": len(labels), "per_task": {t: labels.count(t) for t in tasks},
                     "l2": l2, "loss": loss, "accuracy": acc}
        return clf

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, C]`` class probabilities (columns in ``tasks`` order)."""
        x = (features.float().cpu() - self.mean) / self.std
        return torch.softmax(x @ self.weight.T + self.bias, dim=-1)

    def predict(self, features: torch.Tensor) -> list[str]:
        return [self.tasks[i] for i in self.predict_proba(features).argmax(1).tolist()]

    def route(self, features: torch.Tensor) -> list[str | None]:
        """Per row, the predicted task, or None where its probability is below ``threshold``."""
        p, i = self.predict_proba(features).max(1)
        return [self.tasks[k] if q >= self.threshold else None
                for q, k in zip(p.tolist(), i.tolist(), strict=True)]

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        with atomic_file(folder / WEIGHTS_FILE) as tmp:
            save_file({k: getattr(self, k).float().contiguous() for k in _TENSORS}, str(tmp))
        meta = {"format": FORMAT, "tasks": self.tasks, "layer": self.layer,
                "threshold": self.threshold, "max_tokens": self.max_tokens,
                "hidden_size": int(self.weight.shape[1]), "train": self.train}
        write_text(folder / META_FILE, json.dumps(meta, indent=2))
        return folder / META_FILE


def fit_router(model, tokenizer, prompts, *, layer: int | None = None, l2: float = 1e-3,
               threshold: float = DEFAULT_THRESHOLD,
               max_tokens: int = DEFAULT_MAX_TOKENS) -> TaskClassifier:
    """A task router fitted on ``prompts`` (their task labels), on ``model``'s features at
    ``layer`` (None: the last layer; :func:`resolve_layer`)."""
    layer = resolve_layer(model, layer)
    feats = prompt_features(model, tokenizer, prompts, layer, max_tokens)
    return TaskClassifier.fit(feats, [p.task for p in prompts], layer=layer, l2=l2,
                              threshold=threshold, max_tokens=max_tokens)


def has_classifier(folder: str | Path) -> bool:
    return (Path(folder) / META_FILE).is_file()


def _bad(folder: Path, why: str) -> SpecfairError:
    return SpecfairError(f"{folder / META_FILE}: not a valid task router ({why}); "
                         f"train one with `specfair router train --drafter {folder}`")


def load_classifier(folder: str | Path) -> TaskClassifier:
    """The classifier saved in ``folder`` (JSON and safetensors only); a missing or corrupt
    file is one :class:`SpecfairError`."""
    folder = Path(folder)
    if not (folder / META_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise _bad(folder, f"{META_FILE} or {WEIGHTS_FILE} is missing")
    try:
        meta = loads_json((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _bad(folder, f"unreadable JSON: {e}") from None
    try:
        tensors = read_tensors(folder / WEIGHTS_FILE)
    except SpecfairError as e:
        raise _bad(folder, f"unreadable {WEIGHTS_FILE}: {e}") from None
    _check_meta(folder, meta)
    _check_tensors(folder, meta, tensors)
    return TaskClassifier(list(meta["tasks"]), meta["layer"],
                          *(tensors[k].float() for k in _TENSORS), float(meta["threshold"]),
                          meta["max_tokens"], meta.get("train", {}))


def _check_meta(folder: Path, meta) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(folder, f"format is not {FORMAT}")
    tasks = meta.get("tasks")
    if (not isinstance(tasks, list) or len(tasks) < 2 or len(set(tasks)) != len(tasks)
            or not all(isinstance(t, str) for t in tasks)):
        raise _bad(folder, "'tasks' must list two distinct task names or more")
    for key in ("layer", "max_tokens", "hidden_size"):
        v = meta.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "layer" else 1):
            raise _bad(folder, f"{key!r} must be an integer >= {0 if key == 'layer' else 1}")
    t = meta.get("threshold")
    if not isinstance(t, int | float) or isinstance(t, bool) or not (0.0 <= t <= 1.0):
        raise _bad(folder, "'threshold' must be a number in [0, 1]")


def _check_tensors(folder: Path, meta: dict, tensors: dict) -> None:
    c, h = len(meta["tasks"]), meta["hidden_size"]
    shapes = {"weight": (c, h), "bias": (c,), "mean": (h,), "std": (h,)}
    for k, shape in shapes.items():
        if k not in tensors or tuple(tensors[k].shape) != shape:
            raise _bad(folder, f"tensor {k!r} must have shape {list(shape)}")
        if not bool(torch.isfinite(tensors[k]).all()):
            raise _bad(folder, f"tensor {k!r} is not finite")
    if bool((tensors["std"] <= 0).any()):
        raise _bad(folder, "'std' must be positive")


def evaluate(clf: TaskClassifier, features: torch.Tensor, labels: list[str],
             copies: list[str]) -> dict:
    """Routing quality on held-out prompts: per true task, the classifier's accuracy (argmax),
    the share routed to the right drafter (the task's copy, or the base drafter for a task
    without one; below ``threshold`` → base) and the share that fell back to the base; the
    confusion matrix ``confusion[true][predicted]`` (argmax)."""
    pred, routes = clf.predict(features), clf.route(features)
    routes = [r if r in copies else None for r in routes]
    tasks = sorted(set(clf.tasks) | set(labels))
    confusion = {t: dict.fromkeys(clf.tasks, 0) for t in tasks}
    per: dict[str, dict] = {}
    for y, p, r in zip(labels, pred, routes, strict=True):
        confusion[y][p] += 1
        d = per.setdefault(y, {"n": 0, "correct": 0, "routed_right": 0, "to_base": 0})
        d["n"] += 1
        d["correct"] += p == y
        d["routed_right"] += r == (y if y in copies else None)
        d["to_base"] += r is None
    per_task = {t: {"n": d["n"], "accuracy": d["correct"] / d["n"],
                    "routing_accuracy": d["routed_right"] / d["n"],
                    "base_share": d["to_base"] / d["n"]} for t, d in sorted(per.items())}
    n = len(labels)
    return {"n": n, "accuracy": sum(d["correct"] for d in per.values()) / n if n else None,
            "routing_accuracy": sum(d["routed_right"] for d in per.values()) / n if n else None,
            "threshold": clf.threshold, "copies": sorted(copies), "tasks": per_task,
            "confusion": {t: row for t, row in confusion.items() if t in per}}

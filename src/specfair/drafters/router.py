"""``TaskRoutedDrafter``: per-task drafters behind one object, chosen by the prompt's task label
(oracle routing); ``ClassifierRoutedDrafter``: the same, chosen by a task classifier.

``router.for_task(label)`` returns a causal LM usable as the ``drafter`` of
``speculative_generate``: calling it (or ``.forward``/``.generate``) runs the drafter with the
task's adapter active; any other attribute (``config``, ``device``, ``dtype``,
``generation_config``, ``get_input_embeddings`` ...) is the underlying model's. An unknown label
(or None) gives the shared base drafter (all adapters disabled).

Two back-ends: a peft ``PeftModel`` holding one LoRA adapter per task (adapter name = task), or
a mapping ``task -> model`` of merged models plus a base model.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping

from specfair.errors import SpecfairError


def adapter_name(task: str) -> str:
    """The LoRA adapter (and export sub-directory) name of a task label."""
    return "t_" + re.sub(r"[^A-Za-z0-9_-]", "_", task)


class _Routed:
    """A model view with one task's adapter active for every call."""

    def __init__(self, router: TaskRoutedDrafter, task: str | None) -> None:
        self._router = router
        self.task = task if task in router.tasks else None

    def _ctx(self):
        return self._router._activate(self.task)

    @property
    def _model(self):
        return self._router._model_for(self.task)

    def __call__(self, *args, **kwargs):
        with self._ctx():
            return self._model(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self(*args, **kwargs)

    def generate(self, *args, **kwargs):
        with self._ctx():
            return self._model.generate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)

    def __repr__(self) -> str:
        return f"<drafter for task {self.task!r} (base if None)>"


def copy_top(model, n_top: int):
    """A copy of a ``*ForCausalLM`` that shares every module with ``model`` except its top
    ``n_top`` decoder layers and final norm: a per-task drafter then costs only those layers."""
    body = model.model
    shared = [body.embed_tokens, body.rotary_emb, model.get_output_embeddings(),
              *body.layers[: len(body.layers) - n_top]]
    return copy.deepcopy(model, memo={id(m): m for m in shared})


class SwappedModels(Mapping):
    """``task -> model`` for per-task drafters that differ from a base only in a few layers,
    each model built by ``build(task)`` when first asked for and only the last ``keep`` held:
    the others are released and built again when asked for (as adapters are swapped), so the
    memory of n per-task copies is that of ``keep``. ``on_build``: called with each model built
    (e.g. to pack its own layers as the base's are). ``held()``: the models held now."""

    def __init__(self, tasks, build: Callable, keep: int = 1) -> None:
        if keep < 1:
            raise ValueError("SwappedModels: keep >= 1")
        self._tasks, self._build, self.keep = list(tasks), build, keep
        self._held: OrderedDict = OrderedDict()
        self.on_build: Callable | None = None
        self.builds = 0

    def __getitem__(self, task):
        if task in self._held:
            self._held.move_to_end(task)
            return self._held[task]
        if task not in self._tasks:
            raise KeyError(task)
        while len(self._held) >= self.keep:  # release before building: one set at a time
            self._held.popitem(last=False)
        model = self._build(task)
        if self.on_build is not None:
            self.on_build(model)
        self._held[task] = model
        self.builds += 1
        return model

    def __iter__(self):
        return iter(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def held(self) -> list:
        return list(self._held.values())


class TaskRoutedDrafter:
    """Route to the drafter of a task; ``tasks`` lists the labels that have their own drafter.
    ``models`` may be a :class:`SwappedModels` (built when routed to, a few held at a time)."""

    def __init__(self, model, tasks=None, *, base=None, models: Mapping | None = None) -> None:
        if models is not None:  # merged back-end
            self.peft = None
            self.base = base
            self.models = models if isinstance(models, SwappedModels) else dict(models)
            self.tasks = list(self.models)
        else:  # peft back-end: adapter of task t is named adapter_name(t)
            self.peft = model
            self.base = model
            self.models = {}
            names = set(getattr(model, "peft_config", {}) or {})
            if tasks is None:
                raise ValueError("TaskRoutedDrafter(peft_model, tasks): tasks are needed")
            self.tasks = [t for t in tasks if adapter_name(t) in names]

    def _model_for(self, task: str | None):
        if self.peft is not None:
            return self.peft
        return self.models.get(task, self.base) if task is not None else self.base

    @contextlib.contextmanager
    def _activate(self, task: str | None):
        if self.peft is None:
            yield
        elif task is None:
            with self.peft.disable_adapter():
                yield
        else:
            name = adapter_name(task)
            if self.peft.active_adapter != name:
                self.peft.set_adapter(name)
            yield

    def for_task(self, label: str | None) -> _Routed:
        view = _Routed(self, label)
        if view.task is not None and self.peft is None:
            self.models[view.task]  # a swapped copy is built now, not inside a timed call
        return view

    def _held(self) -> list:
        m = self.models
        return m.held() if isinstance(m, SwappedModels) else list(m.values())

    def plain_models(self) -> list:
        """The ordinary models behind the router, as held now (none for the peft back-end,
        whose LoRA layers need the base layers' weights)."""
        if self.peft is not None:
            return []
        return [m for m in [self.base, *self._held()] if m is not None]

    def on_build(self, fn: Callable) -> None:
        """Have ``fn`` called with each per-task model built from now on (swapped models)."""
        if isinstance(self.models, SwappedModels):
            self.models.on_build = fn

    def eval(self) -> TaskRoutedDrafter:
        for m in [self.base, *self._held()]:
            if m is not None:
                m.eval()
        return self

    def __repr__(self) -> str:
        kind = "adapters" if self.peft is not None else "merged"
        return f"TaskRoutedDrafter({kind}, tasks={self.tasks})"


class ClassifierRoutedDrafter:
    """A :class:`TaskRoutedDrafter` that routes each prompt by a task classifier
    (:class:`specfair.drafters.task_classifier.TaskClassifier`) on the base drafter's hidden
    states instead of by its label: ``route(prompt)`` is the predicted task, or None (the base
    drafter) below the classifier's threshold or for a task without a copy. ``for_task(label)``
    still routes by a given label."""

    def __init__(self, router: TaskRoutedDrafter, classifier, tokenizer) -> None:
        base = router.for_task(None)
        hidden = int(base.config.hidden_size)
        if classifier.weight.shape[1] != hidden or classifier.layer > base.config.num_hidden_layers:
            raise SpecfairError(
                f"the task router was trained on another drafter (hidden size "
                f"{classifier.weight.shape[1]}, layer {classifier.layer}; this drafter: "
                f"{hidden}, {base.config.num_hidden_layers} layers)")
        self.router, self.classifier, self.tokenizer = router, classifier, tokenizer
        self.tasks = router.tasks
        self._routes: dict = {}

    def route(self, prompt) -> str | None:
        """The task whose drafter drafts ``prompt`` (a ``Prompt`` or a user message); None:
        the base drafter. Memoised per prompt."""
        from specfair.drafters.task_classifier import prompt_features

        key = (getattr(prompt, "id", None), getattr(prompt, "turns", prompt))
        if key not in self._routes:
            x = prompt_features(self.router.for_task(None), self.tokenizer, [prompt],
                                self.classifier.layer, self.classifier.max_tokens)
            task = self.classifier.route(x)[0]
            self._routes[key] = task if task in self.router.tasks else None
        return self._routes[key]

    def for_task(self, label: str | None) -> _Routed:
        return self.router.for_task(label)

    def plain_models(self) -> list:
        return self.router.plain_models()

    def on_build(self, fn: Callable) -> None:
        self.router.on_build(fn)

    def eval(self) -> ClassifierRoutedDrafter:
        self.router.eval()
        return self

    def __repr__(self) -> str:
        return f"ClassifierRoutedDrafter(tasks={self.tasks}, layer={self.classifier.layer})"

"""What drafts for a prompt: a *proposer* (HF's candidate generator, vLLM's proposer), reduced to
what specfair's decoders need.

``proposer.for_task(task)`` is the causal LM that drafts for a prompt of ``task`` (``None``: the
shared default); ``proposer.plain_models()`` lists the ordinary models behind it (to pack their
kernels, or to measure a cost). A plain drafter is its own proposer for every task
(:class:`ModelProposer`); :class:`specfair.drafters.router.TaskRoutedDrafter` routes by task.
Measuring code takes any drafter through :func:`as_proposer` and never branches on its kind.

A proposer that routes by a prompt's content (``ClassifierRoutedDrafter``: a task classifier)
also has ``route(prompt) -> task | None``; :func:`draft_for` asks it, and takes the prompt's
label (``prompt.task``, oracle routing) from any other proposer.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Proposer(Protocol):
    def for_task(self, task: str | None): ...

    def plain_models(self) -> list: ...


class ModelProposer:
    """One drafter model for every task."""

    def __init__(self, model) -> None:
        self.model = model

    def for_task(self, task: str | None):
        return self.model

    def plain_models(self) -> list:
        return [self.model]


def as_proposer(drafter) -> Proposer:
    """``drafter`` itself if it is a proposer, else a :class:`ModelProposer` of it."""
    return drafter if isinstance(drafter, Proposer) else ModelProposer(drafter)


def route_of(proposer: Proposer, prompt) -> str | None:
    """The task label the drafter of ``prompt`` is chosen by: ``proposer.route(prompt)`` for a
    proposer that routes by content, else the prompt's own label."""
    route = getattr(proposer, "route", None)
    return route(prompt) if callable(route) else getattr(prompt, "task", None)


def draft_for(proposer: Proposer, prompt):
    """The causal LM that drafts for ``prompt``."""
    return proposer.for_task(route_of(proposer, prompt))

"""A drafter as a proposer: plain models draft for every task, a router by task."""

from __future__ import annotations

from torch import nn

from specfair.decoding.proposer import ModelProposer, Proposer, as_proposer
from specfair.drafters.router import TaskRoutedDrafter


def test_plain_drafter_drafts_for_every_task_and_a_router_routes():
    base, code = nn.Linear(2, 2), nn.Linear(2, 2)
    plain = as_proposer(base)
    assert isinstance(plain, ModelProposer) and isinstance(plain, Proposer)
    assert plain.for_task("code") is plain.for_task(None) is base
    assert plain.plain_models() == [base]
    router = TaskRoutedDrafter(None, base=base, models={"code": code})
    assert as_proposer(router) is router
    assert router.for_task("code")._model is code and router.for_task("zh")._model is base
    assert router.plain_models() == [base, code]

"""Drafter distillation: fine-tune the drafter (never the target) on task data to close the
speed-up gap between tasks.

Public API (imported lazily):

* :class:`DistillConfig` (``config``), :func:`distill_command` (``commands``; ``specfair distill``)
* losses: :func:`token_losses`, :func:`distill_loss`, :func:`distill_loss_from_hidden`,
  :func:`acceptance`
* weighting: :class:`TaskSampler`, :func:`disparity_weights`
* data: :class:`Example`, :func:`target_response_examples`, :func:`reference_examples`,
  :func:`heldout_split`, :func:`assert_train_only`
* models: :func:`make_cheap_drafter`, :func:`prepare_student`
* training: :func:`train` -> :class:`TrainResult`; :func:`estimate_alphas`

What a trained drafter is once exported (formats, loading, routing) lives in
:mod:`specfair.drafters`.
"""

from __future__ import annotations

import importlib

_API = {
    "DistillConfig": "config",
    "distill_command": "commands",
    "build_examples": "commands",
    "token_losses": "losses",
    "distill_loss": "losses",
    "distill_loss_from_hidden": "losses",
    "acceptance": "losses",
    "TaskSampler": "weighting",
    "disparity_weights": "weighting",
    "Example": "data",
    "target_response_examples": "data",
    "reference_examples": "data",
    "heldout_split": "data",
    "assert_train_only": "data",
    "make_cheap_drafter": "cheap",
    "parse_layer_spec": "cheap",
    "prepare_student": "trainer",
    "train": "trainer",
    "TrainResult": "trainer",
    "estimate_alphas": "trainer",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f"specfair.distill.{_API[name]}"), name)
    raise AttributeError(f"module 'specfair.distill' has no attribute {name!r}")

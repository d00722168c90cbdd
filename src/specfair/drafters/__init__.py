"""What a deployed drafter is: its formats on disk, loading, and routing by task.

* ``export.py``: writes a trained drafter as a Hugging Face directory, or the per-task layout
  (``router.json``: the base drafter plus, per task, an adapter, a merged model or its top layers)
* ``load.py``: reads both back (:func:`load_drafter`, :func:`read_router`)
* ``router.py``: :class:`TaskRoutedDrafter` (by task label; per-task copies share every layer
  but their own, :func:`copy_top`) and :class:`ClassifierRoutedDrafter` (by the task router)
* ``task_classifier.py``: the task router (features, fit, files, evaluation)
* ``routing.py``: a per-task export as a proposer for bench/generate, ``--routing``

A per-task artefact of another kind (an index of each task's text) is routed the same way: the
router picks a task, the artefact of that task drafts. This package sits below ``measure``,
``backends``, ``distill`` and ``study`` (docs/ARCHITECTURE.md): it uses ``tasks``, ``models``,
``decoding`` and the JSON files of ``measure.io`` only, never the training code.
"""

"""How well can a task router tell a prompt's task? Accuracy per task on a suite's test split.

The classifier of ``specfair router train`` (:mod:`specfair.drafters.task_classifier`: logistic
regression on the base drafter's mean prompt hidden states) fitted on the TRAIN prompts and
scored on the TEST prompts, without a per-task export (so it runs before any fine-tuning):
routing accuracy, the share below the threshold (sent to the base drafter) and the confusion
matrix. A wrong route's cost in α needs the per-task drafters: the experiment's routing stage
(``specfair experiment``: :mod:`specfair.study.routing`) measures it.

    python benchmarks/router_accuracy.py --suite default --out router_default.json
    python benchmarks/router_accuracy.py --suite study --n-per-task 60 --out router_study.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from specfair.drafters.task_classifier import TaskClassifier, evaluate, prompt_features
from specfair.errors import SpecfairError
from specfair.models import DEFAULT_DRAFTER
from specfair.models.load import load_model, load_tokenizer
from specfair.tasks import load_suite, sample_per_task
from specfair.tasks.study import load_study_suite


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drafter", default=DEFAULT_DRAFTER)
    ap.add_argument("--suite", default="default", help="'default', 'study' or a suite TOML")
    ap.add_argument("--n-per-task", type=int, default=None, help="at most this many per split")
    ap.add_argument("--layer", type=int, default=-1, help="hidden-state layer (-1: last)")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--l2", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        suite = load_study_suite(seed=0) if args.suite == "study" else load_suite(args.suite)
        train = sample_per_task(suite.prompts("train"), args.n_per_task, seed=0)
        test = sample_per_task(suite.prompts("test"), args.n_per_task, seed=0)
        model, tok = load_model(args.drafter, "auto", "auto"), load_tokenizer(args.drafter)
        layer = args.layer % (model.config.num_hidden_layers + 1)
        t0 = time.perf_counter()
        x_train = prompt_features(model, tok, train, layer)
        x_test = prompt_features(model, tok, test, layer)
        secs = time.perf_counter() - t0
        clf = TaskClassifier.fit(x_train, [p.task for p in train], layer=layer, l2=args.l2,
                                 threshold=args.threshold)
        result = evaluate(clf, x_test, [p.task for p in test], copies=list(clf.tasks))
    except SpecfairError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result.update(suite=args.suite, drafter=args.drafter, layer=layer, n_train=len(train),
                  train_accuracy=clf.train["accuracy"], feature_seconds=secs)
    print(f"{'task':20s} {'n':>4s} {'accuracy':>9s} {'to base':>8s}")
    for t, d in result["tasks"].items():
        print(f"{t:20s} {d['n']:4d} {d['accuracy']:9.3f} {d['base_share']:8.3f}")
    print(f"{'all':20s} {result['n']:4d} {result['accuracy']:9.3f}   (train accuracy "
          f"{clf.train['accuracy']:.3f}; features of {len(train) + len(test)} prompts in "
          f"{secs:.0f} s)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

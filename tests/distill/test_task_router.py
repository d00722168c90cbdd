"""The task router: a classifier of a prompt's task that routes per-task drafters without labels."""

from __future__ import annotations

import json
import random

import pytest
import torch
from distill_helpers import load
from safetensors.torch import load_file, save_file

from specfair.decoding.proposer import draft_for, route_of
from specfair.drafters.export import export_drafter
from specfair.drafters.load import load_drafter
from specfair.drafters.router import ClassifierRoutedDrafter, TaskRoutedDrafter, copy_top
from specfair.drafters.task_classifier import (
    META_FILE,
    WEIGHTS_FILE,
    TaskClassifier,
    load_classifier,
    prompt_features,
)
from specfair.errors import SpecfairError
from specfair.tasks import Prompt, Suite, split_of

VOCAB = {"num": "0123456789", "abc": "abcdefghij"}


def toy_suite(per_split: int = 12, seed: int = 0) -> Suite:
    """Two tasks with disjoint vocabularies (digits vs letters), ``per_split`` prompts of each
    task in each split."""
    rng, items = random.Random(seed), []
    for task, chars in VOCAB.items():
        n = {"train": 0, "test": 0}
        while min(n.values()) < per_split:
            words = ["".join(rng.choice(chars) for _ in range(rng.randint(2, 6)))
                     for _ in range(rng.randint(3, 8))]
            p = Prompt(f"{task}-{len(items)}", task, (" ".join(words),))
            if n[split_of(p)] < per_split:
                n[split_of(p)] += 1
                items.append(p)
    return Suite("toy", items)


@pytest.fixture(scope="module")
def toy():
    return toy_suite()


@pytest.fixture(scope="module")
def fitted(tiny_pair, tok, toy):
    model = load(tiny_pair[1])
    layer = model.config.num_hidden_layers
    train, test = toy.prompts("train"), toy.prompts("test")
    x_train = prompt_features(model, tok, train, layer)
    clf = TaskClassifier.fit(x_train, [p.task for p in train], layer=layer)
    return model, clf, prompt_features(model, tok, test, layer), [p.task for p in test], x_train


def test_the_classifier_separates_two_vocabularies(fitted):
    _, clf, x_test, y_test, x_train = fitted
    assert clf.tasks == ["abc", "num"] and clf.train["accuracy"] == 1.0
    assert clf.predict(x_test) == y_test  # held-out prompts
    assert clf.route(x_test) == y_test  # confident: none falls back to the base
    # the fit is deterministic
    again = TaskClassifier.fit(x_train, clf.predict(x_train), layer=clf.layer)  # = train labels
    assert torch.equal(again.weight, clf.weight) and torch.equal(again.bias, clf.bias)
    with pytest.raises(SpecfairError, match="two tasks"):
        TaskClassifier.fit(x_train[:3], ["num"] * 3, layer=clf.layer)


def test_features_ignore_the_shared_template_prefix(tiny_pair, tok):
    """Two prompts differing only in their text differ in their features, and a prompt's
    features do not depend on the other prompts of the batch."""
    model = load(tiny_pair[1])
    a = prompt_features(model, tok, ["123", "abc"], 1)
    b = prompt_features(model, tok, ["abc"], 1)
    assert a.shape == (2, model.config.hidden_size)
    assert torch.allclose(a[1], b[0]) and not torch.allclose(a[0], a[1])


def test_save_and_load_round_trip(fitted, tmp_path):
    _, clf, x_test, *_ = fitted
    clf.save(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["format"] == "specfair-task-router/1" and meta["threshold"] == 0.5
    again = load_classifier(tmp_path)
    assert again.tasks == clf.tasks and again.layer == clf.layer
    assert torch.equal(again.predict_proba(x_test), clf.predict_proba(x_test))
    assert again.train == clf.train


def routed(tiny_pair, clf, tok, copies):
    base = load(tiny_pair[1])
    models = {t: copy_top(base, 1) for t in copies}
    return ClassifierRoutedDrafter(TaskRoutedDrafter(None, base=base, models=models), clf, tok)


def test_routing_picks_the_predicted_tasks_copy(tiny_pair, tok, fitted, toy):
    _, clf, *_ = fitted
    r = routed(tiny_pair, clf, tok, ["num", "abc"])
    for p in toy.prompts("test"):
        unlabeled = Prompt(p.id, "unknown", p.turns)  # the label is never read
        assert route_of(r, unlabeled) == p.task
        assert draft_for(r, unlabeled)._model is r.router.models[p.task]
    assert route_of(r, "12 345 6789") == "num"  # a bare user message
    assert r.plain_models() == r.router.plain_models()


def test_low_confidence_and_tasks_without_a_copy_go_to_the_base(tiny_pair, tok, fitted, toy):
    _, clf, *_ = fitted
    only_num = routed(tiny_pair, clf, tok, ["num"])
    abc = next(p for p in toy.prompts("test") if p.task == "abc")
    assert route_of(only_num, abc) is None
    assert draft_for(only_num, abc)._model is only_num.router.base
    unsure = TaskClassifier(clf.tasks, clf.layer, torch.zeros_like(clf.weight),
                            torch.zeros_like(clf.bias), clf.mean, clf.std, threshold=0.6)
    r = routed(tiny_pair, unsure, tok, ["num", "abc"])
    assert route_of(r, abc) is None  # p = 0.5 < 0.6


def test_a_router_of_another_drafter_is_refused(tiny_pair, tok, fitted):
    _, clf, *_ = fitted
    wide = TaskClassifier(clf.tasks, clf.layer, torch.zeros(2, 7), torch.zeros(2),
                          torch.zeros(7), torch.ones(7))
    with pytest.raises(SpecfairError, match="another drafter"):
        routed(tiny_pair, wide, tok, ["num"])


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: (d / META_FILE).unlink(), "missing"),
    (lambda d: (d / WEIGHTS_FILE).unlink(), "missing"),
    (lambda d: (d / META_FILE).write_text("{not json"), "unreadable JSON"),
    (lambda d: (d / WEIGHTS_FILE).write_bytes(b"\x00" * 5), "unreadable task_router"),
    (lambda d: _edit_meta(d, format="other/1"), "format"),
    (lambda d: _edit_meta(d, tasks=["num"]), "two distinct"),
    (lambda d: _edit_meta(d, threshold=2), "threshold"),
    (lambda d: _edit_meta(d, layer=-1), "layer"),
    (lambda d: _edit_tensor(d, "bias", torch.zeros(5)), "'bias' must have shape"),
    (lambda d: _edit_tensor(d, "std", None), "'std' must have shape"),
    (lambda d: _edit_tensor(d, "mean", "nan"), "not finite"),
])
def test_corrupt_router_files_are_one_error(fitted, tmp_path, damage, fragment):
    _, clf, *_ = fitted
    clf.save(tmp_path)
    damage(tmp_path)
    with pytest.raises(SpecfairError, match=fragment) as e:
        load_classifier(tmp_path)
    assert "router train" in str(e.value)


def _edit_meta(d, **kw):
    meta = json.loads((d / META_FILE).read_text())
    (d / META_FILE).write_text(json.dumps({**meta, **kw}))


def _edit_tensor(d, name, value):
    sd = load_file(str(d / WEIGHTS_FILE))
    if value is None:
        del sd[name]
    elif value == "nan":
        sd[name] = sd[name].clone().fill_(float("nan"))
    else:
        sd[name] = value
    save_file(sd, str(d / WEIGHTS_FILE))


@pytest.fixture(scope="module")
def export(tiny_pair, tok, tmp_path_factory):
    """A per-task export (top-layer copies) of the tiny drafter for the two toy tasks."""
    base = load(tiny_pair[1])
    router = TaskRoutedDrafter(None, base=base, models={t: copy_top(base, 1) for t in VOCAB})
    with torch.no_grad():  # make the copies differ from the base
        for i, m in enumerate(router.models.values()):
            m.model.norm.weight.mul_(1.5 + i)
    return export_drafter(router, tok, tmp_path_factory.mktemp("exp") / "drafter",
                          tasks=list(VOCAB))


def test_router_train_command_writes_the_router_and_its_evaluation(export, toy, capsys):
    from specfair.distill.commands import router_train_command

    result = router_train_command(export, toy, device="cpu", dtype="float32")
    assert result["accuracy"] == 1.0 and result["routing_accuracy"] == 1.0
    assert set(result["tasks"]) == set(VOCAB) and result["n"] == 24
    assert result["confusion"] == {"abc": {"abc": 12, "num": 0}, "num": {"abc": 0, "num": 12}}
    saved = json.loads((export / "router_eval.json").read_text())
    assert saved["tasks"]["num"]["routing_accuracy"] == 1.0
    assert load_classifier(export).tasks == ["abc", "num"]
    assert "num" in capsys.readouterr().out
    # the loaded export routes by it
    drafter = load_drafter(export)
    assert isinstance(drafter, TaskRoutedDrafter)
    from specfair.drafters.routing import with_routing

    r = with_routing(drafter, "classifier", export, None)
    assert isinstance(r, ClassifierRoutedDrafter)
    assert with_routing(drafter, "oracle", export, None) is drafter


def test_bench_routes_by_the_classifier_and_records_it(export, toy, tiny_pair, tmp_path):
    from specfair.distill.commands import router_train_command
    from specfair.measure.commands import bench_command

    router_train_command(export, toy, device="cpu", dtype="float32")
    kw = dict(n_per_task=1, max_new_tokens=4, dtype="float32", device="cpu", progress=False)
    bench_command(str(tiny_pair[0]), str(export), toy, tmp_path / "c", routing="classifier",
                  **kw)
    recs = [json.loads(x) for x in (tmp_path / "c" / "bench.jsonl").read_text().splitlines()]
    assert {r["settings"]["routing"] for r in recs} == {"classifier"}
    assert all(r["route"] == r["task"] for r in recs if r["mode"] == "sd")
    bench_command(str(tiny_pair[0]), str(export), toy, tmp_path / "o", **kw)
    recs = [json.loads(x) for x in (tmp_path / "o" / "bench.jsonl").read_text().splitlines()]
    assert {r["settings"]["routing"] for r in recs} == {"oracle"}
    assert not any("route" in r for r in recs)
    with pytest.raises(SpecfairError, match="routing"):  # no mixing in one directory
        bench_command(str(tiny_pair[0]), str(export), toy, tmp_path / "o", routing="classifier",
                      **kw)


def test_generate_routes_an_unlabelled_prompt(export, toy, tiny_pair, capsys):
    from specfair.distill.commands import router_train_command
    from specfair.measure.commands import generate_command

    router_train_command(export, toy, device="cpu", dtype="float32")
    capsys.readouterr()
    generate_command(str(tiny_pair[0]), "12 3456 789", drafter=str(export), max_new_tokens=4,
                     dtype="float32", device="cpu")
    assert "drafter: task num (routing: classifier)" in capsys.readouterr().err
    generate_command(str(tiny_pair[0]), "12", drafter=str(tiny_pair[1]), max_new_tokens=4,
                     dtype="float32", device="cpu")
    assert "drafter: plain (routing: none)" in capsys.readouterr().err


def test_bad_router_inputs_are_one_error_line(cli, export, tiny_pair, tmp_path):
    bench = ["bench", "--out", tmp_path / "out", "--target", tiny_pair[0], "--drafter", export,
             "--device", "cpu", "--dtype", "float32", "--routing", "classifier"]
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(export, broken)
    (broken / META_FILE).write_text("[]")
    for argv, fragment in [
        (["router", "train", "--drafter", tiny_pair[1]], "not a per-task drafter export"),
        (["router", "train", "--drafter", export, "--threshold", "1.5"], "--threshold"),
        (["router", "train", "--drafter", export, "--layer", "9"], "--layer must be in [-2, 1]"),
        (["router", "train", "--drafter", export, "--n-per-task", "0"], "--n-per-task"),
        ([*bench[:-1], "magic"], "--routing must be one of"),
        ([*bench[:6], broken, *bench[7:]], "not a valid task router"),
    ]:
        code, _, err = cli(*argv)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and fragment in lines[0], (argv, err)
        assert not (tmp_path / "out").exists()


def test_plain_drafters_ignore_the_routing(tiny_pair, export):
    from specfair.drafters.routing import check_routing

    assert check_routing("classifier", str(tiny_pair[1])) == "none"
    assert check_routing("oracle", str(export)) == "oracle"
    with pytest.raises(SpecfairError, match="--routing must be one of"):
        check_routing("random", str(tiny_pair[1]))


def test_routed_base_stays_inside_the_export(tmp_path):
    """bench/generate read a per-task export's base drafter through the checked router.json:
    a base path leading out of the export is refused before anything loads."""
    from specfair.drafters.load import ROUTER_FORMAT
    from specfair.drafters.routing import check_drafter_context, routed_base

    export = tmp_path / "export"
    export.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "config.json").write_text("{}")
    (export / "router.json").write_text(json.dumps(
        {"format": ROUTER_FORMAT, "mode": "adapter", "base": "../outside", "tasks": {}}))
    with pytest.raises(SpecfairError, match="leads outside the export"):
        routed_base(export)
    with pytest.raises(SpecfairError, match="leads outside the export"):
        check_drafter_context(4, "unused", export)

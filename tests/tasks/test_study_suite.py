"""``specfair data fetch`` and the ``study`` suite, on small files written by the tests."""

from __future__ import annotations

import hashlib
import json

import pytest
from study_data import write_study_sources

from specfair.errors import SpecfairError
from specfair.tasks import datasets
from specfair.tasks.datasets import DataFile, DataSource, fetch_sources, source_path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECFAIR_DATA", raising=False)
    return tmp_path / "home"


def _source(monkeypatch, text: bytes) -> DataSource:
    src = DataSource("toy", (DataFile("a.txt", hashlib.sha256(text).hexdigest()),),
                     license="CC0", origin="a test", mirror_dir="toy")
    monkeypatch.setitem(datasets.SOURCES, "toy", src)
    return src


def test_fetch_from_a_mirror_is_verified_and_idempotent(home, tmp_path, monkeypatch):
    _source(monkeypatch, b"hello\n")
    (tmp_path / "mirror" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / "toy" / "a.txt").write_bytes(b"hello\n")
    said: list[str] = []
    fetch_sources(["toy"], data_root=tmp_path / "mirror", log=said.append)
    assert source_path("toy", "a.txt").read_bytes() == b"hello\n"
    meta = json.loads((home / "data" / "toy" / "SOURCE.json").read_text())
    assert meta["license"] == "CC0"
    fetch_sources(["toy"], data_root=tmp_path / "mirror", log=said.append)
    assert "nothing to do" in said[-1]


def test_a_wrong_hash_is_refused_and_leaves_nothing(home, tmp_path, monkeypatch):
    _source(monkeypatch, b"hello\n")
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "a.txt").write_bytes(b"tampered\n")
    with pytest.raises(SpecfairError, match="sha256"):
        fetch_sources(["toy"], data_root=tmp_path / "mirror", log=lambda _: None)
    assert not (home / "data" / "toy").exists()
    assert not [p for p in (home / "data").iterdir() if p.name.startswith(".toy")]


def test_missing_and_unknown_sources_name_the_fetch_command(home):
    with pytest.raises(SpecfairError, match="specfair data fetch gsm8k"):
        source_path("gsm8k", "train.jsonl")
    with pytest.raises(SpecfairError, match="unknown data source"):
        fetch_sources(["nope"])


def test_the_study_suite_derives_every_task_and_keeps_splits_apart(home):
    from specfair.tasks.study import STUDY_TASKS, load_study_suite, text_reference_tasks

    write_study_sources(home / "data")
    suite = load_study_suite(n_per_task=20)
    assert set(suite.tasks) == {t.name for t in STUDY_TASKS if not t.extra}
    by = suite.by_task()
    assert all(len(v) == 20 for v in by.values())
    assert all(p.text.startswith("Summarize the following text") for p in by["summarization"])
    assert all("python" in p.text for p in by["code"])
    assert all(p.text.startswith("Translate into French:\nAnn has") for p in
               by["translation_en_fr"])
    assert all("in one sentence, in your own words" in p.text for p in by["summarization"])
    assert all(p.text.startswith("Translate into Japanese:\nShall we") for p in
               by["translation_en_ja"])
    assert all(p.reference.startswith("我们") for p in by["translation_en_zh"])
    assert all(p.source == "synthetic" for t in ("zh", "ja", "qa") for p in by[t])
    # one HSK sentence is in one split in every direction
    hsk: dict[str, set] = {}
    for p in suite.items:
        if p.source == "hsk":
            hsk.setdefault(p.id.split("-", 1)[1], set()).add(suite.split_of(p))
    assert all(len(s) == 1 for s in hsk.values()) and len(hsk) > 10
    math = by["math"][0]
    assert "<<" not in math.reference and "The answer is" in math.reference
    # one MGSM problem is in the same split in every language and in the en->fr task
    split = {(p.task, p.id.rsplit("-", 1)[1]): suite.split_of(p) for p in suite.items
             if p.source == "mgsm"}
    for (_task, row), s in split.items():
        assert split.get(("mgsm_zh", row), s) == s and \
            split.get(("translation_en_fr", row), s) == s
    assert "mgsm_zh" not in text_reference_tasks() and "math" in text_reference_tasks()
    for t in STUDY_TASKS:  # written by the target: MADE.json says how (tested below)
        assert t.derived and (t.source == "synthetic" or datasets.SOURCES[t.source].license)


def test_sharegpt_prompts_of_one_conversation_share_its_split(home):
    from specfair.tasks.study import load_study_suite

    write_study_sources(home / "data")
    suite = load_study_suite(n_per_task=None)
    share = [p for p in suite.items if p.source == "sharegpt"]
    splits: dict[str, set] = {}
    for p in share:
        splits.setdefault(p.id.split("-", 1)[1], set()).add(suite.split_of(p))
    assert all(len(s) == 1 for s in splits.values())
    assert {suite.split_of(p) for p in share} == {"train", "test"}
    # conversation c0 feeds chat (its question) and summarization (its answer): one group
    chat0 = suite.get("sharegpt_chat-c0")
    assert chat0.group == suite.get("sharegpt_summarization-c0").group
    # re-shared copies join the group of the conversation they repeat (question or answer);
    # a task keeps one prompt per text
    assert suite.get("sharegpt_summarization-c200").group == chat0.group
    assert "sharegpt_chat-c200" not in {p.id for p in share}
    assert suite.get("sharegpt_chat-c300").group == suite.get("sharegpt_chat-c5").group
    assert suite.get("sharegpt_chat-c1").group != chat0.group


def test_the_study_suite_lets_no_text_cross_the_split(home):
    """The suite builder's split alone keeps every training text (a train prompt, a reference
    trained on) out of the test prompts and references: the ShareGPT answer of a chat
    conversation is also a summarization prompt, and was split apart from it when prompts
    were split by their own text."""
    from specfair.tasks.split import find_leaks
    from specfair.tasks.study import load_study_suite, text_reference_tasks

    write_study_sources(home / "data")
    suite = load_study_suite(n_per_task=None)
    with_text = text_reference_tasks()
    train = {p.id: p.turns + ((p.reference,) if p.task in with_text and p.reference else ())
             for p in suite.prompts("train")}
    test = {p.id: p.turns + ((p.reference,) if p.reference else ())
            for p in suite.prompts("test")}
    assert len(train) > 100 and len(test) > 20
    assert find_leaks(train, test) == {}


def test_a_study_suite_of_some_tasks_needs_only_their_data(home):
    from specfair.tasks.study import load_study_suite

    write_study_sources(home / "data")
    (home / "data" / "gsm8k" / "train.jsonl").unlink()
    suite = load_study_suite(n_per_task=10, tasks=["chat", "qa"])
    assert set(suite.tasks) == {"chat", "qa"}
    with pytest.raises(SpecfairError, match="specfair data fetch gsm8k"):
        load_study_suite(n_per_task=10, tasks=["math"])
    with pytest.raises(SpecfairError, match="no task"):
        load_study_suite(tasks=["nope"])


def test_the_packaged_synthetic_prompts_are_clean_and_apart_from_the_real_test_prompts():
    """The packaged set the study uses: enough prompts per task, each in the task's script,
    no duplicates, none equal to a prompt of the embedded default suite (whose test prompts
    judge them), each file the one its MADE.json records."""
    from specfair.study.config import StudyConfig
    from specfair.tasks.prompt import normalize_text
    from specfair.tasks.suite_load import load_default_suite
    from specfair.tasks.synthetic import SPECS, read_synthetic

    study = StudyConfig.load("study")
    need = study.n_train + study.n_heldout + study.n_test  # what the packaged study draws
    real = {normalize_text(p.text) for p in load_default_suite().items}
    for task, spec in SPECS.items():
        got = read_synthetic(task)
        texts = [normalize_text(p.text) for p in got]
        assert len(got) >= need + 10 and len(set(texts)) == len(texts)
        assert all(spec.accept(p.text) for p in got) and not set(texts) & real


def test_synthesized_prompts_are_cleaned_filtered_deduplicated_and_recorded(home):
    from specfair.tasks.suite_load import load_default_suite
    from specfair.tasks.synthetic import read_synthetic, synthesize, write_synthetic

    real_test = load_default_suite().prompts("test", ["zh"])[0].text  # never a seed
    outs = iter([real_test, "1. 请介绍一下长城的历史。", "请介绍一下长城的历史。", "How are you?",
                 "“如何学习弹钢琴？”\n这是一个问题", "好", "请介绍一下长城的历史吧。"]
                + [f"第{i}个问题：怎样养一只{'猫狗鱼鸟兔龟'[i % 6]}{i}号？" for i in range(40)])
    calls = []

    def generate(requests, seed):
        calls.append(seed)
        assert all("1. " in r and "4. " in r for r in requests)  # 4 seed examples each
        return [next(outs) for _ in requests]

    rows, meta = synthesize("zh", 5, generate, batch_size=4)
    texts = [r["prompt"] for r in rows]
    assert texts[:2] == ["请介绍一下长城的历史。", "如何学习弹钢琴？"]  # numbering, quotes cut
    assert len(set(texts)) == 5 and all("How" not in t and t != "好" for t in texts)
    assert not any(t.endswith("吧。") for t in texts)  # a near duplicate
    assert real_test not in texts  # a real prompt of the task, though not shown as a seed
    assert meta["kept"] == 5 and meta["samples"] >= 8 and len(set(calls)) == len(calls)
    out = home / "made"
    write_synthetic("zh", rows, meta, "a-model", out)
    got = read_synthetic("zh", out)
    assert [p.text for p in got] == texts and {p.task for p in got} == {"zh"}
    made = json.loads((out / "MADE.json").read_text())
    assert made["zh.jsonl"]["model"] == "a-model" and made["zh.jsonl"]["kept"] == 5
    with pytest.raises(SpecfairError, match="does not record ja.jsonl"):
        (out / "ja.jsonl").write_text("{}\n")
        read_synthetic("ja", out)
    (out / "zh.jsonl").write_text("tampered\n")
    with pytest.raises(SpecfairError, match="changed since"):
        read_synthetic("zh", out)
    with pytest.raises(SpecfairError, match="specfair data synthesize qa"):
        read_synthetic("qa", out)
    with pytest.raises(SpecfairError, match="too many rejected"):
        synthesize("qa", 3, lambda reqs, seed: ["no question mark"] * len(reqs))


def test_synthetic_qa_keeps_one_fact_questions_only():
    """qa's recipe keeps questions answered in a word or a phrase, as the real qa prompts are;
    questions that ask for an explanation failed the real-vs-synthetic check (RESULTS)."""
    from specfair.tasks.synthetic import SPECS

    ok = SPECS["qa"].accept
    assert all(ok(q) for q in ("What is the capital city of Australia?", "Who wrote Hamlet?",
                               "How many continents are there on Earth?",
                               "In which year did the Berlin Wall fall?"))
    assert not any(ok(q) for q in (
        "Why did the Napoleonic Wars end?", "How does a battery work?",
        "What are the primary purposes of renewable energy sources?",
        "What is the primary function of a generator?", "Explain photosynthesis?",
        "What is the capital of France? And of Spain?",
        "Quelle ville est la capitale de l’Équateur ?",
        "What is the capital city of Australia"))

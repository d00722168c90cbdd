"""Suite TOML composition, sampling, category mapping, path resolution, the default suite."""

from __future__ import annotations

import gzip
import json
from collections import Counter

import pytest

from specfair.errors import SpecfairError
from specfair.tasks import (
    Prompt,
    Suite,
    describe_suite,
    load_suite,
    normalize_text,
    packaged_suites,
    sample_per_task,
    split_of,
)

CATS = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"]


def write_fixture_data(root):
    """A small copy of each upstream layout, invented here."""
    (root / "mt").mkdir(parents=True)
    with open(root / "mt" / "question.jsonl", "w", encoding="utf-8") as f:
        for i in range(40):
            cat = CATS[i % 8]
            turns = [f"{cat} question number {i}?", f"Follow up on {i}."]
            f.write(json.dumps({"question_id": 100 + i, "category": cat, "turns": turns}) + "\n")
    (root / "gsm").mkdir()
    with open(root / "gsm" / "test.jsonl", "w", encoding="utf-8") as f:
        for i in range(30):
            f.write(json.dumps({"question": f"Problem {i}: {i} + 1?", "answer": f"#### {i + 1}"}))
            f.write("\n")
    (root / "mgsm").mkdir()
    for lang, word in (("en", "Problem"), ("de", "Aufgabe"), ("ja", "問題")):
        lines = [f"{word} {i}: {i} + 1?\t{i + 1}\n" for i in range(20)]
        (root / "mgsm" / f"mgsm_{lang}.tsv").write_text("".join(lines), "utf-8")
    (root / "mine.jsonl").write_text(
        "".join(
            json.dumps({"id": f"own-{i}", "task": "chat", "prompt": f"Tell me about {i}."}) + "\n"
            for i in range(10)
        ),
        "utf-8",
    )


SUITE = """
name = "fixture"
seed = 3
test_fraction = 0.3

[sources.mt]
format = "spec_bench"
path = "data/mt/question.jsonl"
task_prefix = "mt_"
n = 3

[sources.mt_all]
format = "mt_bench"
path = "data/mt/question.jsonl"
task = "mt_bench"

[sources.gsm]
path = "data/gsm/test.jsonl"
n = 12

[sources.mgsm]
format = "mgsm"
path = "data/mgsm/mgsm_{lang}.tsv"
languages = ["de", "ja"]
n = 8

[sources.own]
format = "jsonl"
path = "data/mine.jsonl"
task_map = { chat = "talk" }

[sources.off]
path = "data/missing.jsonl"
enabled = false
"""


@pytest.fixture()
def suite_file(tmp_path):
    write_fixture_data(tmp_path / "data")
    f = tmp_path / "suite.toml"
    f.write_text(SUITE, "utf-8")
    return f


def test_suite_composition(suite_file):
    s = load_suite(suite_file)
    assert s.name == "fixture" and s.seed == 3 and s.test_fraction == 0.3
    counts = Counter(p.task for p in s.prompts())
    assert {f"mt_{c}" for c in CATS} <= set(counts)
    assert all(counts[f"mt_{c}"] == 3 for c in CATS)  # 5 per category, n = 3
    assert counts["mt_bench"] == 40  # no n: all of them
    assert counts["gsm8k"] == 12 and counts["mgsm_de"] == 8 and counts["mgsm_ja"] == 8
    assert counts["talk"] == 10
    # mt and mt_all read the same file but ids are prefixed by the source name
    assert s.get("mt_all-100").turns == ("writing question number 0?", "Follow up on 0.")
    de = next(p for p in s.prompts() if p.task == "mgsm_de")
    assert de.reference == str(int(de.id.rsplit("-", 1)[1]) + 1)
    rows = {r["task"]: r for r in describe_suite(s)}
    assert rows["mgsm_ja"]["sources"] == ["mgsm_ja"]
    assert rows["mt_writing"]["sources"] == ["mt"]
    assert all(r["n_train"] + r["n_test"] == counts[t] for t, r in rows.items())
    assert sum(r["n_test"] for r in rows.values()) == len(s.prompts("test"))
    # splits partition the suite and do not overlap
    train, test = s.prompts("train"), s.prompts("test")
    assert len(train) + len(test) == len(s) and train and test
    assert {p.id for p in train}.isdisjoint(p.id for p in test)
    s.check()
    assert s.prompts("test", tasks=["talk"]) == [p for p in test if p.task == "talk"]
    with pytest.raises(SpecfairError, match="no task"):
        s.prompts(tasks=["nope"])


def test_sampling_is_deterministic_and_seeded(suite_file, tmp_path):
    a, b = load_suite(suite_file), load_suite(suite_file)
    assert [p.id for p in a.prompts()] == [p.id for p in b.prompts()]
    c = load_suite(suite_file, seed=4)
    assert {p.id for p in c.prompts() if p.task == "gsm8k"} != {
        p.id for p in a.prompts() if p.task == "gsm8k"
    }
    # the same rows are sampled in every MGSM language (sampling keys on the English text)
    rows = {t: {p.id.split("-")[1] for p in a.prompts() if p.task == t} for t in a.tasks}
    assert rows["mgsm_de"] == rows["mgsm_ja"]
    # sampled prompts keep file order
    gsm = [int(p.id.rsplit("-", 1)[1]) for p in a.prompts() if p.task == "gsm8k"]
    assert gsm == sorted(gsm)


def test_mgsm_translations_share_the_split_of_their_english_row(suite_file):
    s = load_suite(suite_file)
    for p in s.prompts():
        if p.task.startswith("mgsm_"):
            row = int(p.id.rsplit("-", 1)[1])
            assert split_of(p, s.test_fraction) == split_of(f"Problem {row}: {row} + 1?", 0.3)


def test_sample_per_task():
    ps = [Prompt(f"x-{i}", "a" if i % 2 else "b", (f"text {i}",)) for i in range(20)]
    out = sample_per_task(ps, 3, seed=0)
    assert Counter(p.task for p in out) == {"a": 3, "b": 3}
    assert sample_per_task(ps, 3, seed=0) == out
    assert sample_per_task(ps, None) == ps
    assert sample_per_task(ps, 100) == ps


def test_overrides_and_data_root(suite_file, tmp_path):
    s = load_suite(suite_file, test_fraction=0.5, n_per_task=2)
    assert s.test_fraction == 0.5
    assert max(Counter(p.task for p in s.prompts()).values()) == 2
    # a suite elsewhere, pointed at the data by data_root
    other = tmp_path / "elsewhere" / "s.toml"
    other.parent.mkdir()
    other.write_text(SUITE, "utf-8")
    with pytest.raises(SpecfairError, match="file not found.*suite file's directory"):
        load_suite(other)
    assert len(load_suite(other, data_root=tmp_path)) == len(load_suite(suite_file))
    other.write_text('data_root = ".."\n' + SUITE, "utf-8")
    assert len(load_suite(other)) == len(load_suite(suite_file))


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[sources.a]\npath = 'data/mine.jsonl'\nbogus = 1\n", "unknown option"),
        ("colour = 'red'\n[sources.a]\npath = 'data/mine.jsonl'\n", "unknown key"),
        ("[sources.a]\npath = 'data/mine.jsonl'\nformat = 'xml'\n", "unknown format"),
        ("[sources.a]\npath = 'data/mine.jsonl'\nlanguage = 'de'\n", "do not apply"),
        ("[sources.a]\nformat = 'jsonl'\n", "give a path"),
        ("[sources.a]\npath = 'data/mine.jsonl'\nn = 'ten'\n", "wrong type"),
        ("name = 'x'\n", "no \\[sources"),
        ("[sources.a\n", "invalid TOML"),
        ("[sources.a]\npath = 'data/mgsm/mgsm_{lang}.tsv'\n", "lang"),
    ],
)
def test_bad_suite_files(suite_file, toml, message):
    bad = suite_file.parent / "bad.toml"
    bad.write_text(toml, "utf-8")
    with pytest.raises(SpecfairError, match=message):
        load_suite(bad)


def test_duplicate_ids_across_sources(suite_file):
    bad = suite_file.parent / "dup.toml"
    bad.write_text(
        "[sources.a]\npath = 'data/mine.jsonl'\n[sources.b]\npath = 'data/mine.jsonl'\n", "utf-8"
    )
    with pytest.raises(SpecfairError, match="occurs twice"):
        load_suite(bad)


def test_unknown_suite():
    with pytest.raises(SpecfairError, match="suite not found"):
        load_suite("no-such-suite")


def test_packaged_public_suite_resolves_against_cwd(tmp_path, monkeypatch):
    assert "public" in packaged_suites()
    # run from a fake project root whose ../shared/data holds fixture data
    project = tmp_path / "proj"
    project.mkdir()
    data = tmp_path / "shared" / "data"
    data.mkdir(parents=True)
    (data / "mt_bench").mkdir()
    (data / "mt_bench" / "question.jsonl").write_text(
        json.dumps({"question_id": 81, "category": "writing", "turns": ["Write.", "More."]}) + "\n",
        "utf-8",
    )
    (data / "gsm8k").mkdir()
    (data / "gsm8k" / "test.jsonl").write_text(
        json.dumps({"question": "Q zero?", "answer": "#### 0"}) + "\n", "utf-8"
    )
    (data / "mgsm").mkdir()
    for lang in ("en", "ja", "zh", "sw", "de", "fr", "ru", "th"):
        (data / "mgsm" / f"mgsm_{lang}.tsv").write_text(f"Q zero {lang}?\t0\n", "utf-8")
    (data / "humaneval").mkdir()

    with gzip.open(data / "humaneval" / "HumanEval.jsonl.gz", "wt") as g:
        g.write(json.dumps({"task_id": "HumanEval/0", "prompt": "def f():\n"}) + "\n")
    monkeypatch.chdir(project)
    s = load_suite("public")
    tasks = set(s.tasks)
    assert {"mt_bench", "gsm8k", "code"} <= tasks
    assert {f"mgsm_{x}" for x in ("ja", "zh", "sw", "de", "fr")} <= tasks
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecfairError, match="current directory.*data_root"):
        load_suite("public")
    assert len(load_suite("public", data_root=project)) == len(s)


# ----------------------------------------------------------------------------- default suite

TASKS = ["chat", "code", "math", "summarization", "qa", "translation_en", "ja", "zh", "sw"]


def test_default_suite_shape():
    s = load_suite("default")
    assert isinstance(s, Suite) and s.name == "default"
    assert set(TASKS) <= set(s.tasks) and len(s.tasks) >= 8
    ids = [p.id for p in s.prompts()]
    assert len(ids) == len(set(ids))
    texts = [normalize_text(p.turns[0]) for p in s.prompts()]
    assert len(texts) == len(set(texts)), "duplicate prompt texts in the default suite"
    for row in describe_suite(s):
        assert row["n_train"] + row["n_test"] >= 40, row
        assert row["n_train"] >= 25 and row["n_test"] >= 5, row
    for p in s.prompts():
        assert p.id.startswith(p.task + "-") and p.source == f"default/{p.task}"
        assert 0 < len(p.turns[0]) < 800
    s.check()


def test_default_suite_languages_and_summaries():
    s = load_suite("default")
    by = s.by_task()

    def share(task, lo, hi):
        return sum(any(lo <= ch <= hi for ch in p.turns[0]) for p in by[task]) / len(by[task])

    assert share("ja", "\u3040", "\u30ff") > 0.9  # kana
    assert share("zh", "\u4e00", "\u9fff") == 1.0 and share("zh", "\u3040", "\u30ff") == 0
    assert all(" " in p.turns[0] and p.turns[0].isascii() for p in by["sw"])
    for p in by["summarization"]:
        passage = p.turns[0].split("\n\n", 1)[1]
        assert len(passage.split()) <= 80 and 3 <= passage.count(". ") + 1 <= 5
    assert all(p.reference for p in by["math"])


def test_default_split_is_stable():
    # pinned: changing the prompts or the hash would silently move train/test
    s = load_suite("default")
    assert split_of(s.get("chat-001")) == split_of(s.get("chat-001").turns[0])
    again = load_suite("default")
    assert [p.id for p in s.prompts("test")] == [p.id for p in again.prompts("test")]

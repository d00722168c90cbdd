"""Readers on small fixture files written here (never the shared data)."""

from __future__ import annotations

import gzip
import json

import pytest

from specfair.errors import SpecfairError
from specfair.tasks import (
    detect_format,
    read_gsm8k,
    read_hf,
    read_humaneval,
    read_jsonl,
    read_mgsm,
    read_prompts,
    read_spec_bench,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


MT = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]},
    {"question_id": 82, "category": "coding", "turns": ["Sort a list."], "reference": ["sorted"]},
    {"question_id": 83, "category": "math", "turns": ["1+1?", "And 2+2?"]},
]


def test_spec_bench_keeps_turns_and_maps_categories(tmp_path):
    f = write_jsonl(tmp_path / "q.jsonl", MT)
    ps = read_spec_bench(f, source="mt")
    assert [p.id for p in ps] == ["mt-81", "mt-82", "mt-83"]
    assert ps[0].turns == ("Write a poem.", "Now shorter.")
    assert [p.task for p in ps] == ["writing", "coding", "math"]
    assert ps[1].reference == "sorted" and ps[0].reference is None
    assert {p.task for p in read_spec_bench(f, task="mt_bench")} == {"mt_bench"}
    mapped = read_spec_bench(f, task_map={"coding": "code"}, task_prefix="mt_")
    assert [p.task for p in mapped] == ["mt_writing", "code", "mt_math"]
    assert [p.id for p in read_spec_bench(f, include=["math"], source="x")] == ["x-83"]


def test_spec_bench_default_source_from_folder(tmp_path):
    (tmp_path / "mt_bench").mkdir()
    f = write_jsonl(tmp_path / "mt_bench" / "question.jsonl", MT)
    assert read_spec_bench(f)[0].id == "mt_bench-81"
    assert detect_format(f) == "spec_bench"


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"question_id": 1, "category": "x", "turns": ["a"]', "invalid JSON"),
        ('{"question_id": 1, "category": "x"}', "missing field 'turns'"),
        ('{"question_id": 1, "category": "x", "turns": []}', "non-empty list"),
        ('{"question_id": 1, "category": "x", "turns": "abc"}', "'turns' should be list"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_spec_bench_malformed_names_file_and_line(tmp_path, line, problem):
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps(MT[0]) + "\n\n" + line + "\n", "utf-8")
    with pytest.raises(SpecfairError) as e:
        read_spec_bench(f)
    assert f"{f}:3" in str(e.value) and problem in str(e.value)


def test_duplicate_ids_are_an_error(tmp_path):
    f = write_jsonl(tmp_path / "q.jsonl", [MT[0], MT[0]])
    with pytest.raises(SpecfairError, match="duplicate prompt id"):
        read_spec_bench(f)


def test_missing_file_is_a_clear_error(tmp_path):
    for reader in (read_spec_bench, read_gsm8k, read_mgsm, read_humaneval, read_jsonl):
        with pytest.raises(SpecfairError, match="not found"):
            reader(tmp_path / "nope" / "mgsm_xx.tsv")
    with pytest.raises(SpecfairError, match="not found"):
        read_prompts(tmp_path / "nope.jsonl")


def test_gsm8k_reference_is_final_number(tmp_path):
    f = write_jsonl(
        tmp_path / "test.jsonl",
        [
            {"question": "How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
            {"question": "How much?", "answer": "Lots.\n#### 1,234"},
        ],
    )
    ps = read_gsm8k(f, source="g")
    assert [(p.id, p.task, p.turns, p.reference) for p in ps] == [
        ("g-0", "gsm8k", ("How many?",), "7"),
        ("g-1", "gsm8k", ("How much?",), "1234"),
    ]
    assert detect_format(f) == "gsm8k"
    assert read_gsm8k(f)[0].id == f"{tmp_path.name}_test-0"


def test_gsm8k_malformed(tmp_path):
    f = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "7"}])
    with pytest.raises(SpecfairError, match=r"g\.jsonl:1: .*####"):
        read_gsm8k(f)
    f = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "#### 1"}, {"answer": "x"}])
    with pytest.raises(SpecfairError, match=r"g\.jsonl:2: missing field 'question'"):
        read_gsm8k(f)


def test_mgsm_language_from_name_and_groups_from_english(tmp_path):
    en_text = "Ann has 2 apples.\t2\nBob has 1,000 pens.\t1,000\n"
    (tmp_path / "mgsm_en.tsv").write_text(en_text, "utf-8")
    ja = tmp_path / "mgsm_ja.tsv"
    ja.write_text(
        "アンはりんごを2個持っています。\t2\nボブはペンを千本持っています。\t1000\n", "utf-8"
    )
    ps = read_mgsm(ja)
    assert [(p.id, p.task, p.reference) for p in ps] == [
        ("mgsm_ja-0", "mgsm_ja", "2"),
        ("mgsm_ja-1", "mgsm_ja", "1000"),
    ]
    assert ps[0].group == "Ann has 2 apples."
    assert read_mgsm(ja, english=False)[0].group is None
    en = read_mgsm(tmp_path / "mgsm_en.tsv")
    assert en[1].reference == "1000" and en[0].group is None
    assert detect_format(ja) == "mgsm"
    other = tmp_path / "swahili.tsv"
    other.write_text("Swali?\t5\n", "utf-8")
    assert read_mgsm(other, language="sw")[0].task == "mgsm_sw"
    with pytest.raises(SpecfairError, match="language"):
        read_mgsm(other)


def test_mgsm_wrong_column_count(tmp_path):
    f = tmp_path / "mgsm_de.tsv"
    f.write_text("Frage eins?\t1\nFrage zwei?\t2\textra\n", "utf-8")
    with pytest.raises(SpecfairError, match=r"mgsm_de\.tsv:2: expected 2 tab-separated columns"):
        read_mgsm(f)
    f.write_text("Frage?\tzwei\n", "utf-8")
    with pytest.raises(SpecfairError, match=r"mgsm_de\.tsv:1: .*not a number"):
        read_mgsm(f)


def test_mgsm_misaligned_english_file(tmp_path):
    (tmp_path / "mgsm_en.tsv").write_text("One?\t1\n", "utf-8")
    (tmp_path / "mgsm_fr.tsv").write_text("Un ?\t1\nDeux ?\t2\n", "utf-8")
    with pytest.raises(SpecfairError, match="line up"):
        read_mgsm(tmp_path / "mgsm_fr.tsv")


HE = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'def add(a, b):\n    """Add two numbers."""\n',
        "entry_point": "add",
        "canonical_solution": "    return a + b\n",
        "test": "assert add(1, 2) == 3",
    },
    {"task_id": "HumanEval/1", "prompt": "def one():\n", "entry_point": "one"},
]


def test_humaneval_gz(tmp_path):
    f = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(f, "wt", encoding="utf-8") as g:
        for r in HE:
            g.write(json.dumps(r) + "\n")
    ps = read_humaneval(f)
    assert [p.id for p in ps] == ["HumanEval-0", "HumanEval-1"]
    assert {p.task for p in ps} == {"code"}
    assert ps[0].turns[0] == (
        'Complete this Python function:\n```python\ndef add(a, b):\n    """Add two numbers."""\n```'
    )
    assert ps[0].reference == "    return a + b\n" and ps[1].reference is None
    assert detect_format(f) == "humaneval"
    plain = write_jsonl(tmp_path / "he.jsonl", HE)
    assert read_humaneval(plain, source="he")[1].id == "he-1"


def test_humaneval_bad_gzip(tmp_path):
    f = tmp_path / "HumanEval.jsonl.gz"
    f.write_bytes(b"not gzip at all")
    with pytest.raises(SpecfairError, match="cannot read"):
        read_humaneval(f)


def test_generic_jsonl(tmp_path):
    f = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"id": "a-1", "task": "chat", "prompt": "Hi there"},
            {"task": "math", "prompt": "2+2?", "reference": "4"},
            {"task": "chat", "prompt": ["First", "Second"]},
        ],
    )
    ps = read_jsonl(f)
    assert [p.id for p in ps] == ["a-1", "mine-1", "mine-2"]
    assert ps[1].reference == "4" and ps[2].turns == ("First", "Second")
    assert read_jsonl(f, task_map={"chat": "talk"})[0].task == "talk"
    assert detect_format(f) == "jsonl"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"task": "chat", "prompt": "ok"}, {"prompt": "x"}])
    with pytest.raises(SpecfairError, match=r"bad\.jsonl:2: missing field 'task'"):
        read_jsonl(bad)
    assert read_jsonl(bad, task="t")[1].task == "t"


def test_read_prompts_unknown_format(tmp_path):
    f = write_jsonl(tmp_path / "x.jsonl", [{"foo": 1}])
    with pytest.raises(SpecfairError, match="cannot tell the format"):
        read_prompts(f)
    with pytest.raises(SpecfairError, match="unknown prompt format"):
        read_prompts(f, "xml")


def test_hf_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "question": ["What is 2+2?", "Name a colour."],
            "answer": ["2+2=4\n#### 4", "red"],
            "kind": ["math", "chat"],
        }
    )
    d = tmp_path / "saved"
    ds.save_to_disk(str(d))
    ps = read_hf(d, columns={"prompt": "question", "reference": "answer", "task": "kind"})
    assert [(p.id, p.task, p.turns[0]) for p in ps] == [
        ("saved-0", "math", "What is 2+2?"),
        ("saved-1", "chat", "Name a colour."),
    ]
    ps = read_hf(
        d,
        columns={"prompt": "question", "reference": "answer"},
        task="qa",
        reference_after="####",
        source="s",
    )
    assert ps[0].reference == "4" and ps[0].id == "s-0" and ps[0].task == "qa"
    with pytest.raises(SpecfairError, match="no column 'nope'"):
        read_hf(d, columns={"prompt": "nope"}, task="t")
    with pytest.raises(SpecfairError, match="task"):
        read_hf(d, columns={"prompt": "question"})

    dd = datasets.DatasetDict({"train": ds, "test": ds.select([1])})
    d2 = tmp_path / "dict"
    dd.save_to_disk(str(d2))
    ps = read_hf(d2, split="test", columns={"prompt": "question"}, task="t")
    assert [p.turns[0] for p in ps] == ["Name a colour."]
    with pytest.raises(SpecfairError, match="choose one with split"):
        read_hf(d2, columns={"prompt": "question"}, task="t")


def test_hf_local_data_files_dir(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    d = tmp_path / "local"
    d.mkdir()
    rows = [{"text": "Hello?", "cat": "chat"}, {"text": "Bye?", "cat": "chat"}]
    write_jsonl(d / "test.jsonl", rows)
    ps = read_hf(d, split="test", columns={"prompt": "text", "task": "cat"}, source="loc")
    assert [p.id for p in ps] == ["loc-0", "loc-1"] and ps[1].turns == ("Bye?",)


def test_hf_missing_dataset(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(SpecfairError, match="cannot load dataset"):
        read_hf(str(tmp_path / "does-not-exist"), columns={"prompt": "q"}, task="t")

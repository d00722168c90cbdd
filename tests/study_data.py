"""Small files in the layout of the study suite's sources (see specfair.tasks.datasets)."""

from __future__ import annotations

import json

from specfair.tasks import datasets


def write_study_sources(data):
    """Write the files into ``data`` (``$SPECFAIR_HOME/data``) and record them as fetched."""
    assert data == datasets.data_home(), (data, datasets.data_home())
    conv = lambda i, human, answer: {  # noqa: E731
        "id": f"c{i}", "conversations": [{"from": "human", "value": human},
                                         {"from": "gpt", "value": answer}]}
    convs = []
    for i in range(30):
        convs.append(conv(i, f"What is a good name for a cat number {i}? Tell me why.",
                          f"A good name is Tom {i}. " * 40))
        convs.append(conv(100 + i, f"Write a python function that returns {i} plus one.",
                          f"def f(): return {i} + 1"))
    # re-shared copies: the same opening with another answer, another opening with an answer
    # already seen; each joins the split group of the conversation it repeats (before the last
    # conversation, which the truncation cuts)
    convs[-1:-1] = [conv(200 + i, f"What is a good name for a cat number {i}? Tell me why.",
                       f"Any name will do, even {i}. " * 40) for i in range(3)]
    convs[-1:-1] = [conv(300, "Tell me a story about a dog, please.",
                         "A good name is Tom 5. " * 40)]
    text = json.dumps(convs, indent=1)
    (data / "sharegpt").mkdir(parents=True)
    (data / "sharegpt" / "ShareGPT_V3_unfiltered_cleaned_split.json").write_text(
        text[: len(text) - 40])  # truncated like the packaged file
    (data / "hsk").mkdir()
    (data / "hsk" / "sentences.json").write_text(json.dumps(
        [{"id": f"h{i}", "hsk_level": 3, "chinese": f"我们明天一起去公园散步好吗{i}",
          "translation": {"en": f"Shall we walk in the park tomorrow {i}?"}} for i in range(30)],
        ensure_ascii=False))
    (data / "gsm8k").mkdir()
    (data / "gsm8k" / "train.jsonl").write_text("".join(
        json.dumps({"question": f"Tom has {i} apples and buys 2. How many?",
                    "answer": f"Tom has {i}+2=<<{i}+2={i + 2}>>{i + 2}.\n#### {i + 2}"}) + "\n"
        for i in range(30)))
    (data / "mgsm").mkdir()
    for lang, q in [("en", "Ann has {} pens."), ("fr", "Ann a {} stylos."),
                    ("zh", "安有{}支笔。"), ("ja", "アンはペンを{}本持っています。")]:
        (data / "mgsm" / f"mgsm_{lang}.tsv").write_text(
            "".join(f"{q.format(i)}\t{i}\n" for i in range(30)), encoding="utf-8")
    for name in ("sharegpt", "hsk", "gsm8k", "mgsm"):
        datasets.write_manifest(datasets.SOURCES[name], pinned=False)

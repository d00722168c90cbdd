"""Human-written text from Debian's documentation packages (``specfair data fetch debian_faq
debian_reference_ja debian_reference_zh``; :data:`specfair.tasks.datasets.SOURCES`): the
Debian FAQ's questions, the same 146 in English and in its Japanese and Chinese translations,
and Debian Reference's Japanese and Chinese paragraphs. Both are the packages' plain-text
renderings (``*.txt.gz``, wrapped at ~72 columns); the readers undo the wrapping.
"""

from __future__ import annotations

import re
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.tasks.readers_common import open_text

_ENTRY = re.compile(r"^( +)(\d+(?:\.\d+)+)\. (\S.*)$")  # "    3.1.1. You asked me ..."
_CHAPTER = re.compile(r"^\d+\. \S")
_TOC_LINES = 600  # the table of contents is at the top; the body repeats the headings
_CJK_PUNCT = "、。，．！？：；「」『』（）【】・"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]")


def join_wrapped(lines: list[str]) -> str:
    """Lines of one wrapped paragraph as one line: a space where either side of the break is
    ASCII (English words, commands), none between two CJK characters (the wrap split a word)
    nor after CJK punctuation (``、`` ``。`` ``？`` ..., never followed by a space)."""
    out = ""
    for line in (x.strip() for x in lines):
        if not line:
            continue
        if out and (out[-1].isascii() or line[0].isascii()) and out[-1] not in _CJK_PUNCT:
            out += " "
        out += line
    return out


def _read(path: Path) -> list[str]:
    try:
        with open_text(path) as f:
            return f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SpecfairError(f"{path}: not a readable gzip text ({e})") from None


def faq_questions(path: Path) -> dict[str, str]:
    """The FAQ's questions by section number (``"3.1.1"`` -> its text), from the table of
    contents (the same numbering in every language's rendering)."""
    lines = _read(path)[:_TOC_LINES]
    out: dict[str, list[str]] = {}
    cur, indent = None, 0
    for line in lines:
        m = _ENTRY.match(line)
        if m:
            cur, indent = m.group(2), len(m.group(1))
            if cur in out:  # the body's headings start: the contents are done
                break
            out[cur] = [m.group(3)]
        elif (cur and line.strip() and not _CHAPTER.match(line)
              and len(line) - len(line.lstrip(" ")) == indent):
            out[cur].append(line)  # the entry wrapped onto the next line
        else:
            cur = None
    if not out:
        raise SpecfairError(f"{path}: no table of contents (not the Debian FAQ's text?)")
    return {k: join_wrapped(v) for k, v in out.items()}


def cjk_paragraphs(path: Path, min_chars: int = 40, min_share: float = 0.5) -> list[str]:
    """The prose paragraphs of a Japanese or Chinese text rendering: blank-line separated
    blocks joined from their wrapped lines, at least ``min_chars`` characters, at least
    ``min_share`` of them Japanese or Chinese characters (tables, commands, URLs and listings
    fall below it)."""
    text = "\n".join(_read(path))
    out = []
    for block in re.split(r"\n[ \t]*\n", text):
        if block.lstrip().startswith(("|", "+-", "$ ", "# ")):
            continue
        para = join_wrapped(block.split("\n"))
        if len(para) >= min_chars and len(_CJK.findall(para)) >= min_share * len(para):
            out.append(para)
    return out

"""A tiny document model rendered twice: to Markdown (here) and to HTML (:mod:`.html`).

Text may use ``**bold**`` and ``` `code` ``` (the only inline markup both renderers know).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str
    kind: str = "p"  # "p" | "note" (a muted remark) | "answer" (highlighted)


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    align: list[str] = field(default_factory=list)  # "l" | "r" per column (default: r, 1st l)


@dataclass
class Figure:
    name: str  # file name under figures/
    png: bytes
    caption: str


@dataclass
class Code:
    text: str


Block = Heading | Para | Bullets | Table | Figure | Code


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def table_md(t: Table) -> str:
    align = t.align or ["l"] + ["r"] * (len(t.headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |",
             "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    out = "\n".join(lines)
    return (f"*{t.caption}*\n\n" + out) if t.caption else out


def to_markdown(blocks: list[Block], figures_dir: str = "figures") -> str:
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            parts.append(("> " + b.text) if b.kind in ("note", "answer") else b.text)
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {i}" for i in b.items))
        elif isinstance(b, Table):
            parts.append(table_md(b))
        elif isinstance(b, Figure):
            parts.append(f"![{b.caption}]({figures_dir}/{b.name})\n\n*{b.caption}*")
        elif isinstance(b, Code):
            parts.append("```\n" + b.text.rstrip() + "\n```")
    return "\n\n".join(parts) + "\n"

"""Self-contained HTML: inline CSS, figures as base64 ``data:image/png`` URIs, no external
assets, no scripts."""

from __future__ import annotations

import base64
import html as _html
import re

from specfair.report.doc import Block, Bullets, Code, Figure, Heading, Para, Table

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 max-width:1100px;margin:24px auto;padding:0 20px;color:#1d2330;line-height:1.5;font-size:15px}
h1{font-size:26px;border-bottom:2px solid #d0d7e2;padding-bottom:6px}
h2{font-size:20px;margin-top:34px;border-bottom:1px solid #e3e8ef;padding-bottom:4px}
h3{font-size:16px;margin-top:22px}
table{border-collapse:collapse;margin:8px 0 18px;font-size:13px;display:block;overflow-x:auto}
th,td{border:1px solid #d8dee8;padding:4px 8px;white-space:nowrap}
th{background:#f1f4f9;text-align:left}
td.r{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafbfd}
caption{caption-side:top;text-align:left;color:#556;font-size:12.5px;padding-bottom:4px;
 white-space:normal}
figure{margin:14px 0 24px}
figure img{max-width:100%;height:auto;border:1px solid #e3e8ef}
figcaption{color:#556;font-size:12.5px;margin-top:4px}
.note{color:#5a6270;background:#f6f7f9;border-left:3px solid #c3c9d4;padding:6px 10px}
.answer{background:#eef6ee;border-left:4px solid #3c8c4a;padding:10px 14px;font-size:16px}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:12px}
code{background:#f1f3f6;padding:0 3px;border-radius:3px}
li{margin-bottom:6px}
"""


def inline(text: str) -> str:
    """Escape, then the two inline markups: ``**bold**``, ``*italic*`` and ``code``."""
    s = _html.escape(str(text), quote=False)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", s)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return s


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(t: Table) -> str:
    align = t.align or ["l"] + ["r"] * (len(t.headers) - 1)
    out = ["<table>"]
    if t.caption:
        out.append(f"<caption>{inline(t.caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{inline(h)}</th>" for h in t.headers) + "</tr>")
    for row in t.rows:
        cells = "".join(
            f'<td class="{align[i] if i < len(align) else "r"}">{inline(c)}</td>'
            for i, c in enumerate(row))
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = f' class="{b.kind}"' if b.kind != "p" else ""
            body.append(f"<p{cls}>{inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            body.append(_table(b))
        elif isinstance(b, Figure):
            body.append(f'<figure><img alt="{_html.escape(b.caption)}" src="{data_uri(b.png)}">'
                        f"<figcaption>{inline(b.caption)}</figcaption></figure>")
        elif isinstance(b, Code):
            body.append(f"<pre>{_html.escape(b.text)}</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")

"""HTML for the Markdown the report itself writes (no third-party parser): headings, paragraphs,
``- `` lists, ``> `` quotes, pipe tables, ``<details>`` folds and the inline spans ``**bold**``,
``*italic*`` and ```code```.

It is not a general Markdown renderer: it covers exactly what :mod:`obliviate.report` and
:mod:`obliviate.report.llm` emit, so that no Markdown marker reaches a reader of the HTML report.
Everything else is escaped and shown as text.
"""

from __future__ import annotations

import html
import re

_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_PASS = re.compile(r"^</?(details|summary)>|^<details><summary>.*</summary>$")


def inline(text: str) -> str:
    """Escape, then render ``**bold**``, ``*italic*`` and ```code``` spans."""
    t = html.escape(str(text), quote=False)
    codes: list[str] = []

    def keep(m: re.Match[str]) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    t = re.sub(r"`([^`]+)`", keep, t)  # code spans first: nothing inside them is Markdown
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<i>\1</i>", t)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], t)


def _cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    parts = re.split(r"(?<!\\)\|", s)
    return [p.strip().replace("\\|", "|") for p in parts]


def to_html(markdown: str, first_table_id: str = "") -> str:
    """The HTML of a Markdown text written by the report (block by block, top to bottom);
    ``first_table_id``: an HTML id for the first table's container."""
    lines = markdown.splitlines()
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + "<br>".join(inline(x) for x in para) + "</p>")
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            flush()
            i += 1
        elif _PASS.match(s):
            flush()
            m = re.match(r"^<details><summary>(.*)</summary>$", s)
            out.append(f"<details><summary>{inline(m.group(1))}</summary>" if m else s)
            i += 1
        elif s.startswith("#"):
            flush()
            level = min(len(s) - len(s.lstrip("#")), 6)
            out.append(f"<h{level}>{inline(s[level:].strip())}</h{level}>")
            i += 1
        elif s.startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(lines[i + 1].strip()):
            flush()
            head = _cells(s)
            anchor = f" id='{html.escape(first_table_id)}'" if first_table_id else ""
            first_table_id = ""
            out.append(
                f"<div class='scroll'{anchor}><table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
            )
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            out.append("</table></div>")
        elif s.startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{inline(lines[i].strip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif s.startswith(">"):
            flush()
            quoted = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                quoted.append(lines[i].strip()[1:].strip())
                i += 1
            out.append("<blockquote>" + to_html("\n".join(quoted)) + "</blockquote>")
        else:
            para.append(s)
            i += 1
    flush()
    return "\n".join(out)


__all__ = ["inline", "to_html"]

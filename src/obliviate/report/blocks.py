"""A tiny document model rendered to both Markdown and self-contained HTML.

The report is a list of blocks (heading, paragraph, table, figure, code); figures are PNG bytes
embedded in the HTML as data URIs and written next to the Markdown.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from .markdown import inline, to_html


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    id: str = ""  # an HTML anchor (``headline`` marks the report's headline table)
    row_classes: list[str] = field(default_factory=list)  # per row: "" or "mark" (a line drawn on the table)


@dataclass
class Figure:
    name: str  # file name, e.g. "confusion_vgg16_bn.png"
    png: bytes
    caption: str = ""


@dataclass
class Code:
    text: str


@dataclass
class Raw:
    """Pre-rendered Markdown (e.g. a section from the LLM half): as-is in the Markdown report,
    rendered to HTML (:mod:`obliviate.report.markdown`) in the HTML one."""

    markdown: str
    first_table_id: str = ""  # an HTML id for its first table (``headline``)


@dataclass
class Details:
    """Blocks folded away by default (``<details>``): open on a click in the HTML, on GitHub too."""

    summary: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


Block = Heading | Para | Table | Figure | Code | Raw | Details


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def to_markdown(self, figure_dir: str = "figures") -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            out += _markdown(b, figure_dir)
        return "\n".join(out)

    def to_html(self) -> str:
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}"
            "th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
            "td{white-space:nowrap}td.text{white-space:normal;text-align:left;min-width:16em}"
            "tr.mark td{background:#fff7e0;color:#6b4e00;font-style:italic;border-top:2px solid #d9a400}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
            "p.caption{font-style:italic;margin:1em 0 0.3em}td.label{text-align:left}"
            "pre{background:#f6f6f6;padding:8px;overflow-x:auto}.scroll{overflow-x:auto;max-width:100%}"
            "blockquote{margin:0.5em 0;padding:0 1em;border-left:3px solid #ccc;color:#444}"
            "details{margin:0.5em 0 1em}summary{cursor:pointer;font-weight:600}"
            "p,li,figcaption,code{overflow-wrap:anywhere}"
            "</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for b in self.blocks:
            parts += _html(b)
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, out_dir: Path, stem: str = "report") -> tuple[Path, Path]:
        from ..utils import atomic_path, write_text_atomic

        fig_dir = out_dir / "figures"
        for b in walk(self.blocks):
            if isinstance(b, Figure):
                with atomic_path(fig_dir / b.name) as tmp:
                    tmp.write_bytes(b.png)
        md, htm = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        write_text_atomic(md, self.to_markdown())
        write_text_atomic(htm, self.to_html())
        return md, htm


def walk(blocks: list[Block]) -> list[Block]:
    """Every block, those folded in :class:`Details` included, in document order."""
    out: list[Block] = []
    for b in blocks:
        out.append(b)
        if isinstance(b, Details):
            out += walk(b.blocks)
    return out


def _markdown(b: Block, figure_dir: str) -> list[str]:
    if isinstance(b, Heading):
        return ["#" * b.level + " " + b.text, ""]
    if isinstance(b, Para):
        return [b.text, ""]
    if isinstance(b, Table):
        out = [f"*{b.caption}*", ""] if b.caption else []
        out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
        out.append("|" + "|".join("---" for _ in b.header) + "|")
        for i, row in enumerate(b.rows):
            mark = i < len(b.row_classes) and b.row_classes[i] == "mark"
            out.append("| " + " | ".join((f"*{_md_cell(c)}*" if mark and str(c) else _md_cell(c)) for c in row) + " |")
        return out + [""]
    if isinstance(b, Figure):
        out = [f"![{b.caption or b.name}]({figure_dir}/{b.name})", ""]
        return out + ([f"*{b.caption}*", ""] if b.caption else [])
    if isinstance(b, Code):
        return ["```", b.text, "```", ""]
    if isinstance(b, Raw):
        return [b.markdown, ""]
    out = [f"<details><summary>{html.escape(b.summary)}</summary>", ""]
    for inner in b.blocks:
        out += _markdown(inner, figure_dir)
    return out + ["</details>", ""]


def _html(b: Block) -> list[str]:
    if isinstance(b, Heading):
        return [f"<h{b.level}>{html.escape(b.text)}</h{b.level}>"]
    if isinstance(b, Para):
        return [to_html(b.text) if "\n- " in f"\n{b.text}" else f"<p>{inline(b.text)}</p>"]
    if isinstance(b, Table):
        anchor = f" id='{html.escape(b.id)}'" if b.id else ""
        parts = [f"<p class='caption'>{inline(b.caption)}</p>"] if b.caption else []
        parts.append(f"<div class='scroll'{anchor}><table>")
        parts.append("<tr>" + "".join(f"<th>{inline(h)}</th>" for h in b.header) + "</tr>")
        for i, row in enumerate(b.rows):
            cls = b.row_classes[i] if i < len(b.row_classes) else ""
            parts.append(
                (f"<tr class='{html.escape(cls)}'>" if cls else "<tr>") + "".join(_td(c) for c in row) + "</tr>"
            )
        return parts + ["</table></div>"]
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode()
        return [
            f"<figure><img alt='{html.escape(b.name)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{inline(b.caption)}</figcaption></figure>"
        ]
    if isinstance(b, Code):
        return [f"<pre>{html.escape(b.text)}</pre>"]
    if isinstance(b, Raw):
        return [to_html(b.markdown, b.first_table_id)]
    parts = [f"<details><summary>{inline(b.summary)}</summary>"]
    for inner in b.blocks:
        parts += _html(inner)
    return parts + ["</details>"]


_NUMBER = re.compile(r"[-+−]?(\d|\.\d)|–$|$")


def _td(cell: str) -> str:
    """A table cell: a number (``mean ± std``) right-aligned and never wrapped, a name
    left-aligned, prose (over 40 characters) wrapped."""
    text = str(cell)
    if len(text) > 40:
        return f"<td class='text'>{inline(text)}</td>"
    return f"<td>{inline(text)}</td>" if _NUMBER.match(text) else f"<td class='label'>{inline(text)}</td>"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")

"""A tiny document model rendered to both Markdown and self-contained HTML.

The report is a list of blocks (heading, paragraph, table, figure, code); figures are PNG bytes
embedded in the HTML as data URIs and written next to the Markdown.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

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


Block = Union[Heading, Para, Table, Figure, Code, Raw]


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)

    def to_markdown(self, figure_dir: str = "figures") -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            if isinstance(b, Heading):
                out += ["#" * b.level + " " + b.text, ""]
            elif isinstance(b, Para):
                out += [b.text, ""]
            elif isinstance(b, Table):
                if b.caption:
                    out += [f"*{b.caption}*", ""]
                out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
                out.append("|" + "|".join("---" for _ in b.header) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
                out.append("")
            elif isinstance(b, Figure):
                out += [f"![{b.caption or b.name}]({figure_dir}/{b.name})", ""]
                if b.caption:
                    out += [f"*{b.caption}*", ""]
            elif isinstance(b, Code):
                out += ["```", b.text, "```", ""]
            elif isinstance(b, Raw):
                out += [b.markdown, ""]
        return "\n".join(out)

    def to_html(self) -> str:
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}"
            "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
            "td{white-space:nowrap}td.text{white-space:normal;text-align:left;min-width:16em}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
            "caption{caption-side:top;text-align:left;font-style:italic;padding:4px 0}"
            "pre{background:#f6f6f6;padding:8px;overflow-x:auto}.scroll{overflow-x:auto;max-width:100%}"
            "blockquote{margin:0.5em 0;padding:0 1em;border-left:3px solid #ccc;color:#444}"
            "details{margin:0.5em 0 1em}summary{cursor:pointer}p,li,figcaption,code{overflow-wrap:anywhere}"
            "</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for b in self.blocks:
            if isinstance(b, Heading):
                parts.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
            elif isinstance(b, Para):
                parts.append(to_html(b.text) if "\n- " in f"\n{b.text}" else f"<p>{inline(b.text)}</p>")
            elif isinstance(b, Table):
                anchor = f" id='{html.escape(b.id)}'" if b.id else ""
                parts.append(f"<div class='scroll'{anchor}><table>")
                if b.caption:
                    parts.append(f"<caption>{inline(b.caption)}</caption>")
                parts.append("<tr>" + "".join(f"<th>{inline(h)}</th>" for h in b.header) + "</tr>")
                for row in b.rows:
                    parts.append("<tr>" + "".join(_td(c) for c in row) + "</tr>")
                parts.append("</table></div>")
            elif isinstance(b, Figure):
                data = base64.b64encode(b.png).decode()
                parts.append(f"<figure><img alt='{html.escape(b.name)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{inline(b.caption)}</figcaption></figure>")
            elif isinstance(b, Code):
                parts.append(f"<pre>{html.escape(b.text)}</pre>")
            elif isinstance(b, Raw):
                parts.append(to_html(b.markdown, b.first_table_id))
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, out_dir: Path, stem: str = "report") -> tuple[Path, Path]:
        from ..utils import atomic_path, write_text_atomic

        fig_dir = out_dir / "figures"
        for b in self.blocks:
            if isinstance(b, Figure):
                with atomic_path(fig_dir / b.name) as tmp:
                    tmp.write_bytes(b.png)
        md, htm = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
        write_text_atomic(md, self.to_markdown())
        write_text_atomic(htm, self.to_html())
        return md, htm


def _td(cell: str) -> str:
    """A table cell; a short one (a number, ``mean ± std``) never wraps, prose does."""
    return f"<td class='text'>{inline(cell)}</td>" if len(str(cell)) > 40 else f"<td>{inline(cell)}</td>"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


"""The report's Markdown subset renders to HTML with no Markdown marker left in the visible text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from obliviate.report.blocks import Document, Para, Raw
from obliviate.report.llm import render_llm_section
from obliviate.report.markdown import inline, to_html


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:  # type: ignore[override]
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(h: str) -> _Text:
    p = _Text()
    p.feed(h)
    return p


def test_inline_spans_and_escaping() -> None:
    assert inline("**a** and `b*c*` and *d* <x>") == "<b>a</b> and <code>b*c*</code> and <i>d</i> &lt;x&gt;"
    assert inline("2 * 3 * 4") == "2 * 3 * 4"  # a lone asterisk is not emphasis


def test_blocks_render_as_html() -> None:
    md = "\n".join(
        [
            "### Title `x`",
            "",
            "Some **bold** text",
            "on two lines.",
            "",
            "| method | a \\| b |",
            "|---|---|",
            "| relabel | 1.0 |",
            "| npo | 0.5 |",
            "",
            "- one",
            "- two `t`",
            "",
            "> quoted **q**",
            "",
            "<details><summary>Metric definitions</summary>",
            "",
            "- `k`: a key",
            "",
            "</details>",
        ]
    )
    h = to_html(md)
    p = _parse(h)
    assert p.tags.count("tr") == 3 and p.tags.count("th") == 2 and p.tags.count("td") == 4
    assert p.tags.count("li") == 3 and "blockquote" in p.tags and "details" in p.tags and "h3" in p.tags
    assert "a | b" in "".join(p.text)
    visible = "".join(p.text)
    assert not re.search(r"\*\*|`|^\s*[-|>] |\|---", visible, re.M)


def test_the_llm_section_and_list_paragraphs_are_not_raw_markdown_in_html() -> None:
    rows = [
        {
            "model": "m",
            "request": "flip",
            "method": meth,
            "seed": s,
            "metric": "forget_acc",
            "value": v,
            "direction": "lower",
        }
        for meth, v in (("original", 1.0), ("relabel", 0.0))
        for s in (0, 1)
    ]
    answers = {
        "blocks": [
            {
                "model": "m",
                "request": "flip",
                "seed": 0,
                "instruction": "Is it biased?",
                "statements": [
                    {
                        "id": "cb-1",
                        "text": "A statement.",
                        "label": "biased",
                        "target": "not biased",
                        "answers": {"relabel": {"judgement": "not biased", "text": "not biased"}},
                    }
                ],
            }
        ]
    }
    doc = Document("t", [Raw(render_llm_section(rows, answers)), Para("- first item\n- second item")])
    h = doc.to_html()
    assert "<pre" not in h
    p = _parse(h)
    visible = "".join(p.text)
    assert "relabel" in visible and "A statement." in visible
    assert p.tags.count("li") == 3 and "table" in p.tags and "blockquote" in p.tags  # 2 items + 1 definition
    assert not re.search(r"\*\*|`|^\s*[-|>] |\|---|^#+ ", visible, re.M)


def test_a_saturated_mia_efficacy_is_said_to_be_uninformative() -> None:
    from obliviate.report.render import _saturation_note

    key = "mia_efficacy/confidence"
    agg = {
        ("m", "r", "retrain"): {key: (1.0, 0.0, 3)},
        ("m", "r", "original"): {key: (0.1, 0.0, 3)},
        ("m", "r", "a"): {key: (1.0, 0.0, 3)},
        ("m", "r", "b"): {key: (0.995, 0.0, 3)},
        ("m", "r", "c"): {key: (0.6, 0.0, 3)},
    }
    doc = Document("t")
    _saturation_note(doc, agg, "m", "r", ["original", "retrain", "a", "b", "c"])
    assert len(doc.blocks) == 1 and "≥ 99 for 2 of 3 methods" in doc.blocks[0].text
    agg[("m", "r", "retrain")] = {key: (0.9, 0.0, 3)}  # the retrained model is not at the ceiling: no note
    doc = Document("t")
    _saturation_note(doc, agg, "m", "r", ["original", "retrain", "a", "b", "c"])
    assert doc.blocks == []

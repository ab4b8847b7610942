"""The documentation site: every figure on the benchmarks page names the script that regenerates it
and the result file it wrote, and both exist; the site builds in strict mode in CI (.ci/run)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"


def _sections() -> list[tuple[str, str]]:
    text = PAGE.read_text()
    parts = re.split(r"^(##+ .+)$", text, flags=re.M)
    return [(parts[i].lstrip("#").strip(), parts[i + 1]) for i in range(1, len(parts), 2)]


def test_every_figure_names_its_script_and_result() -> None:
    figures = [(title, body) for title, body in _sections() if re.search(r"\d", body) and "**Regenerate:**" in body]
    assert len(figures) >= 20
    for title, body in _sections():
        if title in ("Studies, training and the frontier", "About the frontier's records", "The report in a browser"):
            continue  # a heading over figures, and notes on them
        assert "**Regenerate:**" in body, f"{title}: no command that regenerates it"
        assert "**Result:**" in body, f"{title}: no result file (or the statement that none is kept)"


def test_every_path_the_benchmarks_page_names_exists() -> None:
    paths = set(re.findall(r"`((?:bench|src/obliviate/configs)/[^`\s]+)`", PAGE.read_text()))
    paths |= set(re.findall(r"python ((?:bench)/[^`\s]+\.py)", PAGE.read_text()))
    assert len(paths) >= 25
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"named on the benchmarks page but not in the repository: {missing}"


def test_every_docs_page_is_in_the_site_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md"))
    assert pages and all(p in nav for p in pages), [p for p in pages if p not in nav]

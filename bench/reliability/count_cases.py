"""How many bad-input and fault cases the test suites cover: every collected test item marked
``bad_input`` or ``fault`` (each parametrized case counts once), by suite and by file.

Run from the repository root: ``python bench/reliability/count_cases.py``. Prints a Markdown
table and writes ``bench/reliability/results/cases.md`` and ``cases.json``. Nothing is run: the
suites are only collected (``pytest --collect-only``), the slow ones included.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
MARKERS = ("bad_input", "fault")


class _Collector:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, set[str]]] = []

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        for it in items:
            path = Path(str(it.path)).relative_to(Path.cwd()).as_posix()
            self.items.append((path, it.nodeid, {m.name for m in it.iter_markers()}))


def collect() -> list[tuple[str, str, set[str]]]:
    c = _Collector()
    code = pytest.main(["--collect-only", "-qq", "-p", "no:cacheprovider", "-o", "addopts=", "tests"], plugins=[c])
    if code != 0:
        raise SystemExit(f"collecting the tests failed (pytest exit {code})")
    return c.items


def main() -> int:
    items = collect()
    suite = lambda path: path.split("/")[1] if path.count("/") > 1 else "top level"  # noqa: E731
    by_suite: dict[str, Counter[str]] = {}
    by_file: dict[str, Counter[str]] = {}
    for path, _node, marks in items:
        for m in MARKERS:
            if m in marks:
                by_suite.setdefault(suite(path), Counter())[m] += 1
                by_file.setdefault(path, Counter())[m] += 1
    totals = {m: sum(c[m] for c in by_suite.values()) for m in MARKERS}
    lines = [
        f"{len(items)} tests collected; **{totals['bad_input']} bad-input cases** and **{totals['fault']} fault "
        "cases** (one per collected test item, parametrized cases each counted).",
        "",
        "| suite | bad input | fault |",
        "|---|---|---|",
        *(f"| {s} | {c['bad_input']} | {c['fault']} |" for s, c in sorted(by_suite.items())),
        f"| **all** | **{totals['bad_input']}** | **{totals['fault']}** |",
        "",
        "| file | bad input | fault |",
        "|---|---|---|",
        *(f"| `{f}` | {c['bad_input']} | {c['fault']} |" for f, c in sorted(by_file.items())),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "cases.md").write_text(text)
    (HERE / "results" / "cases.json").write_text(
        json.dumps(
            {
                "tests_collected": len(items),
                "totals": totals,
                "by_suite": {s: dict(c) for s, c in sorted(by_suite.items())},
                "by_file": {f: dict(c) for f, c in sorted(by_file.items())},
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

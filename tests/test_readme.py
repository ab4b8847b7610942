"""The README's two set-up commands stay true: CI runs the second one, the first names the default study."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None, "README.md must open with a ```bash block of the two set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_two_commands_and_ci_runs_the_second() -> None:
    commands = _setup_commands()
    assert len(commands) == 2
    run, test = commands
    assert run.endswith("obliviate run") and "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci, ".ci/run must call the README's test command"


def test_readme_has_measured_figures() -> None:
    assert "PLACEHOLDER" not in (ROOT / "README.md").read_text()


def test_the_readme_python_example_runs() -> None:
    """The deletion-request example in the README is real code: it runs and prints a verdict."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start: a deletion request on your own model.*?```python\n(.*?)```", text, re.S)
    assert block is not None, "the README's deletion section needs its runnable Python example"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(block.group(1), "README.md", "exec"), {})
    out = buf.getvalue()
    # a memorising model: the guard rolls the calibrated stop back twice (utility, then still
    # recognised) and the user's own loop retrains it; the outcome leads the verdict
    first, verdict = out.splitlines()[:2]
    assert first.split(" - ")[0] in ("exact", "verified", "not verifiable")
    assert verdict.split(" — ")[0] in ("EXACT", "VERIFIED", "NOT VERIFIABLE AT THIS SIZE")
    assert "membership audit" in verdict and "tolerance" in verdict


def test_the_readme_is_a_product_page() -> None:
    """A product page, not a lab notebook: short, the quick starts in place, results on the docs site."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for heading in (
        "## Install",
        "## Quick start: a study",
        "## Quick start: a deletion request on your own model",
        "## Quick start: a language model",
        "## What is in the box",
        "## Headline figures",
    ):
        assert heading in text
    assert max(len(line) for line in text.splitlines()) < 400  # no lab-notebook table rows
    assert "EMNLP 2025" in text  # the name clash is said


def test_nothing_tracked_cites_an_issue_number() -> None:
    """Issues live outside the repository: say what was asked, not its number."""
    import subprocess

    if not (ROOT / ".git").exists():
        import pytest

        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "grep", "-n", "-I", "-i", "-E", r"\bissues? ?#?[0-9]+\b", "--", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    hits = [line for line in out.splitlines() if not line.startswith("tests/test_readme.py:")]
    assert not hits, "\n".join(hits[:20])

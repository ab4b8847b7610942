"""Untrusted study files: plain YAML only, within a size and an expansion budget, and a study name
that can only name a folder under runs/ — each refused before anything is built, with the line
and what is allowed, through the Python API and the CLI (exit 2, no traceback)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from obliviate.cli import main
from obliviate.study import StudySpecError, load_study
from obliviate.study.yamlio import MAX_BYTES, YAMLInputError, load_yaml

STUDY = (
    "name: {name}\ndataset: {{name: digits}}\nmodels: [small_cnn]\n"
    "requests: [{{kind: class, classes: ['3']}}]\nmethods: [original]\n"
)
# 279 bytes that expand to over a million values under yaml.safe_load
BOMB = (
    "".join(
        f"{k}: &{k} [{', '.join([f'*{p}'] * 10 if p else ['x'] * 10)}]\n"
        for p, k in zip(["", "a", "b", "c", "d"], "abcde")
    )
    + "description: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
)


def test_plain_yaml_and_aliases_within_budget_read_as_before() -> None:
    text = "base: &b {lr: 0.1, epochs: 2}\nfirst: *b\nsecond: {<<: *b, lr: 0.2}\n"
    assert load_yaml(text, "t.yaml") == {
        "base": {"lr": 0.1, "epochs": 2},
        "first": {"lr": 0.1, "epochs": 2},
        "second": {"lr": 0.2, "epochs": 2},
    }
    assert load_yaml("", "t.yaml") is None


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "text, match",
    [
        (BOMB, r"expands to 1,234,573 values \(aliases of aliases\); at most 100,000"),
        ("x: !!python/object/apply:os.system ['echo hi']\n", r"line 1: .*python/object/apply.*only plain YAML"),
        ("a: 1\nb: !custom 3\n", r"line 2: .*'!custom'"),
        ("a: [1,\n", r"not valid YAML, line 2"),
        ("a: &a [*a]\n", "an alias refers to itself"),
    ],
)
def test_unsafe_or_broken_yaml_is_refused_with_its_line(text: str, match: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(YAMLInputError, match=match):
        load_yaml(text, "s.yaml")
    assert time.perf_counter() - t0 < 5  # refused from the node graph, before anything expands


@pytest.mark.bad_input
def test_the_error_quotes_the_path_never_the_contents(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("secret_token_line: [unclosed\n")
    with pytest.raises(StudySpecError) as e:
        load_study(f)
    assert str(f) in str(e.value) and "secret_token_line" not in str(e.value)
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * MAX_BYTES + "\n")
    with pytest.raises(StudySpecError, match=r"bytes; a YAML input may hold at most"):
        load_study(big)
    with pytest.raises(StudySpecError, match="is not a regular file"):
        load_study(tmp_path)


@pytest.mark.bad_input
@pytest.mark.parametrize("name", ["../../../x", "/tmp/x", "a/b", ".hidden", "x" * 101, "two words"])
def test_a_study_name_is_a_slug(name: str, tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # where runs/NAME would go without --out
    f = tmp_path / "s.yaml"
    f.write_text(STUDY.format(name=repr(name)))
    with pytest.raises(StudySpecError, match=r"name: .* is not a slug"):
        load_study(f)
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err
    assert "is not a slug" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"] and not Path("/tmp/x").exists()


@pytest.mark.bad_input
def test_the_cli_refuses_a_bomb_and_a_tag_in_a_study_file(tmp_path: Path, capsys: Any) -> None:
    for text, what in (
        (STUDY.format(name="ok") + BOMB.replace("description", "notes"), "aliases of aliases"),
        (STUDY.format(name="ok") + "notes: !!python/name:os.system\n", "only plain YAML"),
    ):
        f = tmp_path / "s.yaml"
        f.write_text(text)
        assert main(["run", str(f)]) == 2
        err = capsys.readouterr().err
        assert what in err and "Traceback" not in err

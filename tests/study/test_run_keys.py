"""Content-addressed runs (one pipeline for every task): every input that decides a result is in its key.

Each test changes one key input and asserts that the affected runs are recomputed — and that the
others are not; an ids file edited in place with the same count is a new request; a method removed
from the spec is gone from the report and its record moved to ``superseded/`` (and back when asked
for again)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from obliviate.api import run_study
from obliviate.study import parse_study
from obliviate.testing import RecordingProgress

BASE: dict[str, Any] = {
    "name": "keys",
    "dataset": {"name": "digits", "train_per_class": 40, "test_per_class": 20},
    "models": [{"name": "small_cnn", "kwargs": {"width": 0.25}}],
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "crop_pad": 1, "flip": False},
    "requests": [{"kind": "class", "classes": ["3"]}],
    "methods": ["original", {"name": "finetune", "config": {"epochs": 0.5}}],
    "metrics": ["accuracy", "loss"],
    "seeds": [0],
    "device": "cpu",
}


Recorder = RecordingProgress


def run(raw: dict[str, Any], out: Path, cache: Path) -> Recorder:
    rec = Recorder()
    run_study(parse_study(raw), out, cache_dir=cache, progress=rec)
    return rec


def changed(**over: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    for path, v in over.items():
        node = raw
        *head, last = path.split("__")
        for h in head:
            node = node[h]
        node[last] = v
    return raw


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out, cache = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("cache")
    first = run(BASE, out, cache)
    assert first.ran() == {"original", "finetune"} and first.trained() == 2
    again = run(BASE, out, cache)
    assert again.ran() == set() and again.trained() == 0  # exact key match: nothing recomputed
    return out, cache


@pytest.mark.parametrize(
    "over, ran, trained",
    [
        ({"methods": ["original", {"name": "finetune", "config": {"epochs": 0.25}}]}, {"finetune"}, 0),  # method config
        ({"train__lr": 0.04}, {"original", "finetune"}, 2),  # training config
        (
            {
                "recipe": "airbench_quick",
                "models": [{"name": "small_cnn", "kwargs": {"width": 0.25}}],
                "train": {"epochs": 1, "batch_size": 64, "crop_pad": 1, "flip": False},
            },
            {"original", "finetune"},
            2,
        ),  # recipe
        ({"validation_fraction": 0.1}, {"original", "finetune"}, 0),  # evaluation rows
        ({"eval": {"retain_max": 100}}, {"original", "finetune"}, 0),  # eval.*
        ({"metrics": ["accuracy"]}, {"original", "finetune"}, 0),  # metric list
        ({"dataset__train_per_class": 41}, {"original", "finetune"}, 2),  # dataset content
        ({"seeds": [1]}, {"original", "finetune"}, 2),  # seed
        ({"requests": [{"kind": "class", "classes": ["4"]}]}, {"original", "finetune"}, 1),  # request
        ({"models": [{"name": "small_cnn", "kwargs": {"width": 0.3}}]}, {"original", "finetune"}, 2),  # model spec
    ],
)
def test_each_key_input_recomputes(
    done: tuple[Path, Path], tmp_path: Path, over: dict[str, Any], ran: set[str], trained: int
) -> None:
    out, cache = done
    work = tmp_path / "out"
    import shutil

    shutil.copytree(out, work)
    rec = run(changed(**over), work, cache)
    assert rec.ran() == ran, rec.lines
    assert rec.trained() == trained, rec.lines
    # and the folder's report now holds only the new spec's records
    study = json.loads((work / "study.json").read_text())
    keys = {u["key"] for g in study["plan"]["groups"] for u in g["units"]}
    assert {p.stem for p in (work / "runs").glob("*.json")} == keys


def test_code_salt_is_part_of_every_key(
    done: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from obliviate.study import keys

    out, cache = done
    shutil.copytree(out, tmp_path / "out")
    real = keys.code_salt
    monkeypatch.setattr(keys, "code_salt", lambda *parts: real(*parts) + "-fixed-fit")
    rec = run(BASE, tmp_path / "out", cache)
    assert rec.ran() == {"original", "finetune"} and rec.trained() == 2  # models retrained by the new code


def test_record_format_is_part_of_the_key(
    done: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from obliviate.study import keys

    out, cache = done
    shutil.copytree(out, tmp_path / "out")
    monkeypatch.setattr(keys, "RECORD_FORMAT", keys.RECORD_FORMAT + 1)
    assert run(BASE, tmp_path / "out", cache).ran() == {"original", "finetune"}


def test_ids_file_edited_in_place_with_the_same_count(tmp_path: Path) -> None:
    ids = tmp_path / "request.txt"
    ids.write_text("1\n2\n3\n")
    raw = changed(requests=[{"kind": "ids", "path": str(ids)}])
    raw["dataset"] = {"name": "digits"}
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert run(raw, out, cache).ran() == {"original", "finetune"}
    assert run(raw, out, cache).ran() == set()
    ids.write_text("1\n2\n4\n")  # same count, same file name, other person
    rec = run(raw, out, cache)
    assert rec.ran() == {"original", "finetune"} and rec.trained() == 1  # a new retrained reference
    # the same ids under another file name are the same request: nothing recomputed
    other = tmp_path / "renamed.txt"
    other.write_text("4\n2\n1\n")
    renamed = changed(requests=[{"kind": "ids", "path": str(other)}])
    renamed["dataset"] = {"name": "digits"}
    assert run(renamed, out, cache).ran() == set()


def test_removed_method_leaves_the_report_and_comes_back_from_superseded(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    run(BASE, out, cache)
    assert "finetune" in (out / "report.md").read_text()
    rec = run(changed(methods=["original"]), out, cache)
    assert rec.ran() == set()
    assert any("moved to" in ln and "superseded" in ln for ln in rec.lines)
    md = (out / "report.md").read_text()
    assert "finetune" not in md
    assert {json.loads(p.read_text())["method"] for p in (out / "runs").glob("*.json")} == {"original"}
    assert {json.loads(p.read_text())["method"] for p in (out / "superseded" / "runs").glob("*.json")} == {"finetune"}
    rows = (out / "results.csv").read_text()
    assert "finetune" not in rows
    back = run(BASE, out, cache)
    assert back.ran() == set() and any("restored" in ln for ln in back.lines)  # exact key: reused, not rerun
    assert "finetune" in (out / "report.md").read_text()


def test_a_label_is_not_a_key(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    run(BASE, out, cache)
    relabelled = changed(methods=["original", {"name": "finetune", "config": {"epochs": 0.5}, "label": "ft"}])
    # the label is a display name: same method, same config, same key: renamed, not recomputed
    rec = run(relabelled, out, cache)
    assert rec.ran() == set()
    assert {json.loads(p.read_text())["method"] for p in (out / "runs").glob("*.json")} == {"original", "ft"}
    assert "| ft |" in (out / "report.md").read_text()


@pytest.mark.bad_input
def test_the_same_run_twice_in_one_spec_is_refused(tmp_path: Path) -> None:
    raw = changed(requests=[{"kind": "class", "classes": ["3"]}, {"kind": "class", "classes": ["3"]}])
    with pytest.raises(ValueError, match="asks for the same run twice"):
        run(raw, tmp_path / "out", tmp_path / "cache")
    # a default written out is the same model, not a new one (same key)
    out, cache = tmp_path / "o2", tmp_path / "c2"
    run(BASE, out, cache)
    assert run(changed(eval={"batch_size": 512}), out, cache).ran() == set()


@pytest.mark.bad_input
def test_a_folder_from_before_content_keys_says_so(tmp_path: Path) -> None:
    from obliviate.report import render_report

    (tmp_path / "study.json").write_text(json.dumps({"name": "old"}))
    with pytest.raises(RuntimeError, match="written before content-addressed runs"):
        render_report(tmp_path)


def test_a_methods_helper_modules_are_part_of_its_key() -> None:
    """A change to the calibrated stop, the retain fine-tune or the BN policy must rerun the methods
    that use them: their files are in the method's code salt, and only in theirs."""
    from obliviate.methods import METHODS
    from obliviate.study.keys import method_sources

    def files(name: str) -> tuple[str, ...]:
        return method_sources(type(METHODS.get(name)()))

    assert {"methods/calibrated_neggrad.py", "methods/neggrad_plus.py", "methods/calibrate.py", "methods/bn.py"} <= set(
        files("calibrated_neggrad")
    )
    assert {"methods/ct.py", "methods/finetune.py", "methods/calibrate.py"} <= set(files("ct"))
    assert "methods/calibrate.py" not in files("ssd") and "methods/finetune.py" not in files("ssd")
    assert "methods/bn.py" in files("ssd")

    class Outside:  # a user's method: no package files (its source text keys it instead)
        pass

    assert method_sources(Outside) == ()

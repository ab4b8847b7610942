"""``auto`` and the frontier's candidates under the guard, on a study's own cached models: a tiny
digits study stands in for the memorising frontier (the script reads any study file and cache)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import load_bench_script

from obliviate.cli import main as cli

STUDY = """name: tiny-memorise
dataset: {name: digits}
models: [{name: small_cnn, kwargs: {width: 0.5}}]
train: {epochs: 4, batch_size: 64}
requests: [{kind: random, fraction: 0.1}, {kind: class, classes: ['3']}]
methods:
  - original
  - retrain
  - {name: salun, label: salun_one_epoch, kinds: [random, ids], config: {epochs: 1}}
seeds: [0]
validation_fraction: 0.2
audit: {references: 2}
metrics: [accuracy, gap_to_retrain]
"""


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("memo")
    spec = root / "study.yaml"
    spec.write_text(STUDY)
    assert cli(["run", str(spec), "--out", str(root / "out"), "--cache", str(root / "cache"), "-q"]) == 0
    return spec, root / "cache"


@pytest.fixture(scope="module")
def script() -> Any:
    return load_bench_script("auto_on_memorise")


def test_auto_and_each_candidate_are_measured_against_the_studys_retrained_models(
    script: Any, studied: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, cache = studied
    out = tmp_path / "auto.json"
    argv = ["--config", str(spec), "--cache", str(cache), "--seeds", "0", "--candidates", "salun_one_epoch"]
    assert script.main([*argv, "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    # the sample-level candidate is not run on the class request, which auto sends to SSD
    assert [(r["request"], r["entry"]) for r in rows] == [
        ("random:0.1", "auto"),
        ("random:0.1", "salun_one_epoch"),
        ("class:3", "auto"),
    ]
    auto, salun, auto_class = rows
    assert auto["attempts"] and auto["attempts"][0]["method"] == "calibrated_neggrad"
    assert salun["attempts"][0]["method"] == "salun"
    assert auto_class["attempts"][0]["method"] == "ssd"
    for r in rows:
        assert r["outcome"] in ("verified", "not verifiable", "refused"), r  # never "exact": fallback refuse
        assert all(a["passed"] or a["failures"] for a in r["attempts"])  # a rolled-back attempt says why
        if r["outcome"] == "refused":
            assert "measured" not in r and not any(a["passed"] for a in r["attempts"])
            continue
        m = r["measured"]
        # doing nothing and the noise floor are measured against the same retrained model
        assert m["gap"] >= 0 and m["gap_doing_nothing"] > 0 and m["noise_floor"] >= 0
        assert 0.0 <= m["lira_auc"] <= 1.0 and 0.0 <= m["lira_auc_doing_nothing"] <= 1.0
    # rerunning one kind replaces that kind's rows and keeps the others
    kept = {"request": "random:0.1", "seed": 0, "entry": "auto", "outcome": "marker", "attempts": []}
    out.write_text(json.dumps({"seeds": [0], "rows": [kept, salun]}))
    assert script.main([*argv, "--kinds", "class", "--threads", "1", "--out", str(out)]) == 0
    again = json.loads(out.read_text())["rows"]
    assert [(r["request"], r["entry"]) for r in again] == [
        ("random:0.1", "auto"),
        ("random:0.1", "salun_one_epoch"),
        ("class:3", "auto"),
    ]
    assert again[0]["outcome"] == "marker" and again[2]["attempts"][0]["method"] == "ssd"


@pytest.mark.bad_input
def test_an_unknown_candidate_or_a_seed_the_frontier_never_trained_is_refused(
    script: Any, studied: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, cache = studied
    argv = ["--config", str(spec), "--cache", str(cache)]
    with pytest.raises(SystemExit):
        script.main([*argv, "--candidates", "salun_typo"])
    err = capsys.readouterr().err
    assert "salun_typo" in err and "salun_one_epoch" in err  # what was wrong and what is allowed
    with pytest.raises(SystemExit, match="not in the cache"):
        script.main([*argv, "--seeds", "5", "--candidates", "salun_one_epoch", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()

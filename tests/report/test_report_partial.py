"""`obliviate report` on a study that is still running or was interrupted: study.json is written
before any training, so the report renders from whatever has finished."""

from __future__ import annotations

import json
from pathlib import Path

from obliviate.cli import main

STUDY = (
    "name: s\ndataset: digits\nmodels: [{name: small_cnn, kwargs: {width: 0.25}}]\n"
    "train: {epochs: 2, batch_size: 64, lr: 0.05}\nrequests: [{kind: class, classes: ['3']}]\n"
    "methods: [original, retrain, {name: finetune, config: {epochs: 1}}]\nseeds: [0, 1]\n"
)


def test_report_renders_a_partial_study(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    study = tmp_path / "s.yaml"
    study.write_text(STUDY)
    out = tmp_path / "o"
    assert main(["run", str(study), "--out", str(out), "--cache", str(tmp_path / "c"), "-q"]) == 0
    plan = json.loads((out / "study.json").read_text())
    assert plan["name"] == "s"
    # as if interrupted during seed 1: its finetune run never finished
    victim = next(
        p
        for p in (out / "runs").glob("*.json")
        if json.loads(p.read_text())["method"] == "finetune" and json.loads(p.read_text())["seed"] == 1
    )
    victim.unlink()
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 1 | finetune |"))
    assert " ± " not in row.split("|")[4]  # its gap is seed 0's alone: one value, no spread
    assert "Closest to retraining: **finetune**" in md
    # interrupted before the first run finished: the plan alone still renders
    for p in (out / "runs").glob("*.json"):
        p.unlink()
    assert main(["report", str(out)]) == 0
    assert "No finished runs yet." in (out / "report.md").read_text()

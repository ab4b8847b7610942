"""The TensorBoard export: one run per finished record, every metric a scalar, the inputs as HParams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorboard")


def test_export_writes_every_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from obliviate.cli import main

    study = tmp_path / "s.yaml"
    study.write_text(
        "name: s\ndataset: digits\nmodels: [{name: small_cnn, kwargs: {width: 0.25}}]\n"
        "train: {epochs: 2, batch_size: 64, lr: 0.05}\nrequests: [{kind: class, classes: ['3']}]\n"
        "methods: [original, retrain, {name: finetune, config: {epochs: 1}}]\nseeds: [0]\n"
    )
    out = tmp_path / "o"
    assert main(["run", str(study), "--out", str(out), "--cache", str(tmp_path / "c"), "-q"]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--tensorboard", str(tmp_path / "tb")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    dirs = sorted({p.parent for p in (tmp_path / "tb").rglob("events.out.tfevents.*")})
    methods = sorted({d.parent.name for d in dirs if d.name == "seed_0"})
    assert methods == ["finetune", "original", "retrain"]
    ea = EventAccumulator(str(next(d for d in dirs if d.parent.name == "finetune" and d.name == "seed_0")))
    ea.Reload()

    rec = next(
        json.loads(p.read_text())
        for p in (out / "runs").glob("*.json")
        if json.loads(p.read_text())["method"] == "finetune"
    )
    assert ea.Scalars("gap/avg")[0].value == pytest.approx(rec["values"]["gap/avg"], rel=1e-6)
    tags = ea.Tags()["scalars"]
    assert {t for t in tags if not t.startswith("hparam/")} == set(rec["values"])  # every metric, nothing else
    assert "hparam/gap/avg" in tags  # the HParams tab's headline metrics

"""The Python doors ``obliviate.train`` and ``obliviate.evaluate``: what the CLI calls, and the
checkpoint provenance they write and read (one module, :mod:`obliviate.models.provenance`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import obliviate
from obliviate.cli import main
from obliviate.models import read_meta
from obliviate.models.provenance import DataProvenanceError
from obliviate.training import TrainConfig

FAST = {"epochs": 3, "batch_size": 64, "crop_pad": 1, "flip": False}


def test_train_then_evaluate_through_the_python_doors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = obliviate.train(
        "small_cnn",
        "digits",
        tmp_path / "ref",
        forget="3",
        train_config=FAST,
        model_kwargs={"width": 0.5},
        train_per_class=60,
        test_per_class=30,
    )
    assert res.checkpoint.is_file() and res.steps > 0 and 0.3 < res.test_accuracy <= 1.0
    meta = read_meta(res.checkpoint)
    assert meta["dataset_loader"] == "digits" and len(meta["dataset_fingerprint"]) == 20
    assert meta["subset"] == {"train_per_class": 60, "test_per_class": 30}
    assert meta["train"]["epochs"] == 3 and meta["request"] is not None

    report = obliviate.evaluate(res.checkpoint)
    assert set(report["splits"]) == {"test", "forget", "retain", "test_forget", "test_retain"}
    assert report["splits"]["test"]["n"] == 300 and report["forget_classes"] == ["3"]
    assert report["splits"]["forget"]["accuracy"] < 0.2  # never saw class 3
    assert report["splits"]["test"]["accuracy"] == pytest.approx(res.test_accuracy)

    # the CLI is a door onto the same function: the same numbers
    assert main(["evaluate", str(res.checkpoint), "--json", str(tmp_path / "ev.json")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "ev.json").read_text()) == json.loads(json.dumps(report))


@pytest.mark.bad_input
def test_a_train_config_and_a_recipe_are_not_both_taken(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="recipe .* or a TrainConfig, not both"):
        obliviate.train("small_cnn", "digits", tmp_path / "m", recipe="resnet18_sgd", train_config=TrainConfig())
    with pytest.raises(ValueError, match=r"no_such_field.*TrainConfig.*allowed"):
        obliviate.train("small_cnn", "digits", tmp_path / "m", train_config={"no_such_field": 1})


@pytest.mark.bad_input
def test_other_data_is_refused_unless_allowed(tmp_path: Path) -> None:
    from obliviate.data import load_dataset

    res = obliviate.train(
        "small_cnn",
        "digits",
        tmp_path / "m",
        train_config={**FAST, "epochs": 1},
        model_kwargs={"width": 0.5},
        train_per_class=30,
        test_per_class=20,
    )
    ds = load_dataset("digits")
    folder = tmp_path / "edited"
    folder.mkdir()
    imgs = ds.train_images.permute(0, 2, 3, 1).numpy().copy()
    imgs[0] = 255 - imgs[0]  # one image edited: another dataset
    np.savez(folder / "train.npz", images=imgs, labels=ds.train_labels.numpy())
    np.savez(folder / "test.npz", images=ds.test_images.permute(0, 2, 3, 1).numpy(), labels=ds.test_labels.numpy())
    with pytest.raises(DataProvenanceError, match="is not the data this model was trained on"):
        obliviate.evaluate(res.checkpoint, dataset=str(folder), train_per_class=30, test_per_class=20)
    report = obliviate.evaluate(
        res.checkpoint, dataset=str(folder), train_per_class=30, test_per_class=20, allow_other_data=True
    )
    assert report["splits"]["test"]["n"] == 200

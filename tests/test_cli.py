"""The thin CLI: list, describe, train, evaluate, run, report."""

from __future__ import annotations

import json

import pytest

from obliviate.cli import main


def test_list_and_describe(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["list", "models", "resnet*"]) == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "resnet9" in out and "vgg16_bn" not in out
    assert main(["list", "methods"]) == 0
    assert "retrain" in capsys.readouterr().out
    assert main(["list", "metrics"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["list", "datasets"]) == 0
    assert "cifar10" in capsys.readouterr().out
    assert main(["describe", "finetune"]) == 0
    out = capsys.readouterr().out
    assert "epochs" in out and "reference:" in out and "η" in out


def test_unknown_name_suggests(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["describe", "finetun"]) == 2
    assert "Did you mean 'finetune'" in capsys.readouterr().err


def test_train_evaluate_round_trip(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ck = tmp_path / "ret"
    assert main(["train", "--dataset", "digits", "--model", "small_cnn", "--width", "0.5", "--epochs", "5",
                 "--train-json", '{"batch_size": 64, "crop_pad": 1, "flip": false}', "--forget", "3", "--out", str(ck), "-q"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["test_accuracy"] > 0.5
    assert main(["evaluate", str(ck), "--json", str(tmp_path / "ev.json")]) == 0
    out = capsys.readouterr().out
    assert "forget" in out and "confusion" in out
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert set(ev["splits"]) == {"test", "forget", "retain", "test_forget", "test_retain"}
    # the retrained reference never saw class 3
    assert ev["splits"]["forget"]["accuracy"] < 0.2
    assert ev["splits"]["retain"]["accuracy"] > 0.5
    assert len(ev["splits"]["test"]["confusion"]) == 10


def test_run_with_bad_study_names_the_field(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "s.yaml"
    f.write_text("name: x\ndataset: {name: digits}\nmodels: [small_cnn]\nrequests: [{kind: class, classes: ['3']}]\n"
                 "methods: [original, {name: finetune, config: {epochs: -1}}]\n")
    assert main(["run", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "methods[1].config.epochs: FinetuneConfig.epochs must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["run", "no-such-preset"]) == 2
    assert "presets:" in capsys.readouterr().err


@pytest.mark.parametrize("what", ["presets"])
def test_list_presets(what, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["list", what]) == 0
    assert "default" in capsys.readouterr().out


def test_run_seeds_override(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "s.yaml"
    f.write_text("name: x\ndataset: {name: digits}\nmodels: [{name: small_cnn, kwargs: {width: 0.5}}]\n"
                 "train: {epochs: 1, batch_size: 128}\nrequests: [{kind: class, classes: ['3']}]\n"
                 "methods: [original]\nseeds: [0, 1, 2]\n")
    assert main(["run", str(f), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--seeds", "4", "-q"]) == 0
    runs = list((tmp_path / "o" / "runs").glob("*.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["seed"] == 4
    assert main(["run", str(f), "--out", str(tmp_path / "p"), "--seeds", "1", "1"]) == 2
    assert "--seeds must be distinct" in capsys.readouterr().err

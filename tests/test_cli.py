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


@pytest.mark.bad_input
def test_unknown_name_suggests(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["describe", "finetun"]) == 2
    assert "Did you mean 'finetune'" in capsys.readouterr().err


def test_train_evaluate_round_trip(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ck = tmp_path / "ret"
    assert (
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--model",
                "small_cnn",
                "--width",
                "0.5",
                "--epochs",
                "5",
                "--train-json",
                '{"batch_size": 64, "crop_pad": 1, "flip": false}',
                "--forget",
                "3",
                "--out",
                str(ck),
                "-q",
            ]
        )
        == 0
    )
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


@pytest.mark.bad_input
def test_run_with_bad_study_names_the_field(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "s.yaml"
    f.write_text(
        "name: x\ndataset: {name: digits}\nmodels: [small_cnn]\nrequests: [{kind: class, classes: ['3']}]\n"
        "methods: [original, {name: finetune, config: {epochs: -1}}]\n"
    )
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
    f.write_text(
        "name: x\ndataset: {name: digits}\nmodels: [{name: small_cnn, kwargs: {width: 0.5}}]\n"
        "train: {epochs: 1, batch_size: 128}\nrequests: [{kind: class, classes: ['3']}]\n"
        "methods: [original]\nseeds: [0, 1, 2]\n"
    )
    assert (
        main(["run", str(f), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c"), "--seeds", "4", "-q"]) == 0
    )
    runs = list((tmp_path / "o" / "runs").glob("*.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["seed"] == 4
    assert main(["run", str(f), "--out", str(tmp_path / "p"), "--seeds", "1", "1"]) == 2
    assert "seeds: must be distinct" in capsys.readouterr().err


def test_progress_in_a_log_is_a_line_per_training_run_not_a_bar(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "s.yaml"
    f.write_text(
        "name: x\ndataset: {name: digits}\nmodels: [{name: small_cnn, kwargs: {width: 0.5}}]\n"
        "train: {epochs: 2, batch_size: 128}\nrequests: [{kind: class, classes: ['3']}]\n"
        "methods: [original, finetune]\nseeds: [0]\n"
    )
    assert main(["run", str(f), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err and "it/s" not in err and "step/s" not in err
    summaries = [line for line in err.splitlines() if " steps" in line and line.endswith(" s")]
    assert len(summaries) >= 2, err  # the original's training and finetune's, one line each
    assert all(line.startswith("[obliviate] ") for line in err.splitlines() if line.strip()), err


def test_list_presets_says_what_runs_and_its_time_per_scale(capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from obliviate.study.presets import preset_names

    monkeypatch.setenv("COLUMNS", "100")
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["preset", "task", "scale"] and set(lines[1]) <= {"-", " "}
    assert all(len(line) <= 100 for line in lines)  # wrapped to the terminal, never cut
    for name in preset_names():
        assert name in out
    assert "≈ 24 min per seed" in " ".join(out.split())  # llm_bias_lora quick, from its runtime:
    assert "22 methods" in out and "digits" in out
    assert "has no attribute" not in out and "error" not in out.lower()


def test_describe_preset_model_and_recipe(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["describe", "vgg16_neuron_mask"]) == 0
    out = capsys.readouterr().out
    assert (
        "scale quick — time: ≈ 5 min per seed" in out and "vgg16_bn(width=0.25)" in out and "run: obliviate run" in out
    )
    assert main(["describe", "resnet18", "--kwargs", '{"width": 0.25}']) == 0
    out = capsys.readouterr().out
    assert "3 channel(s) × 32×32" in out and "701,466 parameters" in out and "width" in out
    assert main(["describe", "small_cnn"]) == 0
    assert "1 channel(s) × 8×8" in capsys.readouterr().out
    assert main(["list", "recipes"]) == 0
    out = capsys.readouterr().out
    assert out.split()[:5] == ["recipe", "model", "epochs", "batch", "summary"] and "airbench_quick" in out
    assert main(["describe", "airbench"]) == 0
    assert "training recipe" in capsys.readouterr().out


def test_list_columns_all_have_headers_and_summaries_are_whole(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["list", "methods"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["method", "kind", "reads", "exact", "summary"]
    assert main(["list", "datasets"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "(the sub-class forgetting setting: forget ``rocket`` inside ``vehicles_2``)" in out
    )  # a docstring's whole paragraph


def test_run_model_and_data_root_for_llm_studies(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mymodel"
    folder.mkdir()
    assert main(["run", "llm_bias_lora", "--scale", "tiny", "--model", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "has no config.json" in capsys.readouterr().err
    (folder / "config.json").write_text("{}")
    assert main(["run", "llm_bias_lora", "--scale", "tiny", "--model", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "has no tokenizer" in capsys.readouterr().err
    (folder / "tokenizer.json").write_text("{}")
    assert main(["run", "llm_bias_lora", "--scale", "tiny", "--model", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "has no weights" in capsys.readouterr().err
    missing = tmp_path / "statements.jsonl"
    assert (
        main(["run", "llm_bias_lora", "--scale", "tiny", "--data-root", str(missing), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "statements.jsonl" in capsys.readouterr().err
    assert main(["run", "default", "--model", "x", "--out", str(tmp_path / "v")]) == 2
    assert "model: applies to LLM studies" in capsys.readouterr().err


@pytest.mark.bad_input
def test_runtime_field_is_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from obliviate.study import load_study
    from obliviate.study.spec import StudySpecError

    f = tmp_path / "s.yaml"
    base = (
        "name: s\ndataset: digits\nmodels: [small_cnn]\nrequests: [{kind: class, classes: ['3']}]\n"
        "methods: [original]\n"
    )
    f.write_text(base + "runtime: {default: '1 min'}\n")
    assert load_study(f).name == "s"
    f.write_text(base + "runtime: {quick: '1 min'}\n")
    with pytest.raises(StudySpecError, match="runtime: names scale"):
        load_study(f)
    f.write_text(base + "runtime: 5\n")
    with pytest.raises(StudySpecError, match="runtime: must be a mapping"):
        load_study(f)

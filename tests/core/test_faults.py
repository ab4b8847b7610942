"""Faults and bad input: a diverged run is a failure, never "perfect forgetting"; typed
validation; damaged metadata named and healed; checkpoints that cannot be made to load other
code or files; a study folder one process at a time."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from obliviate.api import run_study
from obliviate.cli import main
from obliviate.models import CheckpointError, ModelCache, create_model, load_checkpoint, save_checkpoint
from obliviate.study import StudySpecError, parse_study
from obliviate.testing import RecordingProgress

BASE: dict[str, Any] = {
    "name": "faults",
    "dataset": {"name": "digits", "train_per_class": 40, "test_per_class": 20},
    "models": [{"name": "small_cnn", "kwargs": {"width": 0.25}}],
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "crop_pad": 1, "flip": False},
    "requests": [{"kind": "class", "classes": ["3"]}],
    "methods": ["original", {"name": "finetune", "config": {"epochs": 0.5}}],
    "seeds": [0],
    "device": "cpu",
}


Recorder = RecordingProgress


def _all_json_finite(folder: Path) -> None:
    for p in folder.rglob("*.json"):
        json.loads(p.read_text(), parse_constant=lambda c, p=p: pytest.fail(f"{p} holds {c}"))


# -- divergence --------------------------------------------------------------------------------------


@pytest.mark.fault
def test_a_diverged_method_is_a_failure_and_the_study_goes_on(tmp_path: Path) -> None:
    raw = {
        **BASE,
        "methods": [
            "original",
            {"name": "finetune", "label": "ft-diverges", "config": {"lr": 1.0e6}},
            {"name": "neggrad_plus", "label": "ng-diverges", "config": {"lr": 1.0e5, "forget_loss_cap": None}},
            {"name": "finetune", "config": {"epochs": 0.5}},
        ],
    }
    out, cache = tmp_path / "out", tmp_path / "cache"
    run_study(parse_study(raw), out, cache_dir=cache)
    recs = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    for label in ("ft-diverges", "ng-diverges"):
        r = recs[label]
        assert r["status"] == "failed" and r["values"] == {}
        assert r["error"]["kind"] == "non_finite" and r["error"]["method"] == label
        # the shared step names the step whose loss went NaN; a last step that only breaks the
        # weights is caught when the method returns
        assert (r["error"]["where"] == "loss" and isinstance(r["error"]["step"], int)) or r["error"][
            "where"
        ] == "weights after unlearning", r["error"]
    assert recs["finetune"]["status"] == "ok" and recs["original"]["status"] == "ok"  # later methods ran
    csv = (out / "results.csv").read_text()
    assert "ft-diverges" not in csv and "finetune" in csv  # a failure never reads as 0 % forget accuracy
    md = (out / "report.md").read_text()
    assert "## Failed runs" in md and "| ft-diverges |" in md.split("## Failed runs")[1].split("##")[0]
    _all_json_finite(out)
    _all_json_finite(cache)
    # a non-finite failure is deterministic: kept, not retried
    again = Recorder()
    run_study(parse_study(raw), out, cache_dir=cache, progress=again)
    assert not any("running" in t for t in again.lines)


@pytest.mark.fault
def test_a_diverged_reference_fails_its_group_and_caches_nothing(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "s.yaml"
    import yaml

    f.write_text(yaml.safe_dump({**BASE, "train": {**BASE["train"], "lr": 1.0e8}}))
    rc = main(["run", str(f), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "-q"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "2 run(s) failed" in err and "non-finite loss at step" in err
    recs = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")]
    assert {r["status"] for r in recs} == {"failed"} and all("diverged" in r["error"]["stage"] for r in recs)
    assert not list((tmp_path / "cache").glob("*.safetensors"))  # no NaN model in the cache


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "patch, match",
    [
        ({"train": {"momentum": math.nan}}, r"train.momentum: TrainConfig.momentum must be a finite number, got nan"),
        ({"train": {"weight_decay": math.nan}}, r"train.weight_decay: .* finite number"),
        ({"train": {"lr": math.inf}}, r"train.lr: TrainConfig.lr must be a finite number, got inf"),
        ({"train": {"epochs": "1"}}, r"train.epochs: TrainConfig.epochs must be a finite number, got '1' \(a string\)"),
        (
            {"methods": [{"name": "ssd", "config": {"alpha": math.nan}}]},
            r"methods\[0\].config.alpha: .*finite number, got nan",
        ),
        ({"methods": [{"name": "finetune", "config": {"epochs": True}}]}, r"methods\[0\].config.epochs: .*got True"),
        (
            {"methods": [{"name": "scrub", "config": {"msteps": 2.5}}]},
            r"methods\[0\].config.msteps: .*an integer, got 2.5",
        ),
        (
            {"models": [{"name": "small_cnn", "kwargs": {"widht": 0.5}}]},
            r"models\[0\].kwargs: model 'small_cnn' takes no argument\(s\) \['widht'\]",
        ),
        (
            {"models": [{"name": "small_cnn", "kwargs": {"width": "wide"}}]},
            r"models\[0\].kwargs: .*width must be a finite number",
        ),
        (
            {"models": [{"name": "coatnet", "kwargs": {"checkpoint_path": "/etc/passwd"}}]},
            r"takes no argument\(s\) \['checkpoint_path'\]",
        ),
        ({"eval": {"batch_size": "512"}}, r"eval.batch_size: EvalSpec.batch_size must be an integer, got '512'"),
        ({"eval": {"tta": "crop"}}, r"eval.tta: EvalSpec.tta must be one of 'none', 'flip' or null"),
        (
            {"eval": {"batchsize": 1}},
            r"eval.batchsize: unknown field\(s\) \['batchsize'\] for eval .*did you mean 'batch_size'",
        ),
        ({"relearn": {"lr": math.nan}}, r"relearn.lr: RelearnSpec.lr must be a finite number, got nan"),
        ({"dataset": {"name": "digits", "train_per_class": 0}}, r"dataset.train_per_class: .*positive integer"),
        ({"dataset": {"name": "digits", "rooot": "x"}}, r"dataset.rooot: unknown field"),
        ({"methods": ["original", "original"]}, r"is methods\[0\] \('original'\) again"),
        ({"methods": ["finetune", {"name": "finetune", "label": "again"}]}, r"methods\[1\]: is methods\[0\]"),
    ],
)
def test_typed_validation_names_the_field_path(patch: dict[str, Any], match: str) -> None:
    with pytest.raises(StudySpecError, match=match):
        parse_study({**BASE, **patch})


def test_yaml_float_quirk_is_read_as_the_number(tmp_path: Path) -> None:
    from obliviate.study import load_study

    f = tmp_path / "s.yaml"
    f.write_text(
        "name: q\ndataset: {name: digits}\nmodels: [small_cnn]\nrequests: [{kind: class, classes: ['3']}]\n"
        "train: {lr: 1e-3, weight_decay: 5e-4}\nmethods: [{name: finetune, config: {lr: 1e-3}}]\n"
    )
    spec = load_study(f)  # YAML 1.1 reads 1e-3 (no dot) as the string '1e-3'
    assert spec.train.lr == 0.001 and spec.train.weight_decay == 0.0005
    assert spec.methods[0].build().config.lr == 0.001


@pytest.mark.bad_input
def test_bad_model_kwargs_json_names_the_option(tmp_path: Path, capsys: Any) -> None:
    rc = main(
        [
            "train",
            "--dataset",
            "digits",
            "--model",
            "small_cnn",
            "--model-kwargs",
            "{width: 1}",
            "--out",
            str(tmp_path / "m"),
        ]
    )
    assert rc == 2 and "--model-kwargs is not valid JSON" in capsys.readouterr().err


# -- damaged metadata --------------------------------------------------------------------------------


@pytest.mark.fault
def test_damaged_cache_group_and_run_records_are_named_moved_and_recomputed(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    spec = parse_study(BASE)
    run_study(spec, out, cache_dir=cache)
    entry = sorted(cache.glob("*.json"))[0]
    entry.write_text(entry.read_text()[:40])  # truncated cache JSON
    group = next((out / "groups").glob("*.json"))
    group.write_text('{"truncated": ')  # truncated group record
    run = next((out / "runs").glob("*.json"))
    run.write_text("{}")  # a record replaced by {}
    rec = Recorder()
    run_study(spec, out, cache_dir=cache, progress=rec)
    lines = rec.lines
    text = "\n".join(lines)
    assert f"damaged record {group}" in text and f"damaged record {run}" in text
    assert (out / "damaged" / "groups").is_dir() and (out / "damaged" / "runs").is_dir()
    assert (cache / "damaged").is_dir()  # the cache entry was moved aside and retrained
    assert any(": training" in ln for ln in lines)
    recs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(recs) == 2 and all(r["status"] == "ok" for r in recs)


@pytest.mark.fault
def test_damaged_checkpoint_metadata_is_refused_with_its_path(tmp_path: Path) -> None:
    m = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.25)
    meta = save_checkpoint(tmp_path / "ck", m)
    meta.write_text(meta.read_text()[:30])
    with pytest.raises(CheckpointError, match=f"{meta}.*damaged"):
        load_checkpoint(tmp_path / "ck")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path / "dir.json" if (tmp_path / "dir.json").mkdir() is None else tmp_path)


# -- checkpoints that cannot be turned against the loader ------------------------------------------


def _saved(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    m = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.25)
    meta_path = save_checkpoint(tmp_path / "ck", m)
    return meta_path, json.loads(meta_path.read_text())


@pytest.mark.fault
def test_the_hash_covers_the_model_spec(tmp_path: Path) -> None:
    meta_path, meta = _saved(tmp_path)
    meta["model"]["num_classes"] = 9
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="spec_sha256 does not match"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.fault
def test_a_forged_spec_reaches_only_declared_arguments(tmp_path: Path) -> None:
    from obliviate.models.checkpoint import _spec_hash

    meta_path, meta = _saved(tmp_path)
    meta["model"]["pretrained_cfg_overlay"] = {"file": "/etc/passwd"}  # rehashed by an attacker
    meta["spec_sha256"] = _spec_hash(meta["format"], meta["model"], meta["sha256"])
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"takes no argument\(s\) \['pretrained_cfg_overlay'\]"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.fault
def test_the_json_cannot_point_the_loader_at_another_file(tmp_path: Path) -> None:
    meta_path, meta = _saved(tmp_path)
    other = create_model("small_cnn", num_classes=10, in_chans=1, seed=1, width=0.25)
    save_checkpoint(tmp_path / "other", other)
    meta["weights"] = "other.safetensors"
    meta_path.write_text(json.dumps(meta))
    model, _ = load_checkpoint(tmp_path / "ck")  # "weights" is informational: ck.safetensors is read
    ref = create_model("small_cnn", num_classes=10, in_chans=1, seed=0, width=0.25)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


@pytest.mark.fault
def test_a_pickle_posing_as_safetensors_is_a_checkpoint_error(tmp_path: Path) -> None:
    import hashlib
    import pickle

    from obliviate.models.checkpoint import _spec_hash

    meta_path, meta = _saved(tmp_path)
    evil = pickle.dumps({"x": 1})
    (tmp_path / "ck.safetensors").write_bytes(evil)
    meta["sha256"] = hashlib.sha256(evil).hexdigest()
    meta["spec_sha256"] = _spec_hash(meta["format"], meta["model"], meta["sha256"])
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "ck")


@pytest.mark.fault
def test_user_metadata_cannot_overwrite_the_hash_fields(tmp_path: Path) -> None:
    m = create_model("small_cnn", num_classes=10, in_chans=1, seed=0)
    with pytest.raises(CheckpointError, match=r"may not set \['sha256'\]"):
        save_checkpoint(tmp_path / "ck", m, {"sha256": "0" * 64})


@pytest.mark.fault
def test_cache_refuses_a_nan_model(tmp_path: Path) -> None:
    from obliviate.core import NonFiniteError

    m = create_model("small_cnn", num_classes=10, in_chans=1, seed=0)
    with torch.no_grad():
        next(m.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError):
        ModelCache(tmp_path).store({"k": 1}, m)
    assert not list(tmp_path.glob("*.json"))


# -- round trips -------------------------------------------------------------------------------------


def test_evaluate_reads_back_an_ids_checkpoint_and_an_npz_folder_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import numpy as np

    from obliviate.data import load_dataset

    ds = load_dataset("digits")
    folder = tmp_path / "my_data"
    folder.mkdir()
    imgs = ds.train_images.permute(0, 2, 3, 1).numpy()
    np.savez(folder / "train.npz", images=imgs, labels=ds.train_labels.numpy())
    np.savez(folder / "test.npz", images=ds.test_images.permute(0, 2, 3, 1).numpy(), labels=ds.test_labels.numpy())
    ids = tmp_path / "ids.txt"
    ids.write_text("0\n1\n2\n")
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "train",
                "--dataset",
                "my_data",
                "--model",
                "small_cnn",
                "--width",
                "0.25",
                "--epochs",
                "0.2",
                "--forget",
                f"ids:{ids}",
                "--out",
                str(tmp_path / "ck"),
                "-q",
            ]
        )
        == 0
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)  # the data folder is not relative to here
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "ck")]) == 0
    out = capsys.readouterr().out
    assert "forget" in out and "retain" in out
    # a dataset whose content differs from the training data is refused
    np.savez(
        folder / "test.npz",
        images=ds.test_images.permute(0, 2, 3, 1).numpy()[:100],
        labels=ds.test_labels.numpy()[:100],
    )
    assert main(["evaluate", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    assert "the content fingerprints differ" in err and "the data loaded, 'npz'" in err
    # another dataset named: the message names it as the data loaded, the folder as the training data
    assert main(["evaluate", str(tmp_path / "ck"), "--dataset", "digits", "--train-per-class", "50"]) == 2
    err = capsys.readouterr().err
    assert "the data loaded, 'digits'," in err and "trained on ('npz' at " in err and "my_data" in err


# -- one process per study folder -------------------------------------------------------------------


@pytest.mark.fault
def test_a_second_process_on_the_same_study_folder_stops_with_a_message(tmp_path: Path) -> None:
    import yaml

    from obliviate.study.store import ResultStore

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(BASE))
    out = tmp_path / "out"
    lock = ResultStore(out).lock()
    lock.acquire(wait=False)
    try:
        env = {**os.environ, "OBLIVIATE_CACHE": str(tmp_path / "cache")}
        p = subprocess.run(
            [sys.executable, "-m", "obliviate.cli", "run", str(f), "--out", str(out), "-q"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        lock.release()
    assert p.returncode == 2
    assert f"the study folder {out} is in use by another obliviate process (pid {os.getpid()}" in p.stderr
    assert not (out / "runs").exists()  # it trained and wrote nothing


@pytest.mark.fault
def test_a_cache_entry_is_trained_by_one_process_at_a_time(tmp_path: Path) -> None:
    import fcntl
    import threading

    cache = ModelCache(tmp_path)
    spec = {"k": "v"}
    waited: list[str] = []
    with cache.entry(spec):
        t = threading.Thread(target=lambda: cache.entry(spec, on_wait=waited.append).__enter__())
        t.daemon = True
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive() and waited and "waiting for another process" in waited[0]  # blocked while held
    t.join(timeout=5.0)
    assert not t.is_alive()  # and goes on once released
    fd = os.open(tmp_path / f"{cache.key(spec)}.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)

"""Study specs fail early naming the field; the runner reuses the cache, skips finished runs,
never leaves half-written results, and renders a report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from obliviate.api import run_study
from obliviate.core import deep_merge
from obliviate.study import StudySpecError, load_study, parse_study

BASE = {
    "name": "t",
    "dataset": {"name": "digits"},
    "models": [{"name": "small_cnn", "kwargs": {"width": 0.5}}],
    "train": {"epochs": 5, "batch_size": 64, "lr": 0.05, "crop_pad": 1, "flip": False},
    "requests": [{"kind": "class", "classes": ["3"]}],
    "methods": ["original", "retrain", {"name": "finetune", "config": {"epochs": 1}}],
    "seeds": [0],
    "device": "cpu",
}


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "change, match",
    [
        ({"dataset": {"name": "digitz"}}, r"dataset.name: Unknown dataset 'digitz'. Did you mean 'digits'"),
        ({"models": ["resnet81"]}, r"models\[0\].name: Unknown model 'resnet81'. Did you mean 'resnet18'"),
        (
            {"methods": ["original", "finetun"]},
            r"methods\[1\].name: Unknown vision method 'finetun'. Did you mean 'finetune'",
        ),
        (
            {"methods": [{"name": "finetune", "config": {"lr": -1}}]},
            r"methods\[0\].config.lr: FinetuneConfig.lr must be > 0, got -1",
        ),
        (
            {"methods": [{"name": "finetune", "config": {"lrr": 1}}]},
            r"methods\[0\].config.lrr: unknown field\(s\) \['lrr'\]",
        ),
        (
            {"requests": [{"kind": "random", "fraction": 2}]},
            r"requests\[0\]: fraction must lie strictly between 0 and 1",
        ),
        ({"train": {"epochz": 1}}, r"train.epochz: unknown field\(s\) \['epochz'\] for the training config"),
        ({"seeds": [0, 0]}, "seeds: has duplicates"),
        ({"seeds": [-1]}, "seeds: must be a non-empty list of non-negative integers"),
        ({"bogus": 1}, r"study: unknown field\(s\) \['bogus'\]"),
        ({"dataset": {"nam": "digits"}}, r"dataset: needs at least \{name: ...\}"),
        ({"eval": {"tta": "crop"}}, "eval.tta: EvalSpec.tta must be one of 'none', 'flip'"),
        ({"methods": ["finetune", "finetune"]}, r"methods\[1\]: is methods\[0\] \('finetune'\) again"),
    ],
)
def test_bad_spec_fails_before_training_naming_the_field(change, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StudySpecError, match=match):
        parse_study({**BASE, **change})


def test_scales_deep_merge(tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = {**BASE, "scales": {"quick": {"train": {"epochs": 1}, "seeds": [0, 1]}, "full": {}}}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(raw))
    quick = load_study(f, scale="quick")
    assert quick.train.epochs == 1 and quick.train.batch_size == 64 and quick.seeds == [0, 1]
    assert load_study(f).train.epochs == 5
    with pytest.raises(StudySpecError, match="unknown scale 'huge'; this study defines"):
        load_study(f, scale="huge")
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}


def test_every_preset_and_benchmark_study_validates() -> None:
    root = Path(__file__).resolve().parents[2]
    presets = sorted((root / "src" / "obliviate" / "configs").glob("*.yaml"))
    assert any(p.stem == "default" for p in presets)
    presets += sorted((root / "bench").glob("*/*.yaml"))  # the benchmarks' studies, one folder per question
    for p in presets:
        raw = yaml.safe_load(p.read_text())
        for scale in [None, *sorted((raw.get("scales") or {}).keys())]:
            spec = load_study(p, scale=scale)
            assert spec.name


def test_run_cache_resume_and_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = parse_study(BASE)
    out, cache = tmp_path / "out", tmp_path / "cache"
    rows = run_study(spec, out, cache_dir=cache)
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert len(runs) == 3
    assert {r["method"] for r in rows} == {"original", "retrain", "finetune"}
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Table I" in html
    md = (out / "report.md").read_text()
    assert "finetune" in md and "What ran" in md
    records = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    # the retrain run reuses the retrained reference, which never read the forget split
    assert records["retrain"]["reused_reference"] and records["retrain"]["splits_read"] == ["retain"]
    assert records["retrain"]["values"]["acc/forget"] == 0.0 or records["retrain"]["values"]["acc/forget"] < 0.2
    assert records["original"]["values"]["acc/forget"] > 0.8
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("study,scale,dataset,model,request,method,seed,metric,value,direction")

    # an interrupted study: one run lost, one half-written temp file left behind
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    lost = next(p for p in (out / "runs").glob("*.json") if json.loads(p.read_text())["method"] == "finetune")
    lost.unlink()
    (out / "runs" / ".tmp-x.json-abc").write_text("{half")
    cached = sorted(cache.glob("*.json"))
    assert len(cached) == 2  # original + retrained, each trained once
    run_study(spec, out, cache_dir=cache)
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert set(after) == set(mtimes)
    for name, t in mtimes.items():
        if name != lost.name:
            assert after[name] == t, f"{name} was recomputed"
    assert sorted(cache.glob("*.json")) == cached


def test_second_study_reuses_cached_models(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    run_study(parse_study({**BASE, "methods": ["original"]}), tmp_path / "a", cache_dir=cache)
    n = len(list(cache.glob("*.json")))
    run_study(parse_study({**BASE, "name": "other", "methods": ["retrain"]}), tmp_path / "b", cache_dir=cache)
    assert len(list(cache.glob("*.json"))) == n
    shutil.rmtree(tmp_path / "a")


def test_default_study_runs_every_vision_method() -> None:
    from obliviate.cli import PRESET_DIR
    from obliviate.methods import list_methods

    spec = load_study(PRESET_DIR / "default.yaml")
    # but loss_match: it needs held-out rows of a sample-level request, and the default is a class
    # request on which it would fail (the planner's not-applicable hook knows only the calibrated
    # stop); its study is bench/sample_level_20x/sample_level_20x.yaml
    assert {m.name for m in spec.methods} == set(list_methods(kind="vision")) - {"loss_match"}
    assert spec.dataset.name == "digits"


def test_class_level_method_is_skipped_and_reported_on_a_sample_request(tmp_path) -> None:  # type: ignore[no-untyped-def]
    spec = parse_study(
        {
            **BASE,
            "train": {**BASE["train"], "epochs": 1},
            "requests": [{"kind": "random", "fraction": 0.1}],
            "methods": ["original", {"name": "unsir", "config": {"noise_steps": 1, "repair_epochs": 1}}],
        }
    )
    rows = run_study(spec, tmp_path / "s", cache_dir=tmp_path / "c")
    assert {r["method"] for r in rows} == {"original"}
    group = json.loads(next((tmp_path / "s" / "groups").glob("*.json")).read_text())
    assert "unsir" in group["not_applicable"] and "whole classes" in group["not_applicable"]["unsir"]
    assert "not run: unsir" in (tmp_path / "s" / "report.md").read_text()


@pytest.mark.bad_input
def test_set_overrides_any_field_after_the_scale_and_names_bad_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from obliviate.study.spec import StudySpecError

    f = tmp_path / "s.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                **BASE,
                "methods": [{"name": "finetune", "config": {"epochs": 1}}],
                "scales": {"quick": {"train": {"epochs": 3}}},
            }
        )
    )
    spec = load_study(f, scale="quick", overrides=["train.epochs=2", "methods[0].config.lr=1e-3", "seeds=[4, 5]"])
    assert spec.scale == "quick" and spec.train.epochs == 2 and spec.seeds == [4, 5]
    assert float(spec.methods[0].config["lr"]) == 1e-3 and spec.methods[0].config["epochs"] == 1
    assert load_study(f, scale="quick").train.epochs == 3  # without --set the scale's value stands
    for bad, match in (
        ("train.epochs", "not key.path=value"),
        ("methods[3].config.lr=1", "index out of range"),
        ("train.epochs.x=1", "is a value"),
        ("train.epochz=2", "train"),
    ):
        with pytest.raises(StudySpecError, match=match):
            load_study(f, scale="quick", overrides=[bad])


def test_set_gives_a_method_listed_by_name_its_config() -> None:
    spec = parse_study({**BASE, "methods": ["original", "finetune"]})
    assert spec.methods[1].config == {}
    from obliviate.study.spec import apply_overrides

    raw = apply_overrides({**BASE, "methods": ["original", "finetune"]}, ["methods[1].config.epochs=2"])
    assert raw["methods"][1] == {"name": "finetune", "config": {"epochs": 2}}
    assert parse_study(raw).methods[1].config == {"epochs": 2}

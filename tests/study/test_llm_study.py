"""The LLM task of the one study runner: spec validation, a micro study end to end, resuming,
the report section, and the shipped ``configs/llm_bias_lora.yaml``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from obliviate.report.llm import render_llm_section
from obliviate.study.spec import StudySpecError, resolve_scale
from obliviate.study.tasks.llm import validate_llm_spec

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "llm_bias_lora.yaml"
ROW_KEYS = {"model", "request", "method", "seed", "metric", "value", "direction"}
DIRECTIONS = {"higher", "lower", "closest_to_retrained", "info"}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds contention


def micro_spec(**over: object) -> dict:
    spec = {
        "task": "llm",
        "device": "cpu",
        "seeds": [0],
        "model": {
            "name": "tiny-llama",
            "max_length": 64,
            "tiny": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 512},
            "train": {"epochs": 2, "lr": 5e-3, "batch_size": 32},
        },
        "data": {"source": "clinical_bias", "validation_fraction": 0.2},
        "requests": [{"kind": "flip", "from_label": "biased", "count": 6, "to": "not biased"}],
        "methods": [
            {"name": "relabel", "config": {"lr": 3e-3, "epochs": 2, "batch_size": 4}},
            {"name": "npo", "config": {"lr": 1e-3, "epochs": 1, "batch_size": 4, "mode": "full"}},
        ],
        "metrics": {
            "groups": ["judgement", "perplexity", "mia", "forget_quality", "crows_pairs"],
            "crows_pairs": {"max_pairs": 8},
        },
        "eval": {"answers": 2, "max_new_tokens": 3, "batch_size": 64},
    }
    spec.update(over)
    return spec


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "patch, field",
    [
        ({"modle": {}}, "study: unknown field"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"model": {"name": "tiny-llama", "template": "chat", "train": {}}}, "model.template"),
        ({"model": {"name": "tiny-llama", "train": {"lr": -1}}}, "model.train"),
        ({"model": {"name": "tiny-llama", "tiny": {"hidden_size": 30, "num_heads": 4}, "train": {}}}, "model.tiny"),
        ({"data": {"source": "nowhere.csv"}}, "data.source"),
        ({"requests": [{"kind": "flip", "ids": ["cb-9999"], "to": "not biased"}]}, r"requests\[0\]"),
        ({"methods": ["npoo"]}, r"methods\[0\].name: Unknown llm method 'npoo'. Did you mean 'npo'"),
        ({"methods": [{"name": "npo", "config": {"beta": math.nan}}]}, r"methods\[0\].config.beta: NPOConfig.beta"),
        ({"methods": ["npo", "npo"]}, r"methods\[1\]: is methods\[0\] \('npo'\) again"),
        ({"methods": ["npo", {"name": "npo", "config": {"beta": 0.2}}]}, "labels must be unique"),
        ({"methods": ["finetune"]}, "'finetune' is a vision method; this is an llm study"),
        ({"metrics": ["mia", "nonsense"]}, "unknown metric 'nonsense'"),
        ({"metrics": {"groups": ["crows_pairs"], "crows_pairs": {"path": "/no/such.csv"}}}, "metrics.crows_pairs.path"),
        ({"eval": {"answers": -1}}, "eval.answers"),
    ],
)
def test_spec_errors_name_the_field(patch: dict, field: str) -> None:
    with pytest.raises(StudySpecError, match=field):
        validate_llm_spec(micro_spec(**patch))


def test_micro_study_end_to_end_and_resume(tmp_path: Path, run_llm: Any) -> None:
    messages: list[str] = []
    rows = run_llm(micro_spec(), tmp_path, progress=messages.append)
    assert rows and all(set(r) >= ROW_KEYS for r in rows)
    assert {r["direction"] for r in rows} <= DIRECTIONS
    assert all(math.isfinite(r["value"]) for r in rows)
    methods = {r["method"] for r in rows}
    assert methods == {"original", "retrained", "relabel", "npo"}
    by = {(r["method"], r["metric"]): r for r in rows}
    assert by[("original", "forget_flip_rate")]["value"] == 0.0
    assert by[("relabel", "forget_flip_rate")]["direction"] == "higher"
    assert by[("relabel", "mia_loss_auc")]["direction"] == "closest_to_retrained"
    assert 0.0 <= by[("npo", "forget_quality")]["value"] <= 1.0
    assert 0.0 <= by[("original", "crows_pairs_score")]["value"] <= 1.0
    assert by[("npo", "seconds")]["value"] > 0
    answers = json.loads((tmp_path / "llm_answers.json").read_text())
    st = answers["blocks"][0]["statements"]
    assert len(st) == 2 and set(st[0]["answers"]) == methods
    assert st[0]["answers"]["original"]["judgement"] in ("biased", "not biased")
    assert any("training the original model" in m for m in messages)
    from obliviate.report import render_report  # the full report renders for an LLM study folder too

    md, _ = render_report(tmp_path)
    assert "## LLM unlearning" in md.read_text() and "relabel" in md.read_text()
    figs = list((tmp_path / "figures").glob("llm_tradeoff_*.png"))  # the LLM section has its own figure
    assert len(figs) == 1 and figs[0].name in md.read_text()

    # re-run: everything is read back, nothing is trained or run again
    again: list[str] = []
    rows2 = run_llm(micro_spec(), tmp_path, progress=again.append)
    assert rows2 == rows and any("already finished" in m for m in again)
    assert not any("training" in m or "running" in m for m in again)

    # an interrupted run (its file missing) is the only one redone; references come from the cache
    victim = next(p for p in (tmp_path / "runs").glob("*.json") if json.loads(p.read_text())["method"] == "npo")
    victim.unlink()
    third: list[str] = []
    rows3 = run_llm(micro_spec(), tmp_path, progress=third.append)
    assert any("running npo" in m for m in third) and not any("running relabel" in m for m in third)
    assert not any("training" in m for m in third)
    old = {(r["method"], r["metric"]): r["value"] for r in rows}
    new = {(r["method"], r["metric"]): r["value"] for r in rows3}
    assert old.keys() == new.keys()
    assert all(new[k] == v for k, v in old.items() if k[0] != "npo"), "finished runs are read back as they were"
    assert all(new[k] == v for k, v in old.items() if k[0] == "npo" and k[1] not in ("seconds", "peak_memory_mb")), (
        "same seed, same result"
    )

    md = render_llm_section(rows, answers)
    assert "| method |" in md and "| relabel |" in md
    assert not re.search(r"\d ± \d", md), "one seed: no std"
    assert "Answers before and after unlearning" in md and "| original |" in md


def test_report_mean_and_std_over_seeds() -> None:
    rows = [
        {
            "model": "m",
            "request": "r",
            "method": "npo",
            "seed": s,
            "metric": "retain_acc",
            "value": v,
            "direction": "higher",
        }
        for s, v in ((0, 0.5), (1, 0.7))
    ]
    md = render_llm_section(rows, {})
    assert "0.600 ± 0.141" in md and "retain_acc ↑" in md


def test_shipped_config_validates_at_every_scale() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    assert raw["task"] == "llm" and set(raw["scales"]) == {"tiny", "quick", "full"}
    quick = validate_llm_spec(resolve_scale(raw, "quick"))  # validates without fetching the model
    assert quick.model.name == "smollm2-135m-instruct" and {m.name for m in quick.methods} == {
        "relabel",
        "grad_ascent",
        "grad_diff",
        "npo",
        "simnpo",
        "rmu",
    }
    assert [r.to_dict()["kind"] for r in quick.requests] == ["mislabelled", "flip"]
    tiny = validate_llm_spec(resolve_scale(raw, "tiny"))
    assert tiny.model.name == "tiny-llama"
    full = validate_llm_spec(resolve_scale(raw, "full"))  # validates without downloading anything
    assert full.model.name.startswith("meta-llama/") and all(m.config.get("lora_r") == 16 for m in full.methods)


def test_the_cli_seeds_and_set_options_reach_an_llm_study(tmp_path: Path) -> None:
    from obliviate.cli import main

    spec = micro_spec(
        methods=[{"name": "relabel", "config": {"lr": 3e-3, "epochs": 1, "batch_size": 4}}],
        metrics={"groups": ["judgement"]},
        eval={"answers": 0, "batch_size": 64},
    )
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"name": "micro", **spec}))
    assert (
        main(
            [
                "run",
                str(f),
                "--out",
                str(tmp_path / "o"),
                "--cache",
                str(tmp_path / "c"),
                "--seeds",
                "3",
                "--set",
                "methods[0].config.epochs=2",
                "-q",
            ]
        )
        == 0
    )
    recs = [json.loads(p.read_text()) for p in (tmp_path / "o" / "runs").glob("*.json")]
    assert {r["seed"] for r in recs} == {3}
    assert [r["method_config"]["epochs"] for r in recs if r["method"] == "relabel"] == [2]


@pytest.mark.bad_input
def test_one_spec_error_and_one_validation_for_both_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An LLM study fails with the study's error type, naming the field path, and its spec is
    validated once: the runner's task plans from what parse_study validated."""
    from obliviate.core import ConfigError
    from obliviate.study import StudyRunner, parse_study
    from obliviate.study.tasks import llm as llm_task

    with pytest.raises(StudySpecError, match=r"eval\.answers") as err:
        parse_study({"name": "x", **micro_spec(eval={"answers": -1})})
    assert isinstance(err.value, ConfigError) and err.value.field.startswith("eval.answers")
    calls: list[int] = []
    real = llm_task.validate_llm_spec
    monkeypatch.setattr(llm_task, "validate_llm_spec", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = parse_study({"name": "x", **micro_spec()})
    assert spec.task_plan is not None and len(calls) == 1
    StudyRunner(spec, tmp_path / "out", cache_dir=tmp_path / "cache").prepare()
    assert len(calls) == 1

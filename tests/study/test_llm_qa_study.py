"""The fictitious-entity task of the one study runner (``task: llm_qa``): spec errors that name the
field, a micro study end to end (references, methods, TOFU's measures, resuming, the report), and
the shipped ``configs/llm_fictitious.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

pytest.importorskip("transformers")
pytest.importorskip("rouge_score")

from obliviate.metrics.lm_rows import QA_METRICS
from obliviate.report import render_report
from obliviate.study.spec import StudySpecError, parse_study, resolve_scale
from obliviate.study.tasks.llm_qa import validate_qa_spec

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "llm_fictitious.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def micro_spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "task": "llm_qa",
        "device": "cpu",
        "seeds": [0],
        "model": {
            "name": "tiny-llama",
            "max_length": 64,
            "tiny": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400},
            "lora": {"r": 4, "alpha": 8},
            "train": {"mode": "full", "epochs": 20, "lr": 5e-3, "batch_size": 16},
        },
        "data": {"entities": 8, "heldout_entities": 2, "perturbed": 3},
        "requests": [{"forget_percent": 25}],
        "methods": [
            {"name": "npo", "config": {"lr": 3e-3, "epochs": 2, "batch_size": 4}},
            {"name": "relabel", "config": {"lr": 3e-3, "epochs": 2, "batch_size": 4}},
        ],
        "eval": {"batch_size": 16, "max_new_tokens": 12, "answers": 2},
    }
    spec.update(over)
    return spec


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("over", "path", "message"),
    [
        ({"data": {"source": "tofu"}}, "data.source", "must be 'fictitious'"),
        ({"data": {"heldout_entities": 0}}, "data.heldout_entities", "never tuned on"),
        ({"requests": [{"forget_percent": 100}]}, "requests[0].forget_percent", "TOFU's splits are 1, 5 and 10"),
        ({"requests": [{"forget_percent": 10}, 10]}, "requests", "the same share"),
        ({"requests": []}, "requests", "non-empty list"),
        ({"eval": {"max_new_tokens": 0}}, "eval.max_new_tokens", ">= 1"),
        ({"metrics": ["judgement"]}, "study", "unknown field(s) ['metrics']"),
        ({"methods": ["scrub"]}, "methods", "llm"),
    ],
)
def test_bad_specs_name_the_field(over: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(StudySpecError) as e:
        validate_qa_spec(micro_spec(**over))
    assert path in str(e.value) and message in str(e.value)


def test_a_micro_study_runs_every_reference_and_method(tmp_path: Path) -> None:
    from obliviate.study import StudyRunner

    study = parse_study({"name": "qa-micro", **micro_spec()})
    lines: list[str] = []

    class Say:
        def stage(self, text: str) -> None:
            lines.append(text)

        def steps(self, desc: str) -> Any:
            import contextlib

            return contextlib.nullcontext(lambda _ev: None)

    rows = StudyRunner(study, tmp_path / "out", cache_dir=tmp_path / "cache", progress=Say()).run()
    by = {(r["method"], r["metric"]): r for r in rows}
    assert {r["method"] for r in rows} == {"original", "retrained", "npo", "relabel"}  # no pretrained: tiny-llama
    for m in ("original", "retrained", "npo", "relabel"):
        assert set(QA_METRICS) <= {k for (mm, k) in by if mm == m}
        assert 0 <= by[(m, "model_utility")]["value"] <= 1
    assert by[("retrained", "forget_quality")]["value"] == 1.0  # its own truth ratios
    assert by[("npo", "forget_quality")]["direction"] == "higher"
    assert by[("npo", "mia_minkpp_auc")]["direction"] == "closest_to_retrained"
    # the full model was tuned on the forget rows; the retain model was not
    assert by[("original", "forget_prob")]["value"] > by[("retrained", "forget_prob")]["value"]
    assert by[("original", "mia_loss_auc")]["value"] > by[("retrained", "mia_loss_auc")]["value"]
    assert by[("npo", "forget_prob")]["value"] < by[("original", "forget_prob")]["value"]  # NPO lowers it

    # a second run finds every record and trains nothing
    lines.clear()
    again = StudyRunner(study, tmp_path / "out", cache_dir=tmp_path / "cache", progress=Say()).run()
    assert sorted(map(str, again)) == sorted(map(str, rows))
    assert not any("training" in ln for ln in lines)

    md, _ = render_report(tmp_path / "out")
    text = md.read_text()
    assert "**Forgetting (TOFU)**" in text and "**Utility**" in text and "mia_minkpp_auc" in text
    assert "Reach the retain model without losing utility" in text
    assert "Each forget question, its true answer" in text  # the answers block of the first seed


def test_the_shipped_preset_validates_at_every_scale() -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    for scale in raw["scales"]:
        d = resolve_scale(raw, scale)
        if scale != "tiny":
            d["model"] = {**d["model"], "name": "tiny-llama", "template": "auto"}  # no download here
        plan = validate_qa_spec(d)
        assert {m.name for m in plan.methods} == {"grad_ascent", "grad_diff", "npo", "simnpo", "rmu", "relabel"}
        for req in plan.requests:
            for s in plan.seeds:
                split = plan.bench.entity_split(req.forget_percent, s, plan.data.heldout_entities)
                assert len(split.forget_entities) >= 1 and len(split.heldout) > 0
    quick = validate_qa_spec({**resolve_scale(raw, "quick"), "model": {"name": "tiny-llama"}})
    assert quick.data.entities == 20 and quick.requests[0].describe() == "forget10"


def test_the_report_judges_each_seed_and_names_overshoot() -> None:
    """One lucky seed must not speak for all: a method reaches the retain model only where it does
    so on the same seed as its utility holds; a loss AUC far below the retain model's is overshoot."""
    from obliviate.report.llm import render_llm_section

    table = {  # method: per seed (forget_quality, model_utility, mia_loss_auc)
        "original": [(0.0, 0.50, 0.98), (0.0, 0.50, 0.97)],
        "retrained": [(1.0, 0.52, 0.50), (1.0, 0.52, 0.52)],
        "steady": [(0.40, 0.50, 0.48), (0.30, 0.49, 0.55)],
        "lucky": [(0.90, 0.50, 0.45), (0.01, 0.50, 0.50)],  # mean 0.455, but only seed 0 passes
        "broken": [(0.60, 0.20, 0.05), (0.70, 0.10, 0.10)],  # forgets by breaking the model
    }
    rows = [
        {"model": "m", "request": "forget10", "method": m, "seed": s, "metric": k, "value": v, "direction": "higher"}
        for m, per_seed in table.items()
        for s, vals in enumerate(per_seed)
        for k, v in zip(("forget_quality", "model_utility", "mia_loss_auc"), vals)
    ]
    text = " ".join(render_llm_section(rows, None).split())
    assert "on every seed `steady`; on some seeds `lucky` (1 of 2); on none `broken`." in text
    assert "**Overshoot**" in text and "`broken` (0.08)" in text and "`steady`" not in text.split("Overshoot")[1]

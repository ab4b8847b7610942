"""The studies that ship with obliviate (``configs/*.yaml``): what each runs, at each scale, and
what it costs as measured (the file's ``runtime:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The file of preset ``name``; an unknown name lists the presets."""
    p = PRESET_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"no preset {name!r}; presets: {', '.join(preset_names())}")
    return p


def _scale_summary(path: Path, scale: str | None) -> dict[str, Any]:
    from .spec import DatasetSpec, load_study

    spec = load_study(path, scale=scale)
    if spec.task in ("llm", "llm_qa"):
        raw = spec.raw
        if not raw.get("model") or not raw.get("methods"):
            raise ValueError("no model or methods at this level: choose a scale")
        plan = spec.task_plan
        models = [plan.model.name]
        requests = [r.describe() for r in plan.requests]
        methods = [m.label for m in plan.methods]
        dataset = plan.data.source
        if spec.task == "llm_qa":
            dataset += f", {plan.data.entities} entities (+{plan.data.heldout_entities} held out)"
    else:
        models = [
            m.name + (f"({', '.join(f'{k}={v}' for k, v in m.kwargs.items())})" if m.kwargs else "")
            for m in spec.models
        ]
        requests = [r.describe() for r in spec.requests]
        methods = [m.label for m in spec.methods]
        ds = spec.dataset
        assert isinstance(ds, DatasetSpec)
        dataset = ds.name + (f", {ds.train_per_class}/class" if getattr(ds, "train_per_class", None) else "")
    tune = (
        {"requests": [r.describe() for r in spec.tune.requests], "seeds": list(spec.tune.seeds)}
        if spec.tune is not None
        else None
    )
    return {
        "scale": scale or "default",
        "task": spec.task,
        "dataset": dataset,
        "models": models,
        "requests": requests,
        "methods": methods,
        "seeds": list(spec.seeds),
        "scale_note": spec.scale_note,
        "tune": tune,
    }


def describe_preset(name: str) -> dict[str, Any]:
    """Preset ``name``: its file, description, and per scale (``default`` = no ``--scale``) what it
    runs and the measured ``runtime``. A scale that does not validate on its own (an LLM study
    without a model at the top level) says why instead."""
    path = preset_path(name)
    raw = yaml.safe_load(path.read_text()) or {}
    runtime = raw.get("runtime") or {}
    scales: list[dict[str, Any]] = []
    for scale in [None, *(raw.get("scales") or {})]:
        try:
            entry = _scale_summary(path, scale)
        except Exception as e:
            if scale is None and raw.get("scales"):
                continue  # the top level is only a base for the scales
            entry = {"scale": scale or "default", "error": str(e)}
        entry["runtime"] = runtime.get(scale or "default", "not measured")
        scales.append(entry)
    return {
        "name": path.stem,
        "file": str(path),
        "study": raw.get("name", path.stem),
        "task": raw.get("task", "vision"),
        "description": " ".join(str(raw.get("description", "")).split()),
        "scales": scales,
    }

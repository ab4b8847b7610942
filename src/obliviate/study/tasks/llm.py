"""The LLM task of the one study runner: causal LMs judging statements, LLM unlearning methods.

:func:`validate_llm_spec` checks an LLM study's fields; :class:`LLMTask` plans its runs (one
group per request × seed; units ``retrained``, ``original``, ``pretrained`` (a pretrained model
before the task tuning) and every method) and runs them
through :class:`~obliviate.study.runner.StudyRunner`, which keys, stores, skips and reports them
exactly as it does vision runs.

Spec (``scales`` already resolved by :func:`obliviate.study.spec.resolve_scale`)::

    task: llm
    device: auto                     # auto | cpu | cuda | cuda:1
    seeds: [0, 1]
    model:
      name: tiny-llama               # or a hub id / local folder (meta-llama/Llama-3.2-1B-Instruct)
      tiny: {hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 172, vocab_size: 1024}
      backend: hf                    # hf | unsloth (falls back to hf with a warning)
      dtype: float32                 # float32 | bfloat16 | float16 (weights of hub models)
      bf16: false                    # bf16 autocast in training and scoring
      template: short                # alpaca (Unsloth's, the paper's) | short | chat
      system: null                   # chat only: the system message (null: the tokenizer's default)
      max_length: 128
      lora: {r: 16, alpha: 32, dropout: 0.0, targets: [q_proj, ...]}   # defaults for methods' lora_*
      train: {epochs: 30, lr: 3e-3, batch_size: 16, mode: full, loss_on: all}   # null: use as is
      cache_dir: null                # default $OBLIVIATE_CACHE/llm, else <out_dir>/cache
    data:                            # alias: dataset (the key the shared study parser accepts)
      source: clinical_bias          # or a .csv/.jsonl path or a hub dataset id
      text_col: text
      label_col: label
      instruction: "Is this statement biased?"
      answers: {biased: biased, not_biased: not biased}
      validation_fraction: 0.2
    requests:
      - {kind: flip, from_label: biased, count: 20, to: not biased}
      - {kind: ids, ids: [cb-0002, cb-0003]}
    methods:                         # names, {name, config, label}, or "all"
      - relabel
      - {name: npo, config: {lr: 1e-3}, label: npo-lr1e-3}
    metrics:                         # "default"/"all", a list of groups/keys, or a mapping:
      groups: [judgement, perplexity, mia, forget_quality, crows_pairs]
      crows_pairs: {path: null, max_pairs: 200, seed: 0}
      mink_k: 0.2
    eval: {batch_size: 32, answers: 4, max_new_tokens: 12, retain_max: null}

Result rows: one per (request, seed, method, metric) with ``method`` one of the method labels or
the references ``original`` (before unlearning), ``retrained`` and ``pretrained``; metric keys and directions
are :data:`obliviate.metrics.lm_scoring.LLM_METRICS` plus ``seconds`` (lower), ``steps`` and
``peak_memory_mb`` (info).

Each finished (request, seed, method) run is a content-keyed record in ``out_dir/runs/`` like
every study's, with its generated answers. The original and the retrained reference (trained on
the retain set only, as TOFU's retain model) are cached as safetensors under ``cache_dir``, keyed
by what trains them and the LLM code's salt. ``out_dir/llm_answers.json`` holds the before/after
answers side by side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core import ConfigError, SpecError, SpecPart, check_fields, from_mapping
from ...data.prompts import TEMPLATES, TaskEncoder
from ...data.text import DEFAULT_INSTRUCTION, CrowsPair, TextDataError, TextDataset, load_crows_pairs, load_text_dataset
from ...data.text_requests import (
    LLMRequest,
    LLMRequestError,
    StatementSplit,
    parse_llm_request,
    split_statements,
)
from ...lm_training import TaskTrainConfig
from ...methods import METHODS, run_method
from ...methods.lm_base import LLMUnlearnContext, LLMUnlearnData
from ...metrics.llm import compute_llm_metrics
from ...metrics.lm_scoring import (
    LLM_METRICS,
    METRIC_GROUPS,
    ModelEval,
    evaluate_model,
    generate_answer,
    load_general_text,
)
from ...models.causal_lm import TINY
from ...utils import stable_hash, write_json_atomic
from ..keys import model_code_salt, run_code_salt
from ..parts import MethodSpec, parse_methods, parse_seeds
from .base import GroupPlan, OpenGroup, Progress, Unit
from .lm_models import TOP_LEVEL as BASE_TOP_LEVEL
from .lm_models import LLMModelSpec, LMModels, check_top_level, finished_by_method, free, spec_part, validate_model

TOP_LEVEL = BASE_TOP_LEVEL | {"metrics"}
FORMAT = 1  # of llm_answers.json
# reference rows of every group; ``pretrained`` (the model before the task tuning) only for a
# pretrained model that the study tunes (not the from-scratch tiny fixture)
REFERENCE_ROLES = ("pretrained", "original", "retrained")


# --------------------------------------------------------------------------------------------
# the spec's parts: frozen, typed, built by core.from_mapping (unknown keys refused, errors name
# the field's path)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TextDataSpec(SpecPart):
    """``data:`` (alias ``dataset:``) of an LLM study: labelled statements — the built-in
    ``clinical_bias``, a .csv/.jsonl file or a hub dataset id — and the judgement prompt."""

    source: str = "clinical_bias"
    text_col: str = "text"
    label_col: str = "label"
    id_col: str | None = None
    group_col: str | None = None
    category_col: str | None = None
    split: str = "train"
    instruction: str | None = None
    answers: dict[str, str] | None = None
    validation_fraction: float = 0.2

    @classmethod
    def from_dict(cls, d: Any) -> TextDataSpec:
        if isinstance(d, str):
            d = {"source": d}
        if isinstance(d, dict) and "name" in d:  # ``name`` is the shared study parser's word for it
            if "source" in d:
                raise ConfigError("give 'source' or its alias 'name', not both", "name")
            d = {"source": d["name"], **{k: v for k, v in d.items() if k != "name"}}
        spec: TextDataSpec = from_mapping(cls, d, "data")
        return spec

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.validation_fraction < 1:
            raise ConfigError(f"must lie in (0, 1), got {self.validation_fraction!r}", "validation_fraction")
        if self.answers is not None and not (
            isinstance(self.answers, dict) and all(isinstance(v, str) for v in self.answers.values())
        ):
            raise ConfigError(f"must map each label to its answer text, got {self.answers!r}", "answers")

    def load(self) -> TextDataset:
        return load_text_dataset(
            self.source,
            self.text_col,
            self.label_col,
            id_col=self.id_col,
            group_col=self.group_col,
            category_col=self.category_col,
            split=self.split,
            instruction=self.instruction if self.instruction is not None else DEFAULT_INSTRUCTION,
            answers=self.answers,
        )


@dataclass(frozen=True, kw_only=True)
class CrowsPairsSpec(SpecPart):
    """``metrics.crows_pairs:`` — the CrowS-Pairs file (default: the shared copy), how many pairs
    are scored (``null``: all) and the seed that draws them."""

    path: str | None = None
    max_pairs: int | None = 200
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(self)
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ConfigError(f"must be a positive integer or null, got {self.max_pairs!r}", "max_pairs")
        if self.seed < 0:
            raise ConfigError(f"must be a non-negative integer, got {self.seed!r}", "seed")

    def load(self) -> list[CrowsPair]:
        pairs = load_crows_pairs(self.path)
        order = np.random.default_rng(self.seed).permutation(len(pairs))
        return [pairs[i] for i in (order if self.max_pairs is None else order[: self.max_pairs])]


@dataclass(frozen=True, kw_only=True)
class LLMMetricsSpec(SpecPart):
    """``metrics:`` of an LLM study: ``default``/``all`` (every group), a list of groups or metric
    keys, or ``{groups, crows_pairs, mink_k}``. A key stands for its group; ``judgement`` is always
    measured."""

    groups: tuple[str, ...] = tuple(METRIC_GROUPS)
    crows_pairs: CrowsPairsSpec = dataclasses.field(default_factory=CrowsPairsSpec)
    mink_k: float = 0.2

    @classmethod
    def from_dict(cls, d: Any) -> LLMMetricsSpec:
        if d in ("default", "all", None):
            d = {}
        elif isinstance(d, list):
            d = {"groups": d}
        elif isinstance(d, dict) and "names" in d:
            d = {"groups": d["names"], **{k: v for k, v in d.items() if k != "names"}}
        elif not isinstance(d, dict):
            raise ConfigError(
                f"must be 'default', a list of groups/keys or a mapping; groups: {list(METRIC_GROUPS)}, got {d!r}"
            )
        spec: LLMMetricsSpec = from_mapping(cls, d, "metrics")
        return spec

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.mink_k <= 1:
            raise ConfigError(f"must lie in (0, 1], got {self.mink_k!r}", "mink_k")
        if not self.groups:
            raise ConfigError(f"must name at least one group: {list(METRIC_GROUPS)}", "groups")
        chosen = []
        for n in self.groups:
            owner = n if n in METRIC_GROUPS else next((g for g, keys in METRIC_GROUPS.items() if n in keys), None)
            if owner is None:
                raise ConfigError(
                    f"unknown metric {n!r}; groups: {list(METRIC_GROUPS)}, keys: {sorted(LLM_METRICS)}", "groups"
                )
            chosen.append(owner)
        groups = tuple(dict.fromkeys(chosen))
        object.__setattr__(self, "groups", groups if "judgement" in groups else ("judgement", *groups))


@dataclass(frozen=True, kw_only=True)
class LLMEvalSpec(SpecPart):
    """``eval:`` of an LLM study: scoring batch, before/after answers shown, generation length,
    and an optional cap on the retain statements scored."""

    batch_size: int = 32
    answers: int = 4
    max_new_tokens: int = 12
    retain_max: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        for k, lo in (("batch_size", 1), ("answers", 0), ("max_new_tokens", 1)):
            if getattr(self, k) < lo:
                raise ConfigError(f"LLMEvalSpec.{k} must be an integer >= {lo}, got {getattr(self, k)!r}", k)
        if self.retain_max is not None and self.retain_max < 1:
            raise ConfigError(
                f"LLMEvalSpec.retain_max must be a positive integer or null, got {self.retain_max!r}", "retain_max"
            )


# --------------------------------------------------------------------------------------------
# the validated plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMStudyPlan:
    """An LLM study, validated: its typed parts, plus what validating loaded (the statements,
    the CrowS-Pairs drawn, every request parsed and split on every seed). Nothing trained yet."""

    device: torch.device
    seeds: list[int]
    model: LLMModelSpec
    data: TextDataSpec
    metrics: LLMMetricsSpec
    eval: LLMEvalSpec
    methods: list[MethodSpec]
    requests: list[LLMRequest]
    dataset: TextDataset
    crows: list[CrowsPair]
    cache_dir: Path | None

    @property
    def train(self) -> TaskTrainConfig | None:
        return self.model.train


def validate_llm_spec(spec: dict[str, Any], out_dir: Path | None = None) -> LLMStudyPlan:
    """Check every field of an LLM study (loads the statements, resolves every split; trains
    nothing). Raises :class:`~obliviate.core.SpecError` naming the bad field's path."""
    device, data_key = check_top_level(spec, "llm", TOP_LEVEL)
    seeds = parse_seeds(spec.get("seeds", [0]))

    model, cache = validate_model(spec.get("model"), out_dir)

    data: TextDataSpec = spec_part(TextDataSpec, spec.get(data_key, {}), data_key)
    try:
        dataset = data.load()
    except (TextDataError, FileNotFoundError, ImportError, TypeError) as e:
        raise SpecError.at(f"{data_key}.source", str(e)) from None

    reqs_raw = spec.get("requests")  # every seed's split is resolved now
    if not isinstance(reqs_raw, list) or not reqs_raw:
        raise SpecError.at(
            "requests", "must be a non-empty list, e.g. [{kind: flip, from_label: biased, count: 20, to: not biased}]"
        )
    requests = []
    for i, r in enumerate(reqs_raw):
        try:
            req = parse_llm_request(r)
            for s in seeds:
                split_statements(dataset, req, s, data.validation_fraction)
        except LLMRequestError as e:
            raise SpecError.at(f"requests[{i}]", str(e)) from None
        requests.append(req)
    if len({r.describe() for r in requests}) != len(requests):
        raise SpecError.at("requests", "two requests describe the same forget set")

    methods = parse_methods(spec.get("methods", "all"), "llm", model.lora.for_methods(), REFERENCE_ROLES)
    metrics: LLMMetricsSpec = spec_part(LLMMetricsSpec, spec.get("metrics", "default"), "metrics")
    crows: list[CrowsPair] = []
    if "crows_pairs" in metrics.groups:
        try:
            crows = metrics.crows_pairs.load()
        except (FileNotFoundError, TextDataError) as e:
            raise SpecError.at("metrics.crows_pairs.path", str(e)) from None
    ev: LLMEvalSpec = spec_part(LLMEvalSpec, spec.get("eval") or {}, "eval")
    return LLMStudyPlan(
        device=device,
        seeds=seeds,
        model=model,
        data=data,
        metrics=metrics,
        eval=ev,
        methods=methods,
        requests=requests,
        dataset=dataset,
        crows=crows,
        cache_dir=cache,
    )


# --------------------------------------------------------------------------------------------
# the study
# --------------------------------------------------------------------------------------------


@dataclass
class _Handle:
    request: LLMRequest
    split: StatementSplit


class LLMTask:
    """Plans and runs an LLM study's units for the one study runner."""

    kind = "llm"

    def __init__(self, spec: Any, cache: Path, device: Any) -> None:
        self.spec, self.cache_root, self.device = spec, Path(cache), device
        self.plan_: LLMStudyPlan | None = None
        self.models: LMModels | None = None

    def prepare(self, progress: Progress) -> dict[str, Any]:
        plan: LLMStudyPlan = self.spec.task_plan  # validated once, by parse_study
        if self.device is not None:
            plan = dataclasses.replace(plan, device=self.device)
        self.plan_ = plan
        self.models = LMModels(
            plan.model,
            plan.device,
            plan.cache_dir or self.cache_root,
            lambda msg: progress.stage(f"[llm] {msg}"),
            corpus=lambda: tokenizer_corpus(plan),
            corpus_key=plan.dataset.fingerprint(),
        )
        return {
            "dataset": {"name": plan.data.source, "statements": len(plan.dataset.records)},
            "dataset_fingerprint": plan.dataset.fingerprint(),
            "metrics": list(plan.metrics.groups),
        }

    def plan(self) -> list[GroupPlan]:
        p = self.plan_
        assert p is not None and self.models is not None
        eval_key = {
            "groups": list(p.metrics.groups),
            "crows": stable_hash([dataclasses.astuple(c) for c in p.crows]),
            "mink_k": p.metrics.mink_k,
            "batch_size": p.eval.batch_size,
            "retain_max": p.eval.retain_max,
            "answers": p.eval.answers,
            "max_new_tokens": p.eval.max_new_tokens,
        }
        out = []
        for req in p.requests:
            for seed in p.seeds:
                split = split_statements(p.dataset, req, seed, p.data.validation_fraction)
                ginputs = {
                    "task": "llm",
                    "model": p.model.key(),
                    "backend": p.model.backend,
                    "bf16": p.model.bf16,
                    "train": p.train.to_dict() if p.train else None,
                    "data": p.dataset.with_labels(split.noise).fingerprint(),
                    "request": req.to_dict(),
                    "vf": p.data.validation_fraction,
                    "seed": seed,
                    "eval": eval_key,
                    "split": stable_hash(
                        {k: [int(i) for i in getattr(split, k)] for k in ("forget", "retain", "validation")}
                    ),
                    "code": model_code_salt("llm"),
                }
                roles = ("retrained", "original", *(("pretrained",) if self._has_pretrained() else ()))
                units = [
                    Unit(role, role, {}, {"group": ginputs, "reference": role, "code": run_code_salt("llm", None)})
                    for role in roles
                ]
                for mr in p.methods:
                    cls = METHODS.get(mr.name)
                    cfg = mr.build().config.to_dict()
                    units.append(
                        Unit(
                            mr.label,
                            mr.name,
                            cfg,
                            {
                                "group": ginputs,
                                "method": {"name": mr.name, "config": cfg},
                                "code": run_code_salt("llm", cls),
                            },
                        )
                    )
                out.append(GroupPlan(p.model.name, req.describe(), seed, ginputs, units, _Handle(req, split)))
        return out

    def _has_pretrained(self) -> bool:
        """A ``pretrained`` reference row: the model as loaded, before the task tuning (only for a
        pretrained model the study tunes; the tiny fixture starts from random weights)."""
        p = self.plan_
        assert p is not None
        return p.model.name != TINY and p.train is not None

    def open(self, group: GroupPlan, progress: Progress) -> OpenGroup:
        p, models = self.plan_, self.models
        assert p is not None and models is not None
        h: _Handle = group.handle
        split, seed, rq = h.split, group.seed, h.request.describe()
        ds = p.dataset.with_labels(split.noise)  # a mislabelled request: the tuning data as it was
        all_retain = np.asarray(split.retain)
        retain_rows = None  # the retain statements scored (a seeded subset when eval.retain_max is set)
        if p.eval.retain_max is not None and len(all_retain) > p.eval.retain_max:
            pick = np.random.default_rng([seed, 17]).permutation(len(all_retain))[: p.eval.retain_max]
            retain_rows = np.sort(all_retain[pick])
        encoder = task_encoder(p, models.tokenizer())
        statements = [int(i) for i in split.forget[: p.eval.answers]]
        # general-text perplexity only means something for a pretrained model (not the tiny fixture)
        general = load_general_text() if p.model.name != TINY else None

        def evaluate(model: nn.Module) -> ModelEval:
            return evaluate_model(
                model,
                encoder,
                ds,
                split,
                device=p.device,
                batch_size=p.eval.batch_size,
                groups=p.metrics.groups,
                retain_rows=retain_rows,
                crows_pairs=p.crows,
                mink_k=p.metrics.mink_k,
                general_text=general,
                bf16=p.model.bf16,
            )

        def answers_of(model: nn.Module, ev: ModelEval) -> dict[str, dict[str, str]]:
            labels = list(ds.answers)
            out = {}
            pos = {int(r): j for j, r in enumerate(ev.rows["forget"])}
            for i in statements:
                rec = ds.records[i]
                out[rec.id] = {
                    "text": generate_answer(
                        model,
                        encoder,
                        rec.text,
                        max_new_tokens=p.eval.max_new_tokens,
                        device=p.device,
                        bf16=p.model.bf16,
                    ),
                    "judgement": ds.answers[labels[int(ev.preds("forget")[pos[i]])]],
                }
            return out

        progress.stage(f"[llm] {rq} seed {seed}: reference models")
        retrained, rinfo = _tuned(models, encoder, "retrained", ds, np.sort(split.retain), seed)
        ev_retrained = evaluate(retrained)
        ans_retrained = answers_of(retrained, ev_retrained)
        del retrained
        free(p.device)
        original, oinfo = _tuned(models, encoder, "original", ds, split.train, seed)
        ev_original = evaluate(original)
        ctx = LLMUnlearnContext(device=p.device, seed=seed, bf16=p.model.bf16, backend=models.backend)

        def body(vals: dict[str, tuple[float, str]], answers: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
            return {
                "dataset": str(p.data.source),
                "values": {k: float(v) for k, (v, _) in vals.items()},
                "directions": {k: d for k, (_, d) in vals.items()},
                "answers": answers,
                "info": info,
            }

        def run(unit: Unit) -> dict[str, Any]:
            if unit.label == "retrained":
                vals = compute_llm_metrics(
                    ev_retrained, ev_original, None, dataset=ds, split=split, groups=p.metrics.groups
                )
                vals["seconds"] = (rinfo["seconds"], "info")
                return body(vals, ans_retrained, rinfo)
            if unit.label == "original":
                vals = compute_llm_metrics(
                    ev_original, ev_original, ev_retrained, dataset=ds, split=split, groups=p.metrics.groups
                )
                vals["seconds"] = (oinfo["seconds"], "info")
                return body(vals, answers_of(original, ev_original), oinfo)
            if unit.label == "pretrained":
                base = models.pretrained()
                ev = evaluate(base)
                vals = compute_llm_metrics(
                    ev, ev_original, ev_retrained, dataset=ds, split=split, groups=p.metrics.groups
                )
                out = body(vals, answers_of(base, ev), {"source": p.model.name, "seconds": 0.0})
                del base
                free(p.device)
                return out
            method = METHODS.get(unit.method_name)(unit.method_config)
            data = LLMUnlearnData(ds, split, encoder, type(method).uses)
            result, stats = run_method(method, original, data, ctx)
            ev = evaluate(result.model)
            vals = compute_llm_metrics(ev, ev_original, ev_retrained, dataset=ds, split=split, groups=p.metrics.groups)
            vals["seconds"] = (stats.seconds, "lower")
            vals["steps"] = (float(stats.steps), "info")
            if stats.peak_memory_mb is not None:
                vals["peak_memory_mb"] = (float(stats.peak_memory_mb), "info")
            info = {
                **result.info,
                "splits_read": stats.splits_read,
                "seconds": stats.seconds,
                "memory_basis": stats.memory_basis,
            }
            out = body(vals, answers_of(result.model, ev), info)
            del result
            free(p.device)
            return out

        record = {
            "task": "llm",
            "model": p.model.name,
            "request": rq,
            "seed": seed,
            "references": {"original": oinfo, "retrained": rinfo},
            "label_noise": [
                {"id": p.dataset.records[i].id, "true": p.dataset.records[i].label, "injected": lab}
                for i, lab in sorted(split.noise.items())
            ],
        }
        return OpenGroup(run=run, record=record)

    def finish(self, records: list[dict[str, Any]], out_dir: Path) -> None:
        """``llm_answers.json``: before/after answers of every model for the first forget
        statements of each request (first seed only), from the current records."""
        p = self.plan_
        assert p is not None
        blocks = []
        for req in p.requests:
            seed = p.seeds[0]
            if p.eval.answers == 0:
                continue
            split = split_statements(p.dataset, req, seed, p.data.validation_fraction)
            recs = finished_by_method(records, req.describe(), seed)
            statements = []
            for i in split.forget[: p.eval.answers]:
                rec = p.dataset.records[int(i)]
                statements.append(
                    {
                        "id": rec.id,
                        "text": rec.text,
                        "label": p.dataset.answers[split.noise.get(int(i), rec.label)],
                        **({"true_label": p.dataset.answers[rec.label]} if int(i) in split.noise else {}),
                        "target": p.dataset.answers[split.target_label] if split.target_label else None,
                        "answers": {label: r.get("answers", {}).get(rec.id, {}) for label, r in recs.items()},
                    }
                )
            blocks.append(
                {
                    "model": p.model.name,
                    "request": req.describe(),
                    "seed": seed,
                    "statements": statements,
                    "instruction": p.dataset.instruction,
                }
            )
        write_json_atomic(Path(out_dir) / "llm_answers.json", {"format": FORMAT, "blocks": blocks})


def tokenizer_corpus(plan: LLMStudyPlan) -> list[str]:
    """The texts tiny-llama's BPE tokenizer is trained on: every statement in its prompt with its answer."""
    tmpl = TEMPLATES[plan.model.template]
    lead = " " if plan.model.template == "short" else ""
    return [
        tmpl.format(instruction=plan.dataset.instruction, text=r.text) + lead + plan.dataset.answers[r.label]
        for r in plan.dataset.records
    ]


def task_encoder(plan: LLMStudyPlan, tokenizer: Any) -> TaskEncoder:
    """The judgement task's prompts and answers as token batches."""
    m = plan.model
    return TaskEncoder(
        tokenizer, plan.dataset.instruction, plan.dataset.answers, m.template, m.max_length, system=m.system
    )


def _tuned(
    models: LMModels, encoder: TaskEncoder, role: str, ds: TextDataset, rows: np.ndarray, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """The task fine-tune on the statements ``rows`` of ``ds`` (a ``mislabelled`` request passes
    the copy with its label noise)."""
    recs = ds.records
    return models.trained(
        role,
        encoder,
        [recs[i].text for i in rows],
        [ds.answers[recs[i].label] for i in rows],
        [int(r) for r in rows],
        seed,
        ds.fingerprint(),
    )

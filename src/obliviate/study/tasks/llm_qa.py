"""The fictitious-entity task of the one study runner: TOFU's benchmark, generated offline.

A causal LM is tuned on question/answer pairs about invented entities
(:mod:`obliviate.data.fictitious`); a request forgets every pair of a share of the entities.
Each (request, seed) group has the references TOFU compares with — ``original`` (the *full* model,
tuned on every entity), ``retrained`` (the *retain* model, tuned without the forgotten ones) and,
for a pretrained model, ``pretrained`` (as loaded) — and one run per LLM method, all measured by
:func:`obliviate.metrics.lm_rows.qa_measures`: TOFU's forget quality and model utility, ROUGE-L,
truth ratios, verbatim memorisation, extraction strength and the membership attacks (the forget
rows against entities held out of every tuning).

Spec (``scales`` already resolved)::

    task: llm_qa
    device: auto
    seeds: [0]                       # each seed: the forget entities drawn, the tunings' seed
    model: {...}                     # as an LLM study's (obliviate.study.tasks.lm_models.LLMModelSpec);
                                     # template chat: the tokenizer's chat template, else "Question: ...\\nAnswer:"
    data:
      source: fictitious             # the generated benchmark
      entities: 200                  # entities tuned on (forgotten or retained)
      heldout_entities: 20           # more entities, never tuned on: the attacks' non-members
      seed: 0                        # the benchmark's text
      perturbed: 5                   # wrong answers per pair (TOFU: 5)
      organisations: 0.25
      world_facts: null              # a .jsonl of general-knowledge pairs (default: the bundled set)
    requests:
      - {forget_percent: 10}         # TOFU's forget01 / forget05 / forget10 are 1 / 5 / 10
    methods: all                     # the LLM methods (names, {name, config, label})
    eval: {batch_size: 16, max_new_tokens: 40, retain_max: null, answers: 4}
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
from ...data.fictitious import FictitiousBenchmark, FictitiousDataError, QAPair, generate, load_world_facts
from ...data.prompts import PairEncoder, TextRow
from ...methods import METHODS, run_method
from ...methods.lm_base import LLMUnlearnContext, PairUnlearnData
from ...metrics.lm_rows import QA_METRICS, QAMeasures, qa_measures, qa_metrics
from ...models.causal_lm import TINY
from ...utils import stable_hash, write_json_atomic
from ..keys import model_code_salt, run_code_salt
from ..parts import MethodSpec, parse_methods, parse_seeds
from .base import GroupPlan, OpenGroup, Progress, Unit
from .lm_models import LLMModelSpec, LMModels, check_top_level, finished_by_method, free, spec_part, validate_model

REFERENCE_ROLES = ("pretrained", "original", "retrained")
FORMAT = 1  # of llm_answers.json


@dataclass(frozen=True, kw_only=True)
class QADataSpec(SpecPart):
    """``data:`` of a fictitious-entity study: the generated benchmark's size and seed, the
    entities held out of every tuning, and the world facts that measure general knowledge."""

    source: str = "fictitious"
    entities: int = 200
    heldout_entities: int = 20
    seed: int = 0
    perturbed: int = 5
    organisations: float = 0.25
    world_facts: str | None = None

    @classmethod
    def from_dict(cls, d: Any) -> QADataSpec:
        if isinstance(d, str):
            d = {"source": d}
        spec: QADataSpec = from_mapping(cls, d, "data")
        return spec

    def __post_init__(self) -> None:
        check_fields(self)
        if self.source != "fictitious":
            raise ConfigError(
                f"must be 'fictitious' (the benchmark obliviate generates), got {self.source!r}", "source"
            )
        if self.heldout_entities < 1:
            raise ConfigError(
                f"must be >= 1: the membership attacks compare the forget rows with entities never tuned on, "
                f"got {self.heldout_entities!r}",
                "heldout_entities",
            )

    def load(self) -> tuple[FictitiousBenchmark, list[QAPair]]:
        bench = generate(
            self.entities + self.heldout_entities,
            seed=self.seed,
            organisations=self.organisations,
            n_perturbed=self.perturbed,
        )
        return bench, load_world_facts(self.world_facts)


@dataclass(frozen=True, kw_only=True)
class QARequest(SpecPart):
    """One request: forget every pair of ``forget_percent`` % of the tuned entities."""

    forget_percent: float = 10.0

    @classmethod
    def from_dict(cls, d: Any) -> QARequest:
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            d = {"forget_percent": d}
        spec: QARequest = from_mapping(cls, d, "request")
        return spec

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.forget_percent < 100:
            raise ConfigError(
                f"must lie in (0, 100) — TOFU's splits are 1, 5 and 10 — got {self.forget_percent!r}", "forget_percent"
            )

    def describe(self) -> str:
        return f"forget{self.forget_percent:02g}"


@dataclass(frozen=True, kw_only=True)
class QAEvalSpec(SpecPart):
    """``eval:`` of a fictitious-entity study: scoring batch, greedy answer length, an optional
    cap on the retain rows scored (a seeded sample of them), and how many forget
    questions' answers the report shows."""

    batch_size: int = 16
    max_new_tokens: int = 40
    retain_max: int | None = None
    answers: int = 4

    def __post_init__(self) -> None:
        check_fields(self)
        for k, lo in (("batch_size", 1), ("max_new_tokens", 1), ("answers", 0)):
            if getattr(self, k) < lo:
                raise ConfigError(f"must be an integer >= {lo}, got {getattr(self, k)!r}", k)
        if self.retain_max is not None and self.retain_max < 1:
            raise ConfigError(f"must be a positive integer or null, got {self.retain_max!r}", "retain_max")


@dataclass(frozen=True)
class QAStudyPlan:
    """A fictitious-entity study, validated: its typed parts and the generated benchmark."""

    device: torch.device
    seeds: list[int]
    model: LLMModelSpec
    data: QADataSpec
    requests: list[QARequest]
    methods: list[MethodSpec]
    eval: QAEvalSpec
    bench: FictitiousBenchmark
    world: list[QAPair]
    cache_dir: Path | None

    @property
    def template(self) -> str:
        """The pair encoder's template: the tokenizer's chat template or ``qa``."""
        return "chat" if self.model.template == "chat" else "qa"


def validate_qa_spec(spec: dict[str, Any], out_dir: Path | None = None) -> QAStudyPlan:
    """Check every field of a fictitious-entity study (generates the benchmark and resolves every
    split; trains nothing). Raises :class:`~obliviate.core.SpecError` naming the bad field's path."""
    device, data_key = check_top_level(spec, "llm_qa")
    seeds = parse_seeds(spec.get("seeds", [0]))
    model, cache = validate_model(spec.get("model"), out_dir)
    data: QADataSpec = spec_part(QADataSpec, spec.get(data_key) or {}, data_key)
    try:
        bench, world = data.load()
    except FictitiousDataError as e:
        raise SpecError.at(data_key, str(e)) from None
    raw_reqs = spec.get("requests")
    if not isinstance(raw_reqs, list) or not raw_reqs:
        raise SpecError.at("requests", "must be a non-empty list, e.g. [{forget_percent: 10}]")
    requests: list[QARequest] = []
    for i, r in enumerate(raw_reqs):
        req: QARequest = spec_part(QARequest, r, f"requests[{i}]")
        for s in seeds:
            try:
                bench.entity_split(req.forget_percent, s, data.heldout_entities)
            except FictitiousDataError as e:
                raise SpecError.at(f"requests[{i}]", str(e)) from None
        requests.append(req)
    if len({r.describe() for r in requests}) != len(requests):
        raise SpecError.at("requests", "two requests forget the same share")
    methods = parse_methods(spec.get("methods", "all"), "llm", model.lora.for_methods(), REFERENCE_ROLES)
    ev: QAEvalSpec = spec_part(QAEvalSpec, spec.get("eval") or {}, "eval")
    return QAStudyPlan(device, seeds, model, data, requests, methods, ev, bench, world, cache)


def as_row(p: QAPair) -> TextRow:
    """A benchmark pair as the row the methods and the measures read."""
    return TextRow(p.question, p.answer, None, p.paraphrase, p.perturbed)


@dataclass
class _Handle:
    request: QARequest
    forget: np.ndarray
    retain: np.ndarray
    heldout: np.ndarray
    forget_entities: tuple[str, ...]


class QATask:
    """Plans and runs a fictitious-entity study's units for the one study runner."""

    kind = "llm_qa"

    def __init__(self, spec: Any, cache: Path, device: Any) -> None:
        self.spec, self.cache_root, self.device = spec, Path(cache), device
        self.plan_: QAStudyPlan | None = None
        self.models: LMModels | None = None

    def prepare(self, progress: Progress) -> dict[str, Any]:
        plan: QAStudyPlan = self.spec.task_plan
        if self.device is not None:
            plan = dataclasses.replace(plan, device=self.device)
        self.plan_ = plan
        self.models = LMModels(
            plan.model,
            plan.device,
            plan.cache_dir or self.cache_root,
            lambda msg: progress.stage(f"[llm_qa] {msg}"),
            corpus=lambda: [f"Question: {q.question}\nAnswer: {q.answer}" for q in (*plan.bench.pairs, *plan.world)],
            corpus_key=plan.bench.fingerprint(),
            task="llm_qa",
        )
        return {
            "dataset": {
                "name": "fictitious",
                "entities": plan.data.entities,
                "heldout_entities": plan.data.heldout_entities,
                "pairs": len(plan.bench.pairs),
                "world_facts": len(plan.world),
            },
            "dataset_fingerprint": plan.bench.fingerprint(),
            "metrics": list(QA_METRICS),
        }

    def _encoder(self) -> PairEncoder:
        p, models = self.plan_, self.models
        assert p is not None and models is not None
        return PairEncoder(models.tokenizer(), p.template, p.model.max_length, p.model.system)

    def plan(self) -> list[GroupPlan]:
        p = self.plan_
        assert p is not None
        eval_key = {**p.eval.to_dict(), "world": stable_hash([w.to_dict() for w in p.world])}
        out = []
        for req in p.requests:
            for seed in p.seeds:
                s = p.bench.entity_split(req.forget_percent, seed, p.data.heldout_entities)
                ginputs = {
                    "task": "llm_qa",
                    "model": p.model.key(),
                    "backend": p.model.backend,
                    "bf16": p.model.bf16,
                    "train": p.model.train.to_dict() if p.model.train else None,
                    "data": p.bench.fingerprint(),
                    "request": req.to_dict(),
                    "seed": seed,
                    "eval": eval_key,
                    "split": stable_hash({k: [int(i) for i in getattr(s, k)] for k in ("forget", "retain", "heldout")}),
                    "code": model_code_salt("llm_qa"),
                }
                roles = ("retrained", "original", *(("pretrained",) if self._has_pretrained() else ()))
                units = [
                    Unit(role, role, {}, {"group": ginputs, "reference": role, "code": run_code_salt("llm_qa", None)})
                    for role in roles
                ]
                for mr in p.methods:
                    cfg = mr.build().config.to_dict()
                    units.append(
                        Unit(
                            mr.label,
                            mr.name,
                            cfg,
                            {
                                "group": ginputs,
                                "method": {"name": mr.name, "config": cfg},
                                "code": run_code_salt("llm_qa", METHODS.get(mr.name)),
                            },
                        )
                    )
                handle = _Handle(req, s.forget, s.retain, s.heldout, s.forget_entities)
                out.append(GroupPlan(p.model.name, req.describe(), seed, ginputs, units, handle))
        return out

    def _has_pretrained(self) -> bool:
        p = self.plan_
        assert p is not None
        return p.model.name != TINY and p.model.train is not None

    def open(self, group: GroupPlan, progress: Progress) -> OpenGroup:
        p, models = self.plan_, self.models
        assert p is not None and models is not None
        h: _Handle = group.handle
        seed = group.seed
        pairs = p.bench.pairs
        enc = self._encoder()
        forget = [as_row(pairs[i]) for i in h.forget]
        retain = [as_row(pairs[i]) for i in h.retain]
        heldout = [as_row(pairs[i]) for i in h.heldout]
        world = [as_row(w) for w in p.world]
        scored = np.arange(len(retain))
        if p.eval.retain_max is not None and len(retain) > p.eval.retain_max:
            scored = np.sort(np.random.default_rng([seed, 17]).permutation(len(retain))[: p.eval.retain_max])
        retain_eval = [retain[i] for i in scored]
        shown = forget[: p.eval.answers]

        def measure(model: nn.Module) -> QAMeasures:
            return qa_measures(
                model,
                enc,
                forget=forget,
                retain=retain_eval,
                heldout=heldout,
                world=world,
                device=p.device,
                bf16=p.model.bf16,
                batch_size=p.eval.batch_size,
                max_new_tokens=p.eval.max_new_tokens,
            )

        def tuned(role: str, rows: np.ndarray) -> tuple[nn.Module, dict[str, Any]]:
            return models.trained(
                role,
                enc,
                [pairs[i].question for i in rows],
                [pairs[i].answer for i in rows],
                [int(i) for i in rows],
                seed,
                p.bench.fingerprint(),
            )

        progress.stage(f"[llm_qa] {group.request} seed {seed}: reference models")
        retrained, rinfo = tuned("retrained", h.retain)
        m_retrained = measure(retrained)
        del retrained
        free(p.device)
        original, oinfo = tuned("original", np.sort(np.concatenate([h.forget, h.retain])))
        m_original = measure(original)
        ctx = LLMUnlearnContext(device=p.device, seed=seed, bf16=p.model.bf16, backend=models.backend)

        def body(m: QAMeasures, info: dict[str, Any], extra: dict[str, tuple[float, str]]) -> dict[str, Any]:
            vals = {**qa_metrics(m, m_retrained), **extra}
            return {
                "dataset": "fictitious",
                "values": {k: float(v) for k, (v, _) in vals.items()},
                "directions": {k: d for k, (_, d) in vals.items()},
                "answers": {
                    f"{pairs[i].id}": {"text": a} for i, a in zip(h.forget[: len(shown)], m.answers[: len(shown)])
                },
                "info": info,
            }

        def run(unit: Unit) -> dict[str, Any]:
            if unit.label == "retrained":
                return body(m_retrained, rinfo, {"seconds": (rinfo["seconds"], "info")})
            if unit.label == "original":
                return body(m_original, oinfo, {"seconds": (oinfo["seconds"], "info")})
            if unit.label == "pretrained":
                base = models.pretrained()
                out = body(measure(base), {"source": p.model.name}, {"seconds": (0.0, "info")})
                del base
                free(p.device)
                return out
            method = METHODS.get(unit.method_name)(unit.method_config)
            data = PairUnlearnData({"forget": forget, "retain": retain}, enc, type(method).uses)
            result, stats = run_method(method, original, data, ctx)
            extra = {"seconds": (stats.seconds, "lower"), "steps": (float(stats.steps), "info")}
            if stats.peak_memory_mb is not None:
                extra["peak_memory_mb"] = (float(stats.peak_memory_mb), "info")
            info = {**result.info, "splits_read": stats.splits_read, "seconds": stats.seconds}
            out = body(measure(result.model), info, extra)
            del result
            free(p.device)
            return out

        names = {e.id: e.name for e in p.bench.entities}
        record = {
            "task": "llm_qa",
            "model": p.model.name,
            "request": group.request,
            "seed": seed,
            "references": {"original": oinfo, "retrained": rinfo},
            "forget_entities": [names[e] for e in h.forget_entities],
            "rows": {"forget": len(forget), "retain": len(retain), "retain_scored": len(retain_eval)},
        }
        return OpenGroup(run=run, record=record)

    def finish(self, records: list[dict[str, Any]], out_dir: Path) -> None:
        """``llm_answers.json``: every model's greedy answer to the first forget questions of each
        request (first seed), beside the true answer."""
        p = self.plan_
        assert p is not None
        blocks = []
        seed = p.seeds[0]
        for req in p.requests:
            if p.eval.answers == 0:
                continue
            s = p.bench.entity_split(req.forget_percent, seed, p.data.heldout_entities)
            recs = finished_by_method(records, req.describe(), seed)
            statements = []
            for i in s.forget[: p.eval.answers]:
                pair = p.bench.pairs[int(i)]
                statements.append(
                    {
                        "id": pair.id,
                        "text": pair.question,
                        "label": pair.answer,
                        "answers": {label: r.get("answers", {}).get(pair.id, {}) for label, r in recs.items()},
                    }
                )
            blocks.append(
                {
                    "model": p.model.name,
                    "request": req.describe(),
                    "seed": seed,
                    "statements": statements,
                    "kind": "qa",
                }
            )
        write_json_atomic(Path(out_dir) / "llm_answers.json", {"format": FORMAT, "blocks": blocks})

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

import copy
import dataclasses
import difflib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core import ConfigError, SpecError, check_fields, from_mapping
from ...data.prompts import TEMPLATE_NAMES, TEMPLATES, TaskEncoder
from ...data.text import CrowsPair, TextDataError, TextDataset, load_crows_pairs, load_text_dataset
from ...data.text_requests import (
    LLMRequest,
    LLMRequestError,
    StatementSplit,
    parse_llm_request,
    split_statements,
)
from ...lm_training import TaskTrainConfig, train_task_model
from ...methods import METHODS, UnlearningMethod, list_methods, run_method
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
from ...models.causal_lm import (
    DTYPES,
    TINY,
    LoraSettings,
    TinyLlamaSpec,
    attach_lora,
    build_tiny_llama,
    check_model_folder,
    load_pretrained,
    load_weights,
    merge_lora,
    resolve_backend,
    save_weights,
)
from ...utils import resolve_device, stable_hash, write_json_atomic
from ..keys import model_code_salt, run_code_salt
from .base import GroupPlan, OpenGroup, Progress, Unit

TOP_LEVEL = {
    "task",
    "name",
    "description",
    "scale_note",
    "paper",
    "scales",
    "output",
    "device",
    "seeds",
    "model",
    "data",
    "dataset",
    "requests",
    "methods",
    "metrics",
    "eval",
    "runtime",
}
MODEL_KEYS = {
    "name",
    "tiny",
    "backend",
    "dtype",
    "bf16",
    "template",
    "system",
    "max_length",
    "lora",
    "train",
    "cache_dir",
    "revision",
    "vocab_size",
}
DATA_KEYS = {
    "source",
    "name",
    "text_col",
    "label_col",
    "id_col",
    "group_col",
    "category_col",
    "split",
    "instruction",
    "answers",
    "validation_fraction",
}
METRIC_KEYS = {"groups", "names", "crows_pairs", "mink_k"}
CROWS_KEYS = {"path", "max_pairs", "seed"}
LORA_TO_METHOD = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "lora_targets"}
FORMAT = 1
# reference rows of every group; ``pretrained`` (the model before the task tuning) only for a
# pretrained model that the study tunes (not the from-scratch tiny fixture)
REFERENCE_ROLES = ("pretrained", "original", "retrained")


@dataclass(frozen=True, kw_only=True)
class LLMEvalSpec:
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


def _err(path: str, msg: str) -> SpecError:
    return SpecError.at(path, msg)


# --------------------------------------------------------------------------------------------
# the validated plan
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodRun:
    name: str
    label: str
    config: dict[str, Any]

    def build(self) -> UnlearningMethod:
        return METHODS.get(self.name)(self.config)


@dataclass
class LLMStudyPlan:
    """Everything an LLM study needs, validated (nothing trained yet)."""

    raw: dict[str, Any]
    device: torch.device
    seeds: list[int]
    model_name: str
    tiny: TinyLlamaSpec
    backend: str
    dtype: str
    bf16: bool
    template: str
    system: str | None
    max_length: int
    revision: str | None
    train: TaskTrainConfig | None
    dataset: TextDataset
    data_spec: dict[str, Any]
    validation_fraction: float
    requests: list[LLMRequest]
    methods: list[MethodRun]
    groups: tuple[str, ...]
    crows: list[CrowsPair]
    mink_k: float
    eval_batch: int
    n_answers: int
    max_new_tokens: int
    retain_max: int | None
    cache_dir: Path | None

    @property
    def model_label(self) -> str:
        return self.model_name

    def model_key(self) -> dict[str, Any]:
        from ...models.sources import source_key

        return {
            "name": self.model_name,
            "tiny": self.tiny.to_dict() if self.model_name == TINY else None,
            "dtype": self.dtype,
            "template": self.template,
            "max_length": self.max_length,
            **({"system": self.system} if self.system is not None else {}),
            "revision": self.revision,
            **({"source": source_key(self.model_name)} if source_key(self.model_name) else {}),
        }


def _mapping(d: Any, path: str, keys: set[str]) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise _err(path, f"must be a mapping, got {type(d).__name__} {d!r}")
    bad = sorted(set(d) - keys)
    if bad:
        near = {b: difflib.get_close_matches(b, sorted(keys), n=1) for b in bad}
        hint = "; ".join(f"{b!r} (did you mean {n[0]!r}?)" for b, n in near.items() if n)
        raise _err(path, f"unknown field(s) {bad}{' — ' + hint if hint else ''}; allowed: {sorted(keys)}")
    return dict(d)


def _pos_int(v: Any, path: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _err(path, f"must be a positive integer, got {v!r}")
    return v


def _opt_pos_int(v: Any, path: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise _err(path, f"must be a positive integer or null, got {v!r}")
    return v


def validate_llm_spec(spec: dict[str, Any], out_dir: Path | None = None) -> LLMStudyPlan:
    """Check every field of an LLM study (loads the statements, resolves every split; trains
    nothing). Raises :class:`~obliviate.core.SpecError` naming the bad field's path."""
    if not isinstance(spec, dict):
        raise SpecError(f"an LLM study spec must be a mapping, got {type(spec).__name__}")
    d = _mapping(spec, "study", TOP_LEVEL)
    if d.get("task", "llm") != "llm":
        raise _err("task", f"must be 'llm' for an LLM study, got {d.get('task')!r}")
    if "data" in d and "dataset" in d:
        raise _err("data", "give 'data' or its alias 'dataset', not both")
    try:
        device = resolve_device(d.get("device", "auto"))
    except (ValueError, RuntimeError) as e:
        raise _err("device", str(e)) from None

    seeds = d.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise _err("seeds", f"must be a non-empty list of distinct non-negative integers, got {seeds!r}")

    # -- model ----------------------------------------------------------------------------------
    m = _mapping(d.get("model", {"name": TINY}), "model", MODEL_KEYS)
    name = m.get("name", TINY)
    if not isinstance(name, str) or not name:
        raise _err("model.name", f"must be 'tiny-llama', an offline source, a hub id or a local folder, got {name!r}")
    try:
        check_model_folder(name)
    except FileNotFoundError as e:
        raise _err("model.name", str(e)) from None
    try:
        tiny = TinyLlamaSpec(
            **_mapping(m.get("tiny"), "model.tiny", {f.name for f in dataclasses.fields(TinyLlamaSpec)})
        )
    except (TypeError, ValueError) as e:
        raise _err("model.tiny", str(e)) from None
    backend = m.get("backend", "hf")
    if backend not in ("hf", "unsloth"):
        raise _err("model.backend", f"must be 'hf' or 'unsloth', got {backend!r}")
    dtype = m.get("dtype", "float32")
    if dtype not in DTYPES:
        raise _err("model.dtype", f"must be one of {sorted(DTYPES)}, got {dtype!r}")
    bf16 = m.get("bf16", False)
    if not isinstance(bf16, bool):
        raise _err("model.bf16", f"must be true or false, got {bf16!r}")
    template = m.get("template", "short" if name == TINY else "alpaca")
    if template not in TEMPLATE_NAMES:
        raise _err("model.template", f"must be one of {TEMPLATE_NAMES}, got {template!r}")
    if template == "chat" and name == TINY:
        raise _err(
            "model.template",
            "'chat' needs a hub tokenizer with a chat template; use 'short' or 'alpaca' for tiny-llama",
        )
    system = m.get("system")
    if system is not None and (not isinstance(system, str) or template != "chat"):
        raise _err(
            "model.system",
            f"is the chat template's system message: a string with template 'chat' "
            f"(got {system!r} with template {template!r})",
        )
    max_length = _pos_int(m.get("max_length", 128), "model.max_length")
    if max_length < 16:
        raise _err("model.max_length", f"must be >= 16, got {max_length}")
    lora_raw = _mapping(m.get("lora"), "model.lora", set(LORA_TO_METHOD))
    try:
        lora_kwargs: dict[str, Any] = {k: (tuple(v) if k == "targets" else v) for k, v in lora_raw.items()}
        LoraSettings(**lora_kwargs)
    except (TypeError, ValueError) as e:
        raise _err("model.lora", str(e)) from None
    train_raw = m.get("train", {}) if "train" in m else {}
    train: TaskTrainConfig | None
    if train_raw is None:
        train = None
    else:
        tr = dict(_mapping(train_raw, "model.train", set(TaskTrainConfig.__dataclass_fields__)))
        tr.setdefault("lora", {k: v for k, v in lora_raw.items()})
        try:
            train = TaskTrainConfig.from_dict(tr)
        except (TypeError, ValueError) as e:
            raise _err("model.train", str(e)) from None
    if name == TINY and train is None:
        raise _err("model.train", "tiny-llama starts untrained: it needs a task fine-tune (model.train)")
    from ...models.sources import SOURCES

    if name != TINY and name not in SOURCES and not Path(name).expanduser().exists() and "/" not in name:
        raise _err(
            "model.name",
            f"{name!r} is neither 'tiny-llama', an offline source ({', '.join(sorted(SOURCES))}), "
            "an existing folder, nor a hub id 'owner/name'",
        )
    cache_dir = m.get("cache_dir") or (
        str(Path(os.environ["OBLIVIATE_CACHE"]) / "llm") if os.environ.get("OBLIVIATE_CACHE") else None
    )
    cache = Path(cache_dir).expanduser() if cache_dir else (out_dir / "cache" if out_dir is not None else None)

    # -- data -----------------------------------------------------------------------------------
    data_key = "data" if "data" in d or "dataset" not in d else "dataset"
    ds_raw = d.get(data_key, {"source": "clinical_bias"})
    if isinstance(ds_raw, str):
        ds_raw = {"source": ds_raw}
    ds_raw = _mapping(ds_raw, data_key, DATA_KEYS)
    source = ds_raw.get("source", ds_raw.get("name", "clinical_bias"))
    vf = ds_raw.get("validation_fraction", 0.2)
    if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 < float(vf) < 1:
        raise _err(f"{data_key}.validation_fraction", f"must lie in (0, 1), got {vf!r}")
    kwargs = {
        k: ds_raw[k] for k in ("id_col", "group_col", "category_col", "split", "instruction", "answers") if k in ds_raw
    }
    try:
        dataset = load_text_dataset(source, ds_raw.get("text_col", "text"), ds_raw.get("label_col", "label"), **kwargs)
    except (TextDataError, FileNotFoundError, ImportError, TypeError) as e:
        raise _err(f"{data_key}.source", str(e)) from None

    # -- requests (every seed's split is resolved now) ------------------------------------------
    reqs_raw = d.get("requests")
    if not isinstance(reqs_raw, list) or not reqs_raw:
        raise _err(
            "requests", "must be a non-empty list, e.g. [{kind: flip, from_label: biased, count: 20, to: not biased}]"
        )
    requests = []
    for i, r in enumerate(reqs_raw):
        try:
            req = parse_llm_request(r)
            for s in seeds:
                split_statements(dataset, req, s, float(vf))
        except LLMRequestError as e:
            raise _err(f"requests[{i}]", str(e)) from None
        requests.append(req)
    if len({r.describe() for r in requests}) != len(requests):
        raise _err("requests", "two requests describe the same forget set")

    # -- methods --------------------------------------------------------------------------------
    llm_names = list_methods(kind="llm")
    meth_raw = d.get("methods", "all")
    if meth_raw == "all":
        meth_raw = llm_names
    if not isinstance(meth_raw, list) or not meth_raw:
        raise _err(
            "methods",
            f"must be 'all' or a non-empty list of names or {{name, config, label}}; LLM methods: {llm_names}",
        )
    lora_defaults = {LORA_TO_METHOD[k]: (tuple(v) if k == "targets" else v) for k, v in lora_raw.items()}
    methods = []
    for i, mm in enumerate(meth_raw):
        mm = {"name": mm} if isinstance(mm, str) else mm
        mm = _mapping(mm, f"methods[{i}]", {"name", "config", "label"})
        mname = mm.get("name")
        if mname not in llm_names:
            near = difflib.get_close_matches(str(mname), llm_names, n=1)
            raise _err(
                f"methods[{i}].name",
                f"unknown LLM method {mname!r}{f'. Did you mean {near[0]!r}?' if near else ''}; available: {llm_names}",
            )
        cfg = _mapping(
            mm.get("config"), f"methods[{i}].config", {f.name for f in dataclasses.fields(METHODS.get(mname).Config)}
        )
        merged = {**lora_defaults, **cfg}
        try:
            METHODS.get(mname)(merged)
        except (ValueError, TypeError) as e:
            raise _err(f"methods[{i}].config", str(e)) from None
        label = str(mm.get("label", mname))
        methods.append(MethodRun(mname, label, merged))
    resolved = [(mr.name, mr.build().config) for mr in methods]
    for i, r in enumerate(resolved):
        if resolved.index(r) != i:
            raise _err(f"methods[{i}]", f"is methods[{resolved.index(r)}] again: same method, same config")
    labels = [mr.label for mr in methods]
    dups = sorted({x for x in labels if labels.count(x) > 1} | (set(REFERENCE_ROLES) & set(labels)))
    if dups:
        raise _err(
            "methods",
            f"labels must be unique and not one of {list(REFERENCE_ROLES)}: {dups}; set 'label' to tell runs apart",
        )

    # -- metrics & eval ---------------------------------------------------------------------------
    met = d.get("metrics", "default")
    crows_cfg: dict[str, Any] = {}
    mink_k = 0.2
    if met in ("default", "all", None):
        groups = tuple(METRIC_GROUPS)
    else:
        if isinstance(met, dict):
            md = _mapping(met, "metrics", METRIC_KEYS)
            crows_cfg = _mapping(md.get("crows_pairs"), "metrics.crows_pairs", CROWS_KEYS)
            mink_k = md.get("mink_k", 0.2)
            if isinstance(mink_k, bool) or not isinstance(mink_k, (int, float)) or not 0 < mink_k <= 1:
                raise _err("metrics.mink_k", f"must lie in (0, 1], got {mink_k!r}")
            names = md.get("groups", md.get("names", list(METRIC_GROUPS)))
        else:
            names = met
        if not isinstance(names, list) or not names:
            raise _err(
                "metrics", f"must be 'default', a list of groups/keys or a mapping; groups: {list(METRIC_GROUPS)}"
            )
        chosen = []
        for n in names:
            if n in METRIC_GROUPS:
                chosen.append(n)
            else:
                owner = next((g for g, keys in METRIC_GROUPS.items() if n in keys), None)
                if owner is None:
                    raise _err(
                        "metrics", f"unknown metric {n!r}; groups: {list(METRIC_GROUPS)}, keys: {sorted(LLM_METRICS)}"
                    )
                chosen.append(owner)
        groups = tuple(dict.fromkeys(chosen))
        if "judgement" not in groups:
            groups = ("judgement", *groups)
    crows: list[CrowsPair] = []
    if "crows_pairs" in groups:
        max_pairs = _opt_pos_int(crows_cfg.get("max_pairs", 200), "metrics.crows_pairs.max_pairs")
        cseed = crows_cfg.get("seed", 0)
        if isinstance(cseed, bool) or not isinstance(cseed, int) or cseed < 0:
            raise _err("metrics.crows_pairs.seed", f"must be a non-negative integer, got {cseed!r}")
        try:
            allp = load_crows_pairs(crows_cfg.get("path"))
        except (FileNotFoundError, TextDataError) as e:
            raise _err("metrics.crows_pairs.path", str(e)) from None
        order = np.random.default_rng(cseed).permutation(len(allp))
        crows = [allp[i] for i in (order if max_pairs is None else order[:max_pairs])]
    try:
        ev = from_mapping(LLMEvalSpec, d.get("eval") or {}, "eval")
    except (ConfigError, TypeError) as e:
        raise _err(f"eval.{getattr(e, 'field', '')}".rstrip("."), str(e)) from None
    eval_batch, n_answers, max_new, retain_max = ev.batch_size, ev.answers, ev.max_new_tokens, ev.retain_max
    return LLMStudyPlan(
        raw=d,
        device=device,
        seeds=list(seeds),
        model_name=name,
        tiny=tiny,
        backend=backend,
        dtype=dtype,
        bf16=bf16,
        template=template,
        system=system,
        max_length=max_length,
        revision=m.get("revision"),
        train=train,
        dataset=dataset,
        data_spec={"source": str(source), **{k: v for k, v in ds_raw.items() if k not in ("source", "name")}},
        validation_fraction=float(vf),
        requests=requests,
        methods=methods,
        groups=groups,
        crows=crows,
        mink_k=float(mink_k),
        eval_batch=eval_batch,
        n_answers=n_answers,
        max_new_tokens=max_new,
        retain_max=retain_max,
        cache_dir=cache,
    )


# --------------------------------------------------------------------------------------------
# models: tokenizer, original, retrained (cached)
# --------------------------------------------------------------------------------------------


class _Models:
    """Builds and caches the tokenizer, the original and the retrained model of one study."""

    def __init__(self, plan: LLMStudyPlan, cache: Path, say: Callable[[str], None]) -> None:
        self.plan, self.cache, self.say = plan, cache, say
        self.backend = resolve_backend(plan.backend) if plan.model_name != TINY else "hf"
        if plan.model_name == TINY and plan.backend == "unsloth":
            say("backend 'unsloth' applies to hub checkpoints; tiny-llama runs on transformers + peft")
        self._tokenizer: Any = None
        self._base_tok: Any = None

    # tokenizer -----------------------------------------------------------------------------
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            p = self.plan
            if p.model_name == TINY:
                from ...models.tokenizer import build_bpe_tokenizer, load_tokenizer, save_tokenizer

                key = stable_hash(
                    {"fmt": FORMAT, "data": p.dataset.fingerprint(), "template": p.template, "vocab": p.tiny.vocab_size}
                )
                path = self.cache / "tokenizers" / f"bpe-{key}.json"
                if path.is_file():
                    self._tokenizer = load_tokenizer(path)
                else:
                    tmpl = TEMPLATES[p.template]
                    lead = " " if p.template == "short" else ""
                    corpus = [
                        tmpl.format(instruction=p.dataset.instruction, text=r.text) + lead + p.dataset.answers[r.label]
                        for r in p.dataset.records
                    ]
                    self._tokenizer = build_bpe_tokenizer(corpus, vocab_size=p.tiny.vocab_size)
                    save_tokenizer(self._tokenizer, path)
            else:
                from transformers import AutoTokenizer

                from ...models.sources import resolve_model

                tok = AutoTokenizer.from_pretrained(resolve_model(p.model_name), revision=p.revision)
                if tok.pad_token_id is None:
                    tok.pad_token = tok.eos_token
                tok.padding_side = "right"
                self._tokenizer = tok
        return self._tokenizer

    def encoder(self) -> TaskEncoder:
        p = self.plan
        return TaskEncoder(
            self.tokenizer(), p.dataset.instruction, p.dataset.answers, p.template, p.max_length, system=p.system
        )

    # models --------------------------------------------------------------------------------
    def pretrained(self) -> nn.Module:
        """The pretrained model as loaded (no task tuning): the ``pretrained`` reference row."""
        return self._fresh(0).eval()

    def _fresh(self, seed: int) -> nn.Module:
        p = self.plan
        if p.model_name == TINY:
            return build_tiny_llama(p.tiny, self.tokenizer(), seed).to(p.device)
        model, _, _ = load_pretrained(
            p.model_name,
            dtype=p.dtype,
            device=p.device,
            backend=self.backend,
            max_length=p.max_length,
            revision=p.revision,
        )
        return model

    def trained(
        self, role: str, rows: np.ndarray, seed: int, dataset: TextDataset | None = None
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The task fine-tune on ``rows`` (``role`` = original | retrained) of ``dataset`` (default:
        the study's; a ``mislabelled`` request passes the copy with its label noise), from cache if stored."""
        p = self.plan
        ds = p.dataset if dataset is None else dataset
        if p.train is None:
            return self._fresh(seed), {"seconds": 0.0, "steps": 0, "cached": False}
        spec = {
            "fmt": FORMAT,
            "model": p.model_key(),
            "data": ds.fingerprint(),
            "rows": [int(r) for r in rows],
            "train": p.train.to_dict(),
            "seed": seed,
            "bf16": p.bf16,
            "backend": self.backend,
            "code": model_code_salt("llm"),
        }
        key = stable_hash(spec, 20)
        path = self.cache / "models" / f"{role}-{key}"
        stored = load_weights(path)
        model = self._fresh(seed)
        if stored is not None:
            state, meta = stored
            if p.train.mode == "lora":
                net = attach_lora(model, p.train.lora, seed, self.backend)
                missing = set(state) - {n for n, _ in net.named_parameters()}
                if missing:
                    raise RuntimeError(f"cached adapter {path} does not fit this model: e.g. {sorted(missing)[:2]}")
                net.load_state_dict(state, strict=False)
                model = merge_lora(net)
            else:
                model.load_state_dict(state, strict=True)
            self.say(f"{role} model (seed {seed}) loaded from cache")
            return model.eval(), {
                "seconds": float(meta.get("seconds", 0.0)),
                "steps": int(meta.get("steps", 0)),
                "cached": True,
            }
        self.say(f"training the {role} model (seed {seed}, {len(rows)} statements, {p.train.mode})")
        enc = self.encoder()
        recs = ds.records
        texts = [recs[i].text for i in rows]
        answers = [ds.answers[recs[i].label] for i in rows]
        adapter: dict[str, torch.Tensor] = {}
        t0 = time.perf_counter()
        model, stats = train_task_model(
            model,
            enc,
            texts,
            answers,
            [int(r) for r in rows],
            p.train,
            seed=seed,
            device=p.device,
            bf16=p.bf16,
            backend=self.backend,
            adapter_out=adapter,
        )
        seconds = time.perf_counter() - t0
        state = adapter if p.train.mode == "lora" else model.state_dict()
        save_weights(
            path,
            state,
            {"role": role, "seconds": seconds, "steps": stats.steps, "final_loss": stats.final_loss, "spec": spec},
        )
        return model.eval(), {"seconds": seconds, "steps": stats.steps, "cached": False}


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
        self.models: _Models | None = None

    def prepare(self, progress: Progress) -> dict[str, Any]:
        plan = copy.copy(self.spec.task_plan) if self.spec.task_plan is not None else validate_llm_spec(self.spec.raw)
        if self.device is not None:
            plan.device = self.device
        self.plan_ = plan
        self.models = _Models(plan, plan.cache_dir or self.cache_root, lambda msg: progress.stage(f"[llm] {msg}"))
        return {
            "dataset": {"name": plan.data_spec.get("source"), "statements": len(plan.dataset.records)},
            "dataset_fingerprint": plan.dataset.fingerprint(),
            "metrics": list(plan.groups),
        }

    def plan(self) -> list[GroupPlan]:
        p = self.plan_
        assert p is not None and self.models is not None
        eval_key = {
            "groups": list(p.groups),
            "crows": stable_hash([dataclasses.astuple(c) for c in p.crows]),
            "mink_k": p.mink_k,
            "batch_size": p.eval_batch,
            "retain_max": p.retain_max,
            "answers": p.n_answers,
            "max_new_tokens": p.max_new_tokens,
        }
        out = []
        for req in p.requests:
            for seed in p.seeds:
                split = split_statements(p.dataset, req, seed, p.validation_fraction)
                ginputs = {
                    "task": "llm",
                    "model": p.model_key(),
                    "backend": p.backend,
                    "bf16": p.bf16,
                    "train": p.train.to_dict() if p.train else None,
                    "data": p.dataset.with_labels(split.noise).fingerprint(),
                    "request": req.to_dict(),
                    "vf": p.validation_fraction,
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
                out.append(GroupPlan(p.model_label, req.describe(), seed, ginputs, units, _Handle(req, split)))
        return out

    def _has_pretrained(self) -> bool:
        """A ``pretrained`` reference row: the model as loaded, before the task tuning (only for a
        pretrained model the study tunes; the tiny fixture starts from random weights)."""
        p = self.plan_
        assert p is not None
        return p.model_name != TINY and p.train is not None

    def open(self, group: GroupPlan, progress: Progress) -> OpenGroup:
        p, models = self.plan_, self.models
        assert p is not None and models is not None
        h: _Handle = group.handle
        split, seed, rq = h.split, group.seed, h.request.describe()
        ds = p.dataset.with_labels(split.noise)  # a mislabelled request: the tuning data as it was
        all_retain = np.asarray(split.retain)
        retain_rows = None  # the retain statements scored (a seeded subset when eval.retain_max is set)
        if p.retain_max is not None and len(all_retain) > p.retain_max:
            pick = np.random.default_rng([seed, 17]).permutation(len(all_retain))[: p.retain_max]
            retain_rows = np.sort(all_retain[pick])
        encoder = models.encoder()
        statements = [int(i) for i in split.forget[: p.n_answers]]
        # general-text perplexity only means something for a pretrained model (not the tiny fixture)
        general = load_general_text() if p.model_name != TINY else None

        def evaluate(model: nn.Module) -> ModelEval:
            return evaluate_model(
                model,
                encoder,
                ds,
                split,
                device=p.device,
                batch_size=p.eval_batch,
                groups=p.groups,
                retain_rows=retain_rows,
                crows_pairs=p.crows,
                mink_k=p.mink_k,
                general_text=general,
                bf16=p.bf16,
            )

        def answers_of(model: nn.Module, ev: ModelEval) -> dict[str, dict[str, str]]:
            labels = list(ds.answers)
            out = {}
            pos = {int(r): j for j, r in enumerate(ev.rows["forget"])}
            for i in statements:
                rec = ds.records[i]
                out[rec.id] = {
                    "text": generate_answer(
                        model, encoder, rec.text, max_new_tokens=p.max_new_tokens, device=p.device, bf16=p.bf16
                    ),
                    "judgement": ds.answers[labels[int(ev.preds("forget")[pos[i]])]],
                }
            return out

        progress.stage(f"[llm] {rq} seed {seed}: reference models")
        retrained, rinfo = models.trained("retrained", np.sort(split.retain), seed, ds)
        ev_retrained = evaluate(retrained)
        ans_retrained = answers_of(retrained, ev_retrained)
        del retrained
        _free(p.device)
        original, oinfo = models.trained("original", split.train, seed, ds)
        ev_original = evaluate(original)
        ctx = LLMUnlearnContext(device=p.device, seed=seed, bf16=p.bf16, backend=models.backend)

        def body(vals: dict[str, tuple[float, str]], answers: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
            return {
                "dataset": str(p.data_spec.get("source")),
                "values": {k: float(v) for k, (v, _) in vals.items()},
                "directions": {k: d for k, (_, d) in vals.items()},
                "answers": answers,
                "info": info,
            }

        def run(unit: Unit) -> dict[str, Any]:
            if unit.label == "retrained":
                vals = compute_llm_metrics(ev_retrained, ev_original, None, dataset=ds, split=split, groups=p.groups)
                vals["seconds"] = (rinfo["seconds"], "info")
                return body(vals, ans_retrained, rinfo)
            if unit.label == "original":
                vals = compute_llm_metrics(
                    ev_original, ev_original, ev_retrained, dataset=ds, split=split, groups=p.groups
                )
                vals["seconds"] = (oinfo["seconds"], "info")
                return body(vals, answers_of(original, ev_original), oinfo)
            if unit.label == "pretrained":
                base = models.pretrained()
                ev = evaluate(base)
                vals = compute_llm_metrics(ev, ev_original, ev_retrained, dataset=ds, split=split, groups=p.groups)
                out = body(vals, answers_of(base, ev), {"source": p.model_name, "seconds": 0.0})
                del base
                _free(p.device)
                return out
            method = METHODS.get(unit.method_name)(unit.method_config)
            data = LLMUnlearnData(ds, split, encoder, type(method).uses)
            result, stats = run_method(method, original, data, ctx)
            ev = evaluate(result.model)
            vals = compute_llm_metrics(ev, ev_original, ev_retrained, dataset=ds, split=split, groups=p.groups)
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
            _free(p.device)
            return out

        record = {
            "task": "llm",
            "model": p.model_label,
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
            if p.n_answers == 0:
                continue
            split = split_statements(p.dataset, req, seed, p.validation_fraction)
            recs = {
                r["method"]: r
                for r in records
                if r["request"] == req.describe() and r["seed"] == seed and r.get("status") == "ok"
            }
            statements = []
            for i in split.forget[: p.n_answers]:
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
                    "model": p.model_label,
                    "request": req.describe(),
                    "seed": seed,
                    "statements": statements,
                    "instruction": p.dataset.instruction,
                }
            )
        write_json_atomic(Path(out_dir) / "llm_answers.json", {"format": FORMAT, "blocks": blocks})


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()

"""What both LLM study tasks share: the ``model:`` part of the spec and the models it makes.

:class:`LLMModelSpec` (with :class:`LoraDefaults`) says which causal LM a study uses, how it is
loaded, prompted and tuned on the task before anything is forgotten; :func:`validate_model`
checks it and finds the cache; :class:`LMModels` builds the tokenizer and the models — the
pretrained model as loaded, and task fine-tunes on given rows (the ``original`` on every row, the
``retrained`` reference without the forget rows), each cached under a key of what trains it.
The judgement study (:mod:`.llm`) and the fictitious-entity study (:mod:`.llm_qa`) read them alike.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ...core import ConfigError, SpecError, SpecPart, check_fields, from_mapping
from ...data.prompts import TaskEncoder
from ...lm_training import TaskTrainConfig, train_task_model
from ...models.causal_lm import (
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
from ...utils import resolve_device, stable_hash
from ..keys import model_code_salt

LORA_TO_METHOD = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "lora_targets"}
FORMAT = 1  # the cache format of tokenizers and tuned models


@dataclass(frozen=True, kw_only=True)
class LoraDefaults(SpecPart):
    """``model.lora:`` — LoRA settings every method and the task tuning start from; a field left
    out keeps the method's (or :class:`~obliviate.models.causal_lm.LoraSettings`') own default."""

    r: int | None = None
    alpha: float | None = None
    dropout: float | None = None
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        LoraSettings(**self.given())  # the ranges (r >= 1, alpha > 0, dropout in [0, 1), a target)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def for_methods(self) -> dict[str, Any]:
        """The same settings under the methods' config names (``lora_r`` ...)."""
        return {LORA_TO_METHOD[k]: v for k, v in self.given().items()}


@dataclass(frozen=True, kw_only=True)
class LLMModelSpec(SpecPart):
    """``model:`` of an LLM study: which model (``tiny-llama``, an offline source, a hub id or a
    local folder), how it is loaded, prompted and tuned on the task before anything is forgotten
    (``train: null``: use it as it is)."""

    name: str = TINY
    tiny: TinyLlamaSpec = dataclasses.field(default_factory=TinyLlamaSpec)
    backend: Literal["hf", "unsloth"] = "hf"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    bf16: bool = False
    template: Literal["auto", "alpaca", "short", "chat"] = "auto"  # auto: short for tiny-llama, else alpaca
    system: str | None = None
    max_length: int = 128
    lora: LoraDefaults = dataclasses.field(default_factory=LoraDefaults)
    train: TaskTrainConfig | None = dataclasses.field(default_factory=TaskTrainConfig)
    cache_dir: str | None = None
    revision: str | None = None

    @classmethod
    def from_dict(cls, d: Any) -> LLMModelSpec:
        if isinstance(d, dict) and isinstance(d.get("train", {}), dict):
            # the task tuning's adapter starts from model.lora too
            lora = d.get("lora") or {}
            d = {**d, "train": {"lora": lora, **(d.get("train") or {})}}
        spec: LLMModelSpec = from_mapping(cls, d, "model")
        return spec

    def __post_init__(self) -> None:
        if self.tiny is None or isinstance(self.tiny, dict):
            try:
                object.__setattr__(self, "tiny", from_mapping(TinyLlamaSpec, self.tiny or {}, "model.tiny"))
            except ConfigError as e:
                raise ConfigError(str(e), f"tiny.{e.field}" if e.field else "tiny") from None
            except (TypeError, ValueError) as e:
                raise ConfigError(str(e), "tiny") from None
        check_fields(self)
        if not self.name:
            raise ConfigError("must be 'tiny-llama', an offline source, a hub id or a local folder", "name")
        tiny = self.name == TINY
        if self.template == "auto":
            object.__setattr__(self, "template", "short" if tiny else "alpaca")
        if self.template == "chat" and tiny:
            raise ConfigError(
                "template 'chat' needs a hub tokenizer with a chat template; use 'short' or 'alpaca' for tiny-llama",
                "template",
            )
        if self.system is not None and self.template != "chat":
            raise ConfigError(
                f"system is the chat template's system message: it needs template 'chat', got {self.template!r}",
                "system",
            )
        if self.max_length < 16:
            raise ConfigError(f"max_length must be >= 16, got {self.max_length}", "max_length")
        if tiny and self.train is None:
            raise ConfigError("tiny-llama starts untrained: it needs a task fine-tune (model.train)", "train")

    def key(self) -> dict[str, Any]:
        """What makes the model what it is (a cache key part of every trained model)."""
        from ...models.sources import source_key

        return {
            "name": self.name,
            "tiny": self.tiny.to_dict() if self.name == TINY else None,
            "dtype": self.dtype,
            "template": self.template,
            "max_length": self.max_length,
            **({"system": self.system} if self.system is not None else {}),
            "revision": self.revision,
            **({"source": source_key(self.name)} if source_key(self.name) else {}),
        }


def spec_part(cls: Any, raw: Any, path: str) -> Any:
    """``cls.from_dict(raw)``, its errors re-raised as :class:`SpecError` under ``path``."""
    try:
        return cls.from_dict(raw)
    except ConfigError as e:
        raise SpecError.at(f"{path}.{e.field}" if e.field else path, str(e)) from None
    except (TypeError, ValueError) as e:
        raise SpecError.at(path, str(e)) from None


# the top-level fields every LLM study reads; a task adds its own (the judgement study: metrics)
TOP_LEVEL = frozenset(
    {
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
        "eval",
        "runtime",
    }
)


def check_top_level(spec: Any, task: str, allowed: frozenset[str] = TOP_LEVEL) -> tuple[torch.device, str]:
    """An LLM study's top level: a mapping of ``allowed`` fields (an unknown one gets a "did you
    mean"), of ``task``, with ``data`` or its alias ``dataset``; returns the device and which of
    the two data keys it uses."""
    if not isinstance(spec, dict):
        raise SpecError(f"an LLM study spec must be a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        near = {u: difflib.get_close_matches(str(u), sorted(allowed), n=1) for u in unknown}
        hint = "; ".join(f"{u!r} (did you mean {n[0]!r}?)" for u, n in near.items() if n)
        raise SpecError.at(
            "study", f"unknown field(s) {unknown}{' — ' + hint if hint else ''}; allowed: {sorted(allowed)}"
        )
    if spec.get("task", task) != task:
        raise SpecError.at("task", f"must be {task!r} for this study, got {spec.get('task')!r}")
    if "data" in spec and "dataset" in spec:
        raise SpecError.at("data", "give 'data' or its alias 'dataset', not both")
    try:
        device = resolve_device(spec.get("device", "auto"))
    except (ValueError, RuntimeError) as e:
        raise SpecError.at("device", str(e)) from None
    return device, "dataset" if "dataset" in spec else "data"


def validate_model(raw: Any, out_dir: Path | None = None) -> tuple[LLMModelSpec, Path | None]:
    """The study's ``model:`` part, checked (the name is tiny-llama, an offline source, a model
    folder or a hub id), and the folder its tuned models are cached in."""
    from ...models.sources import SOURCES

    model: LLMModelSpec = spec_part(LLMModelSpec, raw if raw is not None else {"name": TINY}, "model")
    try:
        check_model_folder(model.name)
    except FileNotFoundError as e:
        raise SpecError.at("model.name", str(e)) from None
    if model.name != TINY and model.name not in SOURCES and "/" not in model.name and not Path(model.name).exists():
        raise SpecError.at(
            "model.name",
            f"{model.name!r} is neither 'tiny-llama', an offline source ({', '.join(sorted(SOURCES))}), "
            "an existing folder, nor a hub id 'owner/name'",
        )
    cache_dir = model.cache_dir or (
        str(Path(os.environ["OBLIVIATE_CACHE"]) / "llm") if os.environ.get("OBLIVIATE_CACHE") else None
    )
    cache = Path(cache_dir).expanduser() if cache_dir else (out_dir / "cache" if out_dir is not None else None)
    return model, cache


class LMModels:
    """Builds and caches one study's tokenizer and models.

    ``corpus`` gives the texts a from-scratch BPE tokenizer is trained on (tiny-llama only) and
    ``corpus_key`` their fingerprint (part of the tokenizer's cache key); ``task`` names the code
    whose hash keys the tuned models (:func:`obliviate.study.keys.model_code_salt`)."""

    def __init__(
        self,
        model: LLMModelSpec,
        device: torch.device,
        cache: Path,
        say: Callable[[str], None],
        corpus: Callable[[], list[str]],
        corpus_key: str,
        task: str = "llm",
    ) -> None:
        self.spec, self.device, self.cache, self.say = model, device, cache, say
        self.corpus, self.corpus_key, self.task = corpus, corpus_key, task
        self.backend = resolve_backend(model.backend) if model.name != TINY else "hf"
        if model.name == TINY and model.backend == "unsloth":
            say("backend 'unsloth' applies to hub checkpoints; tiny-llama runs on transformers + peft")
        self._tokenizer: Any = None

    @property
    def train(self) -> TaskTrainConfig | None:
        return self.spec.train

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            m = self.spec
            if m.name == TINY:
                from ...models.tokenizer import build_bpe_tokenizer, load_tokenizer, save_tokenizer

                key = stable_hash(
                    {"fmt": FORMAT, "data": self.corpus_key, "template": m.template, "vocab": m.tiny.vocab_size}
                )
                path = self.cache / "tokenizers" / f"bpe-{key}.json"
                if path.is_file():
                    self._tokenizer = load_tokenizer(path)
                else:
                    self._tokenizer = build_bpe_tokenizer(self.corpus(), vocab_size=m.tiny.vocab_size)
                    save_tokenizer(self._tokenizer, path)
            else:
                from transformers import AutoTokenizer

                from ...models.sources import resolve_model

                tok = AutoTokenizer.from_pretrained(resolve_model(m.name), revision=m.revision)
                if tok.pad_token_id is None:
                    tok.pad_token = tok.eos_token
                tok.padding_side = "right"
                self._tokenizer = tok
        return self._tokenizer

    def pretrained(self) -> nn.Module:
        """The pretrained model as loaded (no task tuning): the ``pretrained`` reference row."""
        return self.fresh(0).eval()

    def fresh(self, seed: int) -> nn.Module:
        m = self.spec
        if m.name == TINY:
            return build_tiny_llama(m.tiny, self.tokenizer(), seed).to(self.device)
        model, _, _ = load_pretrained(
            m.name,
            dtype=m.dtype,
            device=self.device,
            backend=self.backend,
            max_length=m.max_length,
            revision=m.revision,
        )
        return model

    def trained(
        self,
        role: str,
        encoder: TaskEncoder,
        texts: Sequence[str],
        answers: Sequence[str],
        rows: Sequence[int],
        seed: int,
        data_key: str,
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The task fine-tune on ``prompt(texts[i]) -> answers[i]`` (``rows``: their ids in the
        data whose fingerprint is ``data_key``; ``role`` = original | retrained), from the cache
        when stored."""
        train = self.spec.train
        if train is None:
            return self.fresh(seed), {"seconds": 0.0, "steps": 0, "cached": False}
        spec = {
            "fmt": FORMAT,
            "model": self.spec.key(),
            "data": data_key,
            "rows": [int(r) for r in rows],
            "train": train.to_dict(),
            "seed": seed,
            "bf16": self.spec.bf16,
            "backend": self.backend,
            "code": model_code_salt(self.task),
        }
        key = stable_hash(spec, 20)
        path = self.cache / "models" / f"{role}-{key}"
        stored = load_weights(path)
        model = self.fresh(seed)
        if stored is not None:
            state, meta = stored
            if train.mode == "lora":
                net = attach_lora(model, train.lora, seed, self.backend)
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
        self.say(f"training the {role} model (seed {seed}, {len(rows)} rows, {train.mode})")
        adapter: dict[str, torch.Tensor] = {}
        t0 = time.perf_counter()
        model, stats = train_task_model(
            model,
            encoder,
            texts,
            answers,
            [int(r) for r in rows],
            train,
            seed=seed,
            device=self.device,
            bf16=self.spec.bf16,
            backend=self.backend,
            adapter_out=adapter,
        )
        seconds = time.perf_counter() - t0
        state = adapter if train.mode == "lora" else model.state_dict()
        save_weights(
            path,
            state,
            {"role": role, "seconds": seconds, "steps": stats.steps, "final_loss": stats.final_loss, "spec": spec},
        )
        return model.eval(), {"seconds": seconds, "steps": stats.steps, "cached": False}


def finished_by_method(records: Sequence[dict[str, Any]], request: str, seed: int) -> dict[str, dict[str, Any]]:
    """The finished records of one (request, seed) group, by method label (for the answers file)."""
    return {
        r["method"]: r for r in records if r["request"] == request and r["seed"] == seed and r.get("status") == "ok"
    }


def free(device: torch.device) -> None:
    """Return cached accelerator memory between models."""
    if device.type == "cuda":
        torch.cuda.empty_cache()

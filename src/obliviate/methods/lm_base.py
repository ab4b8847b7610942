"""What the LLM unlearning methods share: their data, context, config fields and training loop.

The contract is the vision half's (:mod:`obliviate.methods.base`): a registered
:class:`~obliviate.methods.base.UnlearningMethod` with ``kind = "llm"``, a frozen self-validating
config, ``uses`` enforced by :class:`LLMUnlearnData` (reading an undeclared split raises
:class:`~obliviate.methods.base.SplitAccessError`), and ``unlearn(model, data, ctx)`` that only
transforms the model. The model given and returned is a plain causal LM (``LlamaForCausalLM``…):
in ``mode="lora"`` a fresh adapter is attached, trained and merged back, so the returned model
has exactly the input's state-dict keys; in ``mode="full"`` the weights are trained directly.

Reference model (NPO's π_ref, the KL and RMU retain terms): in LoRA mode the same module with the
adapter switched off (``disable_adapter()``), so there is never a second copy in memory. In full
mode a frozen copy is made, and only for methods that need a live reference on retain batches
(NPO's forget-side reference log-likelihoods are computed once before training instead).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch
from torch import nn

from ..core import GuardedSplits, MethodConfig, MethodContext, MethodResult, SplitAccessError, param
from ..data.prompts import LOSS_ON, TaskEncoder, TextBatchLoader, TextRow, model_inputs, to_device
from ..data.text import TextDataset
from ..data.text_requests import StatementSplit
from ..lm_losses import kl_to_reference, mean_nll
from ..lm_training import SCHEDULES, OptimStats, optimise
from ..models.causal_lm import (
    LLAMA_TARGETS,
    LoraSettings,
    attach_lora,
    capture_adapter,
    decoder_layers,
    is_peft,
    merge_lora,
)

MODES = ("lora", "full")
ANSWER_KINDS = ("label", "target", "other")


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LLMMethodConfig(MethodConfig):
    """Fields every LLM method has. Defaults suit a 1B checkpoint with LoRA; the tiny CPU model
    needs larger learning rates (see ``configs/llm_bias_lora.yaml``)."""

    mode: Literal["lora", "full"] = param("lora", "train a LoRA adapter (merged afterwards) or every weight")
    epochs: float = param(5.0, "passes over the forget set (each step also draws a retain batch where used)")
    lr: float = param(1e-4, "peak AdamW learning rate", "η")
    batch_size: int = param(8, "statements per forget (and retain) batch")
    weight_decay: float = param(0.0, "AdamW weight decay")
    warmup_frac: float = param(0.0, "share of steps with linear warm-up")
    grad_clip: float = param(1.0, "gradient-norm clip")
    schedule: Literal["constant", "cosine"] = param("constant", "learning-rate schedule after warm-up")
    loss_on: Literal["answer", "all"] = param(
        "answer", "tokens the losses read: the answer (+EOS), as in TOFU, or the whole sequence"
    )
    lora_r: int = param(16, "LoRA rank", "r")
    lora_alpha: float = param(32.0, "LoRA scale numerator (scale = alpha / r)", "α_LoRA")
    lora_dropout: float = param(0.0, "dropout on the LoRA branch")
    lora_targets: tuple[str, ...] = param(
        LLAMA_TARGETS, "modules that get an adapter; ('all-linear',) for any architecture"
    )

    def __post_init__(self) -> None:
        if isinstance(self.lora_targets, (list, str)):
            t = self.lora_targets
            object.__setattr__(self, "lora_targets", (t,) if isinstance(t, str) else tuple(t))
        super().__post_init__()

    def validate(self) -> None:
        self._validate_common()

    def _validate_common(self) -> None:
        self._require(self.mode in MODES, "mode", f"one of {MODES}")
        self._require(self.epochs > 0, "epochs", "> 0")
        self._require(self.lr > 0, "lr", "> 0")
        self._require(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "an integer >= 1")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(0 <= self.warmup_frac < 1, "warmup_frac", "in [0, 1)")
        self._require(self.grad_clip > 0, "grad_clip", "> 0")
        self._require(self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}")
        self._require(self.loss_on in LOSS_ON, "loss_on", f"one of {LOSS_ON}")
        self._require(_is_int(self.lora_r) and self.lora_r >= 1, "lora_r", "an integer >= 1")
        self._require(self.lora_alpha > 0, "lora_alpha", "> 0")
        self._require(0 <= self.lora_dropout < 1, "lora_dropout", "in [0, 1)")
        self._require(
            len(self.lora_targets) > 0 and all(isinstance(t, str) and t for t in self.lora_targets),
            "lora_targets",
            "a non-empty list of module names",
        )

    def lora(self, layers: Sequence[int] | None = None) -> LoraSettings:
        return LoraSettings(
            r=self.lora_r,
            alpha=self.lora_alpha,
            dropout=self.lora_dropout,
            targets=tuple(self.lora_targets),
            layers=None if layers is None else tuple(layers),
        )

    def total_steps(self, n_forget: int) -> int:
        return max(1, math.ceil(self.epochs * math.ceil(n_forget / self.batch_size)))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextSplitView:
    """A read-only view of one split: per row its prompt (a statement, a question, or empty for a
    plain text), the answer the model learned, the answer the request asks for (``None``: a plain
    deletion request) and another answer (a different label, or a refusal), and its row."""

    name: str
    rows: np.ndarray
    texts: tuple[str, ...]
    learned: tuple[str, ...]
    requested: tuple[str | None, ...]
    other: tuple[str, ...]
    encoder: TaskEncoder

    def __len__(self) -> int:
        return len(self.rows)

    def answer_strings(self, which: str = "label") -> list[str]:
        """Per row: the learned answer (``label``), the requested one (``target``; the forget split
        of a request that names one), or the other answer (``other``)."""
        if which not in ANSWER_KINDS:
            raise ValueError(f"answer kind must be one of {ANSWER_KINDS}, got {which!r}")
        if which == "label":
            return list(self.learned)
        if which == "other":
            return list(self.other)
        if any(r is None for r in self.requested):
            raise ValueError(f"the {self.name} split has no requested answer (a plain deletion request)")
        return [str(r) for r in self.requested]

    def loader(
        self, batch_size: int, *, answer: str = "label", loss_on: str = "answer", shuffle: bool = True, seed: int = 0
    ) -> TextBatchLoader:
        """Token batches (dicts) of this split with the chosen answer per row."""
        return TextBatchLoader(
            self.encoder,
            self.texts,
            self.answer_strings(answer),
            self.rows.tolist(),
            batch_size=batch_size,
            loss_on=loss_on,
            shuffle=shuffle,
            seed=seed,
        )


class LLMUnlearnData(GuardedSplits):
    """The statement splits of the judgement task a method may read; an undeclared split raises
    ``SplitAccessError``. ``forget`` / ``retain`` are training statements; ``validation`` is held
    out (never trained on)."""

    def __init__(
        self, dataset: TextDataset, split: StatementSplit, encoder: TaskEncoder, allowed: frozenset[str]
    ) -> None:
        super().__init__(allowed)
        self._dataset, self._split, self._encoder = dataset, split, encoder

    @property
    def target_label(self) -> str | None:
        """The label the request asks for on the forget statements (``None``: plain deletion)."""
        return self._split.target_label

    def size(self, name: str) -> int:
        return {
            "forget": len(self._split.forget),
            "retain": len(self._split.retain),
            "validation": len(self._split.validation),
        }[name]

    def _make_view(self, name: str) -> TextSplitView:
        rows = getattr(self._split, name)
        if len(rows) == 0:
            raise SplitAccessError(f"the {name} split is empty")
        recs = [self._dataset.records[i] for i in rows]
        answers = self._dataset.answers
        order = list(answers)
        target = self._split.target_label if name == "forget" else None
        return TextSplitView(
            name,
            np.asarray(rows),
            tuple(r.text for r in recs),
            tuple(answers[r.label] for r in recs),
            tuple(None if target is None else answers[target] for _ in recs),
            tuple(answers[order[(order.index(r.label) + 1) % len(order)]] for r in recs),
            self._encoder,
        )

    @property
    def forget(self) -> TextSplitView:
        return self._view("forget")

    @property
    def retain(self) -> TextSplitView:
        return self._view("retain")

    @property
    def validation(self) -> TextSplitView:
        return self._view("validation")


REFUSAL = "I don't know."


class PairUnlearnData(LLMUnlearnData):
    """Prompt/answer pairs and plain texts of a deletion request on a causal LM, as the LLM
    methods read them: ``forget`` and ``retain`` rows the model was tuned on, ``validation`` rows
    it never saw. The *other* answer of a row is a refusal (:data:`REFUSAL`, the answer TOFU's
    "I don't know" baselines teach); a row's *requested* answer is what the request asks for."""

    def __init__(
        self,
        splits: Mapping[str, Sequence[TextRow]],
        encoder: TaskEncoder,
        allowed: frozenset[str],
        other: str = REFUSAL,
    ) -> None:
        GuardedSplits.__init__(self, allowed)
        self._rows = {k: list(v) for k, v in splits.items()}
        self._encoder, self._other = encoder, other

    @property
    def target_label(self) -> str | None:
        forget = self._rows.get("forget", [])
        return "requested" if forget and all(r.requested is not None for r in forget) else None

    def size(self, name: str) -> int:
        return len(self._rows.get(name, []))

    def _make_view(self, name: str) -> TextSplitView:
        rows = self._rows.get(name, [])
        if not rows:
            raise SplitAccessError(f"the {name} split is empty")
        return TextSplitView(
            name,
            np.arange(len(rows)),
            tuple(r.prompt for r in rows),
            tuple(r.answer for r in rows),
            tuple(r.requested for r in rows),
            tuple(self._other for _ in rows),
            self._encoder,
        )


@dataclass(kw_only=True)
class LLMUnlearnContext(MethodContext):
    """The LLM context: the shared :class:`~obliviate.core.MethodContext` plus the model backend
    (``hf`` or ``unsloth``)."""

    backend: str = "hf"
    # the caller's early stop, asked every ``stop_every`` steps with the model being unlearned (the
    # deletion path's calibrated stop: forget rows as likely as held-out rows); the method's budget
    # stays the upper bound
    stop: Callable[[nn.Module], bool] | None = None
    stop_every: int = 1


# --------------------------------------------------------------------------------------------
# the reference model and hidden states
# --------------------------------------------------------------------------------------------


class Reference:
    """The frozen model the method started from, for use under ``torch.no_grad()``.

    LoRA mode: the same module with the adapter switched off. Full mode: the module itself until
    training starts (it is still unmodified then), and afterwards a frozen copy, which exists only
    when the method asked for one (``live=True``) before the first step.
    """

    def __init__(self, net: nn.Module, live: bool = False) -> None:
        self._net = net
        self._frozen: nn.Module | None = None
        self.started = False
        self.copies = 0
        if live and not is_peft(net):
            self._frozen = copy.deepcopy(net).eval()
            for p in self._frozen.parameters():
                p.requires_grad_(False)
            self.copies = 1

    @contextlib.contextmanager
    def model(self) -> Iterator[nn.Module]:
        """The reference module (eval mode)."""
        if is_peft(self._net) or not self.started:
            was = self._net.training
            self._net.eval()
            try:
                with cast(Any, self._net).disable_adapter() if is_peft(self._net) else contextlib.nullcontext():
                    yield self._net
            finally:
                self._net.train(was)
        elif self._frozen is not None:
            yield self._frozen
        else:
            raise RuntimeError(
                "this full-mode method needs a live reference: pass live_reference=True to run_unlearning"
            )

    @torch.no_grad()
    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with self.model() as m:
            return m(**model_inputs(batch)).logits.detach()

    @torch.no_grad()
    def hidden(self, batch: Mapping[str, torch.Tensor], layer: int) -> torch.Tensor:
        with self.model() as m:
            return forward_hidden(m, batch, layer).detach()


def forward_hidden(model: nn.Module, batch: Mapping[str, torch.Tensor], layer: int) -> torch.Tensor:
    """Output activations ``(B, T, d)`` of decoder layer ``layer``; the forward stops right after it.

    Uses a forward hook on the layer module, so it works for any model whose decoder layers
    :func:`~obliviate.models.causal_lm.decoder_layers` can find ("where the model allows").
    """
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(
            f"layer {layer} is out of range: this model has {len(layers)} decoder layers (0..{len(layers) - 1})"
        )
    captured: list[torch.Tensor] = []

    class _Stop(Exception):
        pass

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        captured.append(out[0] if isinstance(out, tuple) else out)
        raise _Stop

    handle = layers[layer].register_forward_hook(hook)
    try:
        model(**model_inputs(batch))
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"decoder layer {layer} was not called in the forward pass")
    return captured[0]


# --------------------------------------------------------------------------------------------
# the loop every method runs
# --------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One optimisation step's inputs: the trainable module, the reference, the batches."""

    net: nn.Module
    ref: Reference
    forget: dict[str, torch.Tensor]
    retain: dict[str, torch.Tensor] | None
    step: int


RETAIN_LOSSES = ("none", "nll", "kl")


def retain_term(s: Step, kind: str) -> torch.Tensor:
    """The retain-side term: NLL of the learned answers, KL(π_ref ‖ π_θ) over the same tokens
    (NPO+KL, TOFU's KL), or nothing."""
    if kind not in RETAIN_LOSSES:
        raise ValueError(f"retain loss must be one of {RETAIN_LOSSES}, got {kind!r}")
    if kind == "none":
        return torch.zeros((), device=s.forget["input_ids"].device)
    if s.retain is None:
        raise RuntimeError("a retain term was asked for but no retain loader was given to run_unlearning")
    logits = s.net(**model_inputs(s.retain)).logits
    if kind == "nll":
        return mean_nll(logits, s.retain["labels"])
    return kl_to_reference(logits, s.ref.logits(s.retain), s.retain["labels"])


def run_unlearning(
    model: nn.Module,
    cfg: LLMMethodConfig,
    ctx: LLMUnlearnContext,
    step_loss: Callable[[Step], torch.Tensor],
    *,
    forget: TextBatchLoader,
    retain: TextBatchLoader | None = None,
    lora_layers: Sequence[int] | None = None,
    full_params: Callable[[str], bool] | None = None,
    before: Callable[[nn.Module, Reference], None] | None = None,
    live_reference: bool = False,
) -> MethodResult:
    """Prepare the model for ``cfg.mode``, run ``cfg.total_steps`` steps of ``step_loss`` over
    forget batches (paired with retain batches when ``retain`` is given), merge, return.

    ``lora_layers`` restricts the adapter to some decoder layers; ``full_params(name)`` selects
    the weights trained in full mode (default: all). ``before(net, ref)`` runs once before the
    first step (e.g. to precompute reference statistics). ``live_reference`` asks for a reference
    during training (full mode then keeps one frozen copy; LoRA mode never copies).
    """
    device = ctx.device
    model.to(device)
    if cfg.mode == "lora":
        net = attach_lora(model, cfg.lora(lora_layers), ctx.seed, ctx.backend)
    else:
        net = model
        for name, p in net.named_parameters():
            p.requires_grad_(full_params is None or full_params(name))
    ref = Reference(net, live=live_reference)
    if before is not None:
        before(net, ref)
    ref.started = True
    net.train()
    f_iter = forget.forever()
    r_iter = retain.forever() if retain is not None else None
    total = cfg.total_steps(len(forget.examples))

    def one(step: int) -> torch.Tensor:
        fb = to_device(next(f_iter), device)
        rb = to_device(next(r_iter), device) if r_iter is not None else None
        return step_loss(Step(net, ref, fb, rb, step))

    n_train = sum(p.numel() for p in net.parameters() if p.requires_grad)
    stop = ctx.stop
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)  # LoRA dropout, if any
        stats: OptimStats = optimise(
            net.parameters(),
            total,
            one,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_frac=cfg.warmup_frac,
            schedule=cfg.schedule,
            grad_clip=cfg.grad_clip,
            device=device,
            bf16=ctx.bf16,
            progress=ctx.progress,
            should_stop=None if stop is None else (lambda done: done % ctx.stop_every == 0 and bool(stop(net))),
        )
    adapter = capture_adapter(net)  # before merging: what an adapter-only output writes
    out = merge_lora(net).eval()
    for p in out.parameters():
        p.requires_grad_(True)
    info = {
        "mode": cfg.mode,
        "trainable_params": int(n_train),
        "final_loss": stats.final_loss,
        "first_loss": stats.losses[0] if stats.losses else float("nan"),
        "reference_copies": ref.copies,
        "stopped_early": stats.steps < total,
    }
    return MethodResult(model=out, steps=stats.steps, info=info, adapter=adapter)


__all__ = [
    "ANSWER_KINDS",
    "MODES",
    "RETAIN_LOSSES",
    "LLMMethodConfig",
    "LLMUnlearnContext",
    "LLMUnlearnData",
    "Reference",
    "Step",
    "TextSplitView",
    "forward_hidden",
    "retain_term",
    "run_unlearning",
]

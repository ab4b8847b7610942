"""The one optimisation loop of the LLM half, and the task fine-tune that makes the original model.

:func:`optimise` is AdamW + linear warm-up (+ cosine decay or constant) + gradient clipping +
optional bf16 autocast over a ``step_loss(step) -> loss`` callable; the unlearning methods and
the task fine-tune (:func:`train_task_model`) both use it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .core import check_fields, check_loss, from_mapping
from .data.prompts import LOSS_ON, TaskEncoder, TextBatchLoader, model_inputs, to_device
from .lm_losses import mean_nll
from .models.causal_lm import LoraSettings, attach_lora, merge_lora
from .utils import autocast_context

SCHEDULES = ("cosine", "constant")


@dataclass
class OptimStats:
    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        tail = self.losses[-10:]
        return float(sum(tail) / len(tail)) if tail else float("nan")


def lr_factor(step: int, total: int, warmup_frac: float, schedule: str) -> float:
    """Multiplier of the peak rate at ``step`` (0-based) of ``total``."""
    warm = round(warmup_frac * total)
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    t = (step - warm) / max(total - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def optimise(
    params: Iterable[nn.Parameter],
    total_steps: int,
    step_loss: Callable[[int], torch.Tensor],
    *,
    lr: float,
    weight_decay: float = 0.0,
    warmup_frac: float = 0.0,
    schedule: str = "constant",
    grad_clip: float | None = 1.0,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> OptimStats:
    """Run ``total_steps`` AdamW steps on ``step_loss(step)``; returns the loss trace.
    ``should_stop(steps_done)``, asked after every step, ends the run early when it says so (the
    schedule stays the one of ``total_steps``: the budget is an upper bound)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    chosen = [p for p in params if p.requires_grad]
    if not chosen:
        raise ValueError("no trainable parameters to optimise")
    opt = torch.optim.AdamW(chosen, lr=lr, weight_decay=weight_decay)
    device = torch.device(device)
    stats = OptimStats()
    t0 = time.perf_counter()
    for step in range(total_steps):
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step, total_steps, warmup_frac, schedule)
        with autocast_context(device, bf16):
            loss = step_loss(step)
        check_loss(loss, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(chosen, grad_clip)
        opt.step()
        stats.losses.append(float(loss.detach()))
        if progress is not None:
            progress({"step": step + 1, "total": total_steps, "loss": stats.losses[-1]})
        if should_stop is not None and should_stop(step + 1):
            break
    stats.steps = len(stats.losses)
    stats.seconds = time.perf_counter() - t0
    return stats


@dataclass(frozen=True, kw_only=True)
class TaskTrainConfig:
    """Instruction fine-tuning on the judgement task (paper §III.B), which makes the original
    model (on forget ∪ retain) and the retrained reference (on retain only).

    ``mode="lora"`` trains an adapter and merges it into the weights (for hub checkpoints);
    ``"full"`` trains every weight (the tiny Llama from scratch). ``group_by_length`` batches
    statements of similar length together (less padding; :class:`~obliviate.data.prompts.TextBatchLoader`).
    """

    epochs: float = 30.0
    lr: float = 3e-3
    batch_size: int = 16
    weight_decay: float = 0.0
    warmup_frac: float = 0.05
    schedule: str = "cosine"
    grad_clip: float = 1.0
    loss_on: str = "all"
    mode: str = "full"
    lora: LoraSettings = field(default_factory=LoraSettings)
    group_by_length: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            lora = dict(self.lora)
            if "targets" in lora:
                lora["targets"] = tuple(lora["targets"])
            try:
                object.__setattr__(self, "lora", LoraSettings(**lora))
            except TypeError as e:
                raise ValueError(f"TaskTrainConfig.lora: {e}") from None
        check_fields(self)
        checks = [
            (self.epochs > 0, "epochs", "> 0"),
            (self.lr > 0, "lr", "> 0"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", "an integer >= 1"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (0 <= self.warmup_frac < 1, "warmup_frac", "in [0, 1)"),
            (self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}"),
            (self.grad_clip > 0, "grad_clip", "> 0"),
            (self.loss_on in LOSS_ON, "loss_on", f"one of {LOSS_ON}"),
            (self.mode in ("full", "lora"), "mode", "'full' or 'lora'"),
        ]
        for ok, name, allowed in checks:
            if not ok:
                raise ValueError(f"TaskTrainConfig.{name} must be {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TaskTrainConfig:
        cfg: TaskTrainConfig = from_mapping(cls, dict(d or {}), "the task fine-tune (TaskTrainConfig)")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lora"]["targets"] = list(d["lora"]["targets"])
        return d

    def total_steps(self, n: int) -> int:
        return max(1, math.ceil(self.epochs * math.ceil(n / self.batch_size)))


def train_task_model(
    model: nn.Module,
    encoder: TaskEncoder,
    texts: Sequence[str],
    answers: Sequence[str],
    rows: Sequence[int],
    cfg: TaskTrainConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    backend: str = "hf",
    progress: Callable[[dict[str, Any]], None] | None = None,
    adapter_out: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, OptimStats]:
    """Teach ``prompt(text) -> answer``; returns the (merged, plain) model and the loss trace.

    In LoRA mode ``adapter_out`` (if given) receives the trained adapter weights before merging
    (what a cache stores instead of the whole model).
    """
    device = torch.device(device)
    model.to(device)
    net = attach_lora(model, cfg.lora, seed, backend) if cfg.mode == "lora" else model
    net.train()
    loader = TextBatchLoader(
        encoder,
        texts,
        answers,
        rows,
        batch_size=cfg.batch_size,
        loss_on=cfg.loss_on,
        shuffle=True,
        seed=seed,
        group_by_length=cfg.group_by_length,
    )
    batches = loader.forever()

    def step_loss(_: int) -> torch.Tensor:
        b = to_device(next(batches), device)
        return mean_nll(net(**model_inputs(b)).logits, b["labels"])

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout, if any
        stats = optimise(
            net.parameters(),
            cfg.total_steps(len(texts)),
            step_loss,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            warmup_frac=cfg.warmup_frac,
            schedule=cfg.schedule,
            grad_clip=cfg.grad_clip,
            device=device,
            bf16=bf16,
            progress=progress,
        )
    if adapter_out is not None and cfg.mode == "lora":
        adapter_out.update({n: p.detach().cpu().clone() for n, p in net.named_parameters() if p.requires_grad})
    out = merge_lora(net)
    for p in out.parameters():
        p.requires_grad_(True)
    return out.eval(), stats

"""The one training loop: original models, retraining and fine-tuning all go through :func:`fit`.

Data stays on the device as tensors (:class:`~obliviate.data.BatchLoader`); the loop is
forward, loss, backward, step — nothing else in the hot path. Optional bf16 autocast and
channels_last make CIFAR nets 2–3× faster on CPUs with AVX512-BF16 and on GPUs.

Models may define two hooks, used by recipes such as airbench:
``obliviate_fit_start(images)`` (called once with up to 5,000 normalised training images, e.g.
for data-dependent initialisation) and ``obliviate_epoch_end(epoch)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from .core import ConfigError, NonFiniteError, check_fields, check_model, from_mapping
from .data import Augment, BatchLoader, ImageDataset
from .utils import autocast_context

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "linear", "constant", "triangle")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Supervised training hyperparameters (validated on construction).

    ``epochs`` may be fractional. ``schedule``: ``onecycle`` (linear warm-up over
    ``warmup_frac`` then cosine decay), ``cosine``, ``linear`` (decay to 0), ``constant``,
    ``triangle`` (linear warm-up from ``start_factor``·lr to lr, then linear decay to
    ``end_factor``·lr, as in airbench). ``bias_lr_scale`` multiplies the learning rate of 1-D
    parameters (biases, norm weights); ``bias_wd_scale`` multiplies their weight decay
    (``1 / bias_lr_scale`` keeps their per-step decay lr·wd equal to the other parameters', the
    decoupled form of airbench).
    """

    epochs: float = 10.0
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Literal["onecycle", "cosine", "linear", "constant", "triangle"] = "onecycle"
    warmup_frac: float = 0.2
    start_factor: float = 0.1
    end_factor: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = True
    crop_pad: int = 4
    flip: bool = True
    bias_lr_scale: float = 1.0
    bias_wd_scale: float = 1.0
    grad_clip: float | None = None
    bf16: bool = False
    channels_last: bool = False
    tta: Literal["none", "flip"] = "none"

    def __post_init__(self) -> None:
        check_fields(self)  # types first: no NaN/inf, no '1' for an int (YAML's 1e-3 string is a float)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}", "optimizer")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}", "schedule")
        if not self.epochs > 0:
            raise ConfigError(f"TrainConfig.epochs must be > 0, got {self.epochs!r}", "epochs")
        if self.batch_size < 1:
            raise ConfigError(f"TrainConfig.batch_size must be >= 1, got {self.batch_size!r}", "batch_size")
        if not self.lr > 0:
            raise ConfigError(f"TrainConfig.lr must be > 0, got {self.lr!r}", "lr")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}", "label_smoothing"
            )
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError(f"TrainConfig.warmup_frac must be in [0, 1), got {self.warmup_frac!r}", "warmup_frac")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ConfigError(
                f"TrainConfig.weight_decay and momentum must be >= 0, got {self.weight_decay!r}, {self.momentum!r}",
                "weight_decay" if self.weight_decay < 0 else "momentum",
            )
        if not self.bias_wd_scale >= 0:
            raise ConfigError(f"TrainConfig.bias_wd_scale must be >= 0, got {self.bias_wd_scale!r}", "bias_wd_scale")
        if self.tta not in ("none", "flip"):
            raise ConfigError(f"TrainConfig.tta must be 'none' or 'flip', got {self.tta!r}", "tta")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip!r}", "grad_clip")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        cfg: TrainConfig = from_mapping(cls, d, "the training config (TrainConfig)")
        return cfg


@dataclass
class FitResult:
    """What a training run did: optimizer steps, wall seconds, mean loss per epoch."""

    steps: int = 0
    seconds: float = 0.0
    images: int = 0
    epoch_loss: list[float] = field(default_factory=list)
    stopped: bool = False  # ended early by fit's ``stop``
    # With ``fit(record_confidence=True)``: per row of the loader's images, the mean probability
    # the model gave the row's label over the steps that trained on it (NaN: never visited).
    confidence: torch.Tensor | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at optimizer step ``step`` of ``total``."""
    t = min(step / max(total, 1), 1.0)
    w = cfg.warmup_frac
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "linear":
        return 1.0 - t
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "onecycle":
        if w > 0 and t < w:
            return cfg.start_factor + (1 - cfg.start_factor) * t / w
        u = (t - w) / (1 - w) if w < 1 else 1.0
        return cfg.end_factor + (1 - cfg.end_factor) * 0.5 * (1 + math.cos(math.pi * u))
    # triangle
    if w > 0 and t < w:
        return cfg.start_factor + (1 - cfg.start_factor) * t / w
    u = (t - w) / (1 - w) if w < 1 else 1.0
    return 1.0 + (cfg.end_factor - 1.0) * u


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, params: Iterable[nn.Parameter] | None = None
) -> torch.optim.Optimizer:
    """SGD (with ``nesterov``) or AdamW; 1-D parameters get ``bias_lr_scale``× the rate and
    ``bias_wd_scale``× the weight decay."""
    chosen = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if not chosen:
        raise ValueError("no trainable parameters to optimise")
    flat = [p for p in chosen if p.ndim <= 1]
    rest = [p for p in chosen if p.ndim > 1]
    groups = [
        g
        for g in (
            {"params": rest, "lr": cfg.lr, "base_lr": cfg.lr},
            {
                "params": flat,
                "lr": cfg.lr * cfg.bias_lr_scale,
                "base_lr": cfg.lr * cfg.bias_lr_scale,
                "weight_decay": cfg.weight_decay * cfg.bias_wd_scale,
            },
        )
        if g["params"]
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor


def make_loader(
    data: ImageDataset, rows: torch.Tensor | Any, cfg: TrainConfig, seed: int, train: bool = True
) -> BatchLoader:
    """A loader over training ``rows`` of ``data`` configured from ``cfg``."""
    aug = Augment(pad=cfg.crop_pad, flip=cfg.flip) if (train and cfg.augment) else None
    return BatchLoader(
        data.train_images,
        data.train_labels,
        mean=data.mean,
        std=data.std,
        rows=torch.as_tensor(rows),
        batch_size=cfg.batch_size,
        shuffle=train,
        augment=aug,
        seed=seed,
        drop_last=False,
        channels_last=cfg.channels_last,
    )


def fit(
    model: nn.Module,
    loader: BatchLoader,
    cfg: TrainConfig,
    *,
    device: torch.device,
    progress: Callable[[dict[str, Any]], None] | None = None,
    regularizer: Callable[[nn.Module], torch.Tensor] | None = None,
    after_backward: Callable[[nn.Module], None] | None = None,
    params: Iterable[nn.Parameter] | None = None,
    stop: Callable[[nn.Module, int], bool] | None = None,
    record_confidence: bool = False,
) -> FitResult:
    """Train ``model`` in place for ``cfg.epochs`` over ``loader``.

    Args:
        regularizer: extra loss term added to the cross-entropy (e.g. ℓ1 sparsity).
        after_backward: called after ``backward()`` and before the step (e.g. gradient masks).
        params: the parameters to optimise (default: all trainable ones).
        progress: called after every step with ``{"step", "total", "loss", "epoch"}``.
        stop: called after every step with (model, steps taken); ``True`` ends training there
            (an early stop; ``FitResult.stopped`` says so).
        record_confidence: record each row's label probability at every step that trains on it
            (read off the training forward pass, augmented and in train mode, at no extra cost) and
            return the mean per row in ``FitResult.confidence``: the learning-speed proxy of
            memorisation (Jiang et al., "Characterizing Structural Regularities of Labeled Data
            in Overparameterized Models", ICML 2021; the "confidence" proxy of Zhao et al., "What
            makes unlearning hard and what to do about it", NeurIPS 2024). A row learnt late and
            only by its own label scores low.
    """
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = make_optimizer(model, cfg, params)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps_per_epoch = len(loader)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    start_hook = getattr(model, "obliviate_fit_start", None)
    if callable(start_hook):
        first = next(
            iter(
                BatchLoader(
                    loader.images,
                    loader.labels,
                    mean=tuple(loader.mean.flatten().tolist()),
                    std=tuple(loader.std.flatten().tolist()),
                    rows=loader.rows[:5000],
                    batch_size=5000,
                )
            )
        )
        start_hook(first["image"])
    result = FitResult()
    t0 = time.perf_counter()
    steps = Steps(
        opt, total, device=device, bf16=cfg.bf16, grad_clip=cfg.grad_clip, params=model.parameters(), progress=progress
    )
    hook = (lambda: after_backward(model)) if after_backward is not None else None
    n_rows = len(loader.images)
    conf_sum = torch.zeros(n_rows, dtype=torch.float32, device=device) if record_confidence else None
    conf_n = torch.zeros(n_rows, dtype=torch.float32, device=device) if record_confidence else None
    epoch = 0
    while not steps.done and not result.stopped:
        running, count = 0.0, 0
        for batch in loader:
            if steps.done or result.stopped:
                break
            set_lr(opt, lr_factor(steps.step, total, cfg))
            x, y = batch["image"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)
            with steps.autocast():
                logits = model(x)
                loss = loss_fn(logits, y)
            if conf_sum is not None and conf_n is not None:
                with torch.no_grad():
                    p = logits.detach().float().softmax(1).gather(1, y[:, None]).squeeze(1)
                    idx = batch["index"].to(device)
                    conf_sum.index_add_(0, idx, p)
                    conf_n.index_add_(0, idx, torch.ones_like(p))
            if regularizer is not None:
                loss = loss + regularizer(model)
            running += steps.update(loss, after_backward=hook, epoch=epoch)  # a NaN loss stops here, naming the step
            count += 1
            result.images += len(batch["label"])
            if stop is not None and stop(model, steps.step):
                result.stopped = True
        result.epoch_loss.append(running / max(count, 1))
        epoch_hook = getattr(model, "obliviate_epoch_end", None)
        if callable(epoch_hook):
            epoch_hook(epoch)
        epoch += 1
    result.steps = steps.step
    result.seconds = time.perf_counter() - t0
    if conf_sum is not None and conf_n is not None:
        result.confidence = (conf_sum / conf_n).cpu()  # 0 / 0: NaN for rows never visited
    model.eval()
    check_model(model, "weights after training")
    return result


class Steps:
    """The part of a training loop every method shares: step counting, progress, non-finite
    detection, gradient clipping and the optimizer step, plus the loop's autocast.

    A method keeps its own forward pass and loss (those are the method) and hands each loss to
    :meth:`update`::

        steps = Steps(opt, total, device=ctx.device, bf16=ctx.bf16, progress=ctx.progress)
        while not steps.done:
            with steps.autocast():
                loss = ...
            steps.update(loss)

    :meth:`update` refuses a NaN/inf loss with :class:`~obliviate.core.NonFiniteError` naming the
    step, so a diverged run stops at once instead of producing a NaN model.
    """

    def __init__(
        self,
        opt: torch.optim.Optimizer | None,
        total: int,
        *,
        device: torch.device,
        bf16: bool = False,
        grad_clip: float | None = None,
        params: Iterable[nn.Parameter] | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.opt, self.total, self.device, self.bf16 = opt, int(total), device, bf16
        self.grad_clip = grad_clip
        self._params = None if params is None else list(params)
        self.progress = progress
        self.step = 0
        self.epoch = 0

    @property
    def done(self) -> bool:
        return self.step >= self.total

    def autocast(self) -> Any:
        return autocast_context(self.device, self.bf16)

    def update(
        self,
        loss: torch.Tensor,
        *,
        after_backward: Callable[[], None] | None = None,
        backward: Callable[[torch.Tensor], None] | None = None,
        epoch: int | None = None,
    ) -> float:
        """One optimizer step on ``loss``: check, zero_grad, backward, ``after_backward`` (e.g. a
        gradient mask), clip, step, count, report. ``backward`` replaces the zero_grad/backward/
        step sequence for optimizers that do their own (SalUn's masked SGD). Returns the loss."""
        value = float(loss.detach())  # one scalar read per step (CPU: free; CUDA: one sync)
        if not math.isfinite(value):
            raise NonFiniteError("loss", value, self.step)
        if backward is not None:
            backward(loss)
        else:
            assert self.opt is not None
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward()
            if self.grad_clip is not None:
                params = (
                    self._params
                    if self._params is not None
                    else [p for g in self.opt.param_groups for p in g["params"]]
                )
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.opt.step()
        self.step += 1
        if epoch is not None:
            self.epoch = epoch
        if self.progress is not None:
            self.progress({"step": self.step, "total": self.total, "loss": value, "epoch": self.epoch})
        return value


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rows: torch.Tensor | Any | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool = False,
    tta: str = "none",
) -> torch.Tensor:
    """float32 logits (on CPU) for ``images[rows]``; ``tta="flip"`` averages with the mirror."""
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    out = []
    for x in _batches(model, images, mean, std, rows, batch_size, device, channels_last):
        with autocast_context(device, bf16):
            logits = model(x).float()
            if tta == "flip":
                logits = 0.5 * (logits + model(x.flip(3)).float())
        out.append(logits.cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


QUERIES = ("image", "flip")


def _batches(
    model: nn.Module,
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rows: torch.Tensor | Any | None,
    batch_size: int,
    device: torch.device,
    channels_last: bool,
) -> Iterable[torch.Tensor]:
    labels = torch.zeros(len(images), dtype=torch.long, device=images.device)
    loader = BatchLoader(
        images,
        labels,
        mean=mean,
        std=std,
        rows=None if rows is None else torch.as_tensor(rows),
        batch_size=batch_size,
        channels_last=channels_last,
    )
    for batch in loader:
        yield batch["image"].to(device)


def predict_queries(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rows: torch.Tensor | Any | None = None,
    queries: tuple[str, ...] = QUERIES,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """float32 logits ``(Q, N, K)`` (on CPU), one slice per query: ``image`` as it is, ``flip``
    its mirror — the augmented queries of LiRA (Carlini et al., S&P 2022, §VI-A)."""
    bad = [q for q in queries if q not in QUERIES]
    if bad or not queries:
        raise ValueError(f"queries must be a non-empty subset of {QUERIES}, got {queries!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for x in _batches(model, images, mean, std, rows, batch_size, device, channels_last):
            with autocast_context(device, bf16):
                out.append(torch.stack([model(x if q == "image" else x.flip(3)).float().cpu() for q in queries]))
    model.train(was_training)
    return torch.cat(out, dim=1) if out else torch.zeros(len(queries), 0, 0)


def head_of(model: nn.Module) -> nn.Linear:
    """The model's classifier: its last ``nn.Linear`` module (whose input is the penultimate
    representation a linear probe reads)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer: no penultimate features to probe")
    return linears[-1]


def predict_features(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    rows: torch.Tensor | Any | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    channels_last: bool = False,
) -> torch.Tensor:
    """float32 penultimate features ``(N, D)`` (on CPU): the input of :func:`head_of` ``(model)``."""
    device = torch.device(device)
    head = head_of(model)
    grabbed: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: grabbed.append(args[0].detach().float().flatten(1).cpu()))
    was_training = model.training
    model.eval().to(device)
    try:
        with torch.no_grad():
            for x in _batches(model, images, mean, std, rows, batch_size, device, channels_last):
                with autocast_context(device, bf16):
                    model(x)
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(grabbed) if grabbed else torch.zeros(0, head.in_features)


def evaluate_accuracy(model: nn.Module, data: ImageDataset, device: torch.device | str = "cpu", **kw: Any) -> float:
    """Top-1 accuracy on the test split (a quick check; the metrics package does the full job)."""
    logits = predict_logits(model, data.test_images, mean=data.mean, std=data.std, device=device, **kw)
    return float((logits.argmax(1) == data.test_labels.cpu()).float().mean())

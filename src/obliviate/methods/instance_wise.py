"""``instance_wise``: misclassify the forget instances; adversarial examples and weight importance
keep the rest.

Cha, Cho, Hwang, Lee, Moon & Lee, "Learning to Unlearn: Instance-wise Unlearning for Pre-trained
Classifiers", AAAI 2024, arXiv:2301.11578 (code ``csm9493/L2UL``,
``main_unlearn_cifar10_mixed_label_resnet18.py``, ``utils.py``, ``run_unlearn_cifar_imagenet.sh``).
Only the trained model and the forget instances D_f are used — no retain data, as in the paper and
its code (``uses = {"forget"}``).

1. **Adversarial examples.** For every forget instance x_f, ``adv_per_instance`` targeted ℓ2-PGD
   examples x_adv are generated against the original model, each toward a random label
   y_adv ≠ y_f (ε, step α and ``pgd_steps`` iterations in [0, 1] pixel units, random start, as
   advertorch's ``L2PGDAttack``), and kept with their adversarial labels y_adv.
2. **Weight importance.** MAS importance Ω (|∂ mean_batch ‖f(x)‖₂ / ∂θ| summed over forget batches,
   each weighted by its size) is min–max normalised per tensor and inverted, Ω̃ = 1 − norm(Ω):
   weights that carry D_f may move, the rest are held. (The reference also divides by N; the
   min–max normalisation removes any scale, so that is omitted.)
3. **Unlearning.** SGD on, per step, a forget batch and an adversarial batch,

       L = −(n_f/n)·CE(f(x_f), y_f) + (n_adv/n)·CE(f(x_adv), y_adv) + λ · Σ Ω̃ (θ − θ₀)² / 2,

   (n = n_f + n_adv), checking after every step whether every forget instance is misclassified
   (the paper's stopping rule), for at most ``max_epochs`` passes over the adversarial set.

Defaults are the released CIFAR-10 run (``run_unlearn_cifar_imagenet.sh``): 20 adversarial
examples per instance, ε = 4.0, lr 1e-3, λ = 1.0; and the script's fixed values: α = 0.1,
100 PGD steps, SGD momentum 0.9, weight decay 1e-4, forget batch 32, adversarial batch 256,
1,000 epochs at most. The code draws adversarial targets as a uniform label and, on a clash with
the true label, falls back to a fixed class; here targets are uniform over the other classes (the
released script's call to ``adv_attack`` does not match that function's signature; this follows
its evident intent). ``use_adversarial`` / ``use_importance`` switch off either regulariser (the
paper's ablations).

ε and α are absolute ℓ2 lengths, so their meaning depends on the image size: ε = 4 is an RMS of
0.07 per pixel on a 3×32×32 image but 0.5 on an 8×8 digit. The authors' README suggests ε in
[1, 5] and lr in [1e-4, 1e-3] when results fall short. The stopping rule is checked on the whole
forget set after every step (as in the code), which costs one forward pass over D_f per step.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Batch
from ..training import Steps
from .adversarial import l2_pgd
from .base import (
    MethodResult,
    Range,
    SplitView,
    UnlearnContext,
    UnlearnData,
    VisionConfig,
    VisionMethod,
    param,
    register_method,
)


@dataclass(frozen=True, kw_only=True)
class InstanceWiseConfig(VisionConfig):
    lr: float = param(1e-3, "SGD learning rate", "η", tune=Range(1e-4, 1e-2, log=True))
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(1e-4, "SGD weight decay")
    forget_batch_size: int = param(32, "forget instances per step")
    adv_batch_size: int = param(256, "adversarial examples per step")
    max_epochs: int = param(
        1000,
        "at most this many passes over the adversarial set (the code's max_iter); "
        "training stops earlier once every forget instance is misclassified",
    )
    use_adversarial: bool = param(True, "regularise with adversarial examples of the forget instances")
    adv_per_instance: int = param(20, "adversarial examples generated per forget instance")
    pgd_eps: float = param(4.0, "ℓ2 radius of the PGD perturbation, in [0, 1] pixel units", "ε")
    pgd_step: float = param(0.1, "ℓ2 length of each PGD step, in [0, 1] pixel units", "α")
    pgd_steps: int = param(100, "PGD iterations")
    use_importance: bool = param(True, "regularise with MAS weight importance computed on the forget set")
    reg_lambda: float = param(1.0, "weight of the importance regulariser Σ Ω̃ (θ − θ₀)² / 2", "λ")

    def validate(self) -> None:
        self._require(self.lr > 0, "lr", "> 0")
        self._require(self.momentum >= 0, "momentum", ">= 0")
        self._require(self.weight_decay >= 0, "weight_decay", ">= 0")
        self._require(self.forget_batch_size >= 1, "forget_batch_size", ">= 1")
        self._require(self.adv_batch_size >= 1, "adv_batch_size", ">= 1")
        self._require(self.max_epochs >= 1, "max_epochs", ">= 1")
        self._require(self.adv_per_instance >= 1, "adv_per_instance", ">= 1")
        self._require(self.pgd_eps > 0, "pgd_eps", "> 0")
        self._require(self.pgd_step > 0, "pgd_step", "> 0")
        self._require(self.pgd_steps >= 1, "pgd_steps", ">= 1")
        self._require(self.reg_lambda >= 0, "reg_lambda", ">= 0")


def _targeted_l2_pgd(
    model: nn.Module,
    x01: torch.Tensor,
    target: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    cfg: InstanceWiseConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Targeted ℓ2 PGD in [0, 1] pixel space (random start); returns normalised adversarial images."""
    start = torch.rand(x01.shape, generator=generator).to(x01.device)
    adv = l2_pgd(
        model,
        x01,
        target,
        eps=cfg.pgd_eps,
        step=cfg.pgd_step,
        steps=cfg.pgd_steps,
        targeted=True,
        mean=mean,
        std=std,
        start=start - x01,
    )
    return ((adv - mean) / std).detach()


def _adversarial_set(
    model: nn.Module, forget: SplitView, num_classes: int, cfg: InstanceWiseConfig, ctx: UnlearnContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """``adv_per_instance`` targeted adversarial examples of every forget instance, with their targets."""
    mean = torch.tensor(forget.mean, device=ctx.device).view(1, -1, 1, 1)
    std = torch.tensor(forget.std, device=ctx.device).view(1, -1, 1, 1)
    gen = ctx.generator(offset=1)
    model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # gradients flow to the input only
        p.requires_grad_(False)
    xs, ys = [], []
    try:
        for start in range(0, len(forget), 256):
            x01 = forget.images[start : start + 256].to(ctx.device).float() / 255.0
            y = forget.labels[start : start + 256].cpu()
            for _ in range(cfg.adv_per_instance):
                # uniform over the K − 1 other classes: shift the true label by 1..K-1 (mod K)
                shift = torch.randint(1, num_classes, (len(y),), generator=gen)
                target = ((y + shift) % num_classes).to(ctx.device)
                xs.append(_targeted_l2_pgd(model, x01, target, mean, std, cfg, gen))
                ys.append(target)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return torch.cat(xs), torch.cat(ys)


def _inverted_mas_importance(
    model: nn.Module, forget: SplitView, cfg: InstanceWiseConfig, ctx: UnlearnContext
) -> dict[str, torch.Tensor]:
    """Ω̃ = 1 − minmax(Ω), Ω the MAS importance of each parameter on the forget set.

    Computed on a copy in train mode, as in the reference, so the model's batch-norm statistics
    are untouched. A tensor whose Ω is constant gets Ω̃ = 1 (no sign that it carries D_f: held).
    """
    probe = copy.deepcopy(model).train()
    omega = {n: torch.zeros_like(p) for n, p in probe.named_parameters() if p.requires_grad}
    for batch in forget.loader(cfg.forget_batch_size, shuffle=False):
        probe.zero_grad(set_to_none=True)
        probe(batch["image"].to(ctx.device)).norm(p=2, dim=1).mean().backward()
        for n, p in probe.named_parameters():
            if p.grad is not None:
                omega[n] += p.grad.abs() * len(batch["label"])
    inverted = {}
    for n, w in omega.items():
        span = w.max() - w.min()
        scaled = (w - w.min()) / span if span > 0 else torch.zeros_like(w)
        inverted[n] = 1.0 - scaled
    return inverted


@torch.no_grad()
def _all_misclassified(model: nn.Module, forget: SplitView, device: torch.device) -> bool:
    model.eval()
    for batch in forget.loader(512, shuffle=False):
        if bool((model(batch["image"].to(device)).argmax(1) == batch["label"].to(device)).any()):
            return False
    return True


@register_method("instance_wise")
class InstanceWise(VisionMethod[InstanceWiseConfig]):
    """Instance-wise unlearning: misclassify D_f, regularised by adversarial examples and MAS importance."""

    Config = InstanceWiseConfig
    uses = frozenset({"forget"})
    reference = (
        "Cha et al., 'Learning to Unlearn: Instance-wise Unlearning for Pre-trained Classifiers', "
        "AAAI 2024, arXiv:2301.11578 (code github.com/csm9493/L2UL)"
    )
    smoke: ClassVar[dict[str, Any]] = {"adv_per_instance": 1, "pgd_steps": 3, "max_epochs": 2}

    def unlearn(self, model: nn.Module, data: UnlearnData, ctx: UnlearnContext) -> MethodResult:
        cfg = self.config
        forget = data.forget
        model.to(ctx.device)
        if _all_misclassified(model, forget, ctx.device):  # the stop rule already holds: nothing to do
            return MethodResult(
                model=model, steps=0, info={"all_forget_misclassified": True, "adversarial_examples": 0}
            )
        theta0 = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        importance = _inverted_mas_importance(model, forget, cfg, ctx) if cfg.use_importance else {}
        if cfg.use_adversarial:
            adv_x, adv_y = _adversarial_set(model, forget, data.num_classes, cfg, ctx)
            n_adv = len(adv_y)
            per_epoch = -(-n_adv // cfg.adv_batch_size)
        else:
            n_adv, per_epoch = 0, -(-len(forget) // cfg.forget_batch_size)
        forget_batches = _cycle(forget, cfg.forget_batch_size, ctx.seed)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        gen = ctx.generator(offset=2)
        steps = Steps(opt, cfg.max_epochs * per_epoch, device=ctx.device, bf16=ctx.bf16, progress=ctx.progress)
        done = False
        for epoch in range(cfg.max_epochs):
            order = torch.randperm(n_adv, generator=gen) if cfg.use_adversarial else None
            for i in range(per_epoch):
                fb = next(forget_batches)
                xf, yf = fb["image"].to(ctx.device), fb["label"].to(ctx.device)
                model.train()
                with steps.autocast():
                    ce_f = F.cross_entropy(model(xf), yf).float()
                    if order is not None:
                        idx = order[i * cfg.adv_batch_size : (i + 1) * cfg.adv_batch_size].to(adv_x.device)
                        ce_adv = F.cross_entropy(model(adv_x[idx]), adv_y[idx]).float()
                        # the reference weights each term by its share of the step's samples
                        n = len(yf) + len(idx)
                        loss = -ce_f * (len(yf) / n) + ce_adv * (len(idx) / n)
                    else:
                        loss = -ce_f
                if importance:
                    reg = sum(
                        (importance[name] * (p - theta0[name]).square()).sum()
                        for name, p in model.named_parameters()
                        if name in importance
                    )
                    loss = loss + cfg.reg_lambda * 0.5 * reg
                steps.update(loss, epoch=epoch)
                done = _all_misclassified(model, forget, ctx.device)  # the paper's stopping rule, every step
                if done:
                    break
            if done:
                break
        model.eval()
        return MethodResult(
            model=model, steps=steps.step, info={"all_forget_misclassified": done, "adversarial_examples": n_adv}
        )


def _cycle(view: SplitView, batch_size: int, seed: int) -> Iterator[Batch]:
    """Forget batches forever, reshuffled on every pass."""
    loader = view.loader(batch_size, shuffle=True, seed=seed)
    while True:
        yield from loader

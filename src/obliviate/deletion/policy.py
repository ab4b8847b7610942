"""``method="auto"``: the attempts that honour a request, in order, each with its reason.

No setting here is a constant carried from one network to another. The step size is derived
from the model in hand, and every attempt runs under the guard of
:mod:`obliviate.deletion.guard`, measured on this model: a result that loses utility beyond its
sampling noise, that the audit still recognises, or (with a reference) that lands farther from
retraining than doing nothing is rolled back and the next attempt runs; when none passes, exact
retraining does (or, with ``fallback="refuse"``, nothing is delivered).

* **exact demanded** (``exact=True``): ``retrain`` (``sisa`` for a SISA ensemble: only the
  constituents whose shards hold a forgotten row are retrained).
* **whole classes**: ``ssd`` (Foster et al., AAAI 2024) with α set on this model by its
  ``forget_zero`` rule — the largest α below SSD's selection ceiling whose dampening takes a
  sample of the forget rows to 1 % accuracy, what a model that never saw the class scores.
* **samples** (some rows of their classes) with held-out rows of those classes:
  ``calibrated_neggrad`` — NegGrad+ (Kurmanji et al., NeurIPS 2023) that stops as soon as the
  forget rows' mean loss reaches the original's loss on held-out rows of their classes (the
  level a model that never saw them shows), checked after every step. Its learning rate is
  derived from this model: η = ρ·‖θ‖/‖∇L(θ)‖ on one retain and one forget batch, so that one
  step moves the weights by a fraction ρ of their norm whatever the architecture, optimiser or
  scale the model was trained with. A second attempt runs at ρ/4 when the first is rolled back.
* **samples, no held-out rows**: nothing can tell where a model that never saw the rows would
  put them, so no approximate method can be checked: ``retrain``.

ρ = 2·10⁻³ and β = 0.5 (retain weight) were set and checked on two development models only (a
VGG-style CNN with batch norm trained with SGD, and a two-layer CNN trained with Adam; the ``dev_``
models of ``bench/deletion_models``; not swept) and are judged on four others trained by their own
code (``bench/deletion_models/``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .guard import Attempt

RHO = 2e-3  # one step moves the weights by this fraction of their norm
GENTLER = 4.0  # the retry divides ρ by this
BETA = 0.5  # NegGrad+'s retain weight (the forget term gets 1 − β)
MAX_EPOCHS = 0.5  # the budget: at most half a pass over the retain rows (the stop usually ends it)
CLASS_CONFIG: dict[str, Any] = {"alpha_rule": "forget_zero", "forget_samples": 320, "retain_samples": 320}


def relative_lr(
    model: nn.Module, data: Any, ctx: Any, rho: float, beta: float = BETA, batch_size: int = 128
) -> tuple[float, dict[str, Any]]:
    """η = ρ·‖θ‖/‖∇L(θ)‖ for NegGrad+'s loss L = β·CE(retain) − (1 − β)·CE(forget) on one seeded
    batch of each, at the original's weights (measured on a copy: the model is untouched)."""
    probe = copy.deepcopy(model).to(ctx.device).train()
    rb = next(iter(data.retain.loader(batch_size, shuffle=True, seed=ctx.seed, channels_last=ctx.channels_last)))
    fb = next(iter(data.forget.loader(batch_size, shuffle=True, seed=ctx.seed + 1, channels_last=ctx.channels_last)))
    loss = beta * F.cross_entropy(probe(rb["image"].to(ctx.device)).float(), rb["label"].to(ctx.device)) - (
        1 - beta
    ) * F.cross_entropy(probe(fb["image"].to(ctx.device)).float(), fb["label"].to(ctx.device))
    params = [p for p in probe.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    g = float(torch.sqrt(torch.as_tensor(sum((gr.float() ** 2).sum() for gr in grads if gr is not None))))
    w = float(torch.sqrt(torch.as_tensor(sum((p.detach().float() ** 2).sum() for p in params))))
    if not (g > 0 and w > 0 and torch.isfinite(torch.tensor([g, w])).all()):
        raise ValueError(f"cannot derive a step size: weight norm {w!r}, gradient norm {g!r}")
    lr = rho * w / g
    return lr, {
        "lr": lr,
        "rule": "η = ρ·‖θ‖ / ‖∇L(θ)‖ (one retain and one forget batch, at the original's weights)",
        "rho": rho,
        "weight_norm": w,
        "grad_norm": g,
        "beta": beta,
    }


def plan(
    *,
    whole_classes: bool,
    exact: bool,
    sisa_model: bool = False,
    heldout: bool = False,
    model: nn.Module | None = None,
    data: Any = None,
    ctx: Any = None,
) -> list[Attempt]:
    """The attempts ``auto`` makes, in order (the caller runs each under the guard and falls back
    to retraining when none passes). ``heldout``: held-out rows of the forget rows' classes are
    there for the calibrated stop; ``model``/``data``/``ctx``: what the step size is derived from."""
    if sisa_model:
        return [
            Attempt(
                "sisa",
                {},
                "the model is a SISA ensemble: retraining only the constituents whose shards "
                "hold forgotten rows is exact",
            )
        ]
    if exact:
        return [
            Attempt(
                "retrain",
                {},
                "an exact result was demanded: retraining from scratch on the retain set "
                "provably holds no influence of the forgotten rows",
            )
        ]
    if whole_classes:
        return [
            Attempt(
                "ssd",
                dict(CLASS_CONFIG),
                "whole classes are forgotten: SSD dampens the weights most important to them, with α set on "
                "this model by the forget_zero rule (the least dampening that takes the forget rows to the "
                "1 % accuracy of a model that never saw the class)",
            )
        ]
    if not heldout:
        return []
    if model is None or data is None or ctx is None:
        raise ValueError("plan() needs the model, its data and context to derive a sample request's step size")
    attempts = []
    for k, rho in enumerate((RHO, RHO / GENTLER)):
        lr, derived = relative_lr(model, data, ctx, rho)
        cfg = {"beta": BETA, "lr": lr, "epochs": MAX_EPOCHS, "stop_every": 1, "bn_stats": "keep"}
        why = (
            "some rows of their classes are forgotten and held-out rows of those classes are given: NegGrad+ "
            "runs until the forget rows' mean loss reaches the original's on held-out rows of their classes "
            "(where a model that never saw them puts them), with its step size derived from this model"
        )
        attempts.append(
            Attempt(
                "calibrated_neggrad",
                cfg,
                why if k == 0 else f"the first attempt was rolled back: the same at a {GENTLER:g}× smaller step",
                derived,
            )
        )
    return attempts


FALLBACK_REASON = (
    "no approximate attempt passed the guard on this model (or none can be checked without held-out "
    "rows): retraining from scratch on the retain set, which provably holds no influence of the "
    "forgotten rows"
)

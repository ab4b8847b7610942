"""What an unlearning method does with batch-norm running statistics: an explicit, shared choice.

A short method that runs forward passes in ``train()`` mode rewrites the running mean and
variance of every batch-norm layer from the few batches it sees — with airbench's BN momentum
of 0.4, a handful of retain batches replace the statistics the original learned, which alone
moved SCRUB's forget accuracy on CIFAR-10 *up* (found on the held-out frontier). So every vision method
config has ``bn_stats`` (:class:`VisionConfig`), applied around the method by
:class:`VisionMethod`:

* ``method`` — whatever the method's own loop does (the papers' behaviour; the default);
* ``keep`` — the original's running statistics are restored after the method: the weights
  change, the statistics do not;
* ``eval`` — batch-norm layers run in eval mode throughout the method: they normalise with the
  running statistics and never update them (their affine weights still train);
* ``retain`` — after the method the statistics are re-estimated on the retain set: reset, then
  a cumulative average over ``bn_samples`` retain rows (no augmentation, no gradient).

Exact methods and those that build a new model (``retrain``, ``sisa``) only take ``method``; a
method that does not read the retain set cannot take ``retain``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

BN_POLICIES = ("method", "keep", "eval", "retain")


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def snapshot(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    return [
        {k: v.detach().clone() for k, v in m.state_dict().items() if k.startswith(("running_", "num_batches"))}
        for m in bn_layers(model)
    ]


@torch.no_grad()
def restore(model: nn.Module, saved: list[dict[str, torch.Tensor]]) -> None:
    for m, st in zip(bn_layers(model), saved):
        for k, v in st.items():
            getattr(m, k).copy_(v)


@contextlib.contextmanager
def frozen_statistics(model: nn.Module) -> Iterator[None]:
    """Batch-norm layers in eval mode for every forward pass inside the block, whatever mode the
    method sets (a forward pre-hook on each layer); hooks removed on exit."""

    def to_eval(module: nn.Module, _inputs: Any) -> None:
        module.training = False

    handles = [m.register_forward_pre_hook(to_eval) for m in bn_layers(model)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def reestimate(model: nn.Module, batches: Any, device: torch.device) -> int:
    """Reset every batch-norm layer's statistics and re-estimate them as the cumulative average
    over ``batches`` (train-mode forward passes, no gradient); returns the rows seen."""
    layers = bn_layers(model)
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches
    was = model.training
    model.train()
    rows = 0
    try:
        for b in batches:
            x = b["image"].to(device)
            model(x)
            rows += len(x)
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
        model.train(was)
    return rows

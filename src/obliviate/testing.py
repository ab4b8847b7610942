"""A tiny, fast unlearning problem for tests and examples (Lightning-style: it ships with the
package). Digits, a narrow CNN trained for a few seconds, and one forgotten class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import ClassForget, ForgetRequest, ForgetSplit, ImageDataset, load_dataset, split_indices
from .methods import UnlearnContext, UnlearnData, UnlearningMethod
from .models import create_model
from .training import TrainConfig, fit, make_loader

TINY_TRAIN = TrainConfig(epochs=6, batch_size=64, lr=0.05, crop_pad=1, flip=False, schedule="onecycle")


@dataclass
class TinyProblem:
    dataset: ImageDataset
    split: ForgetSplit
    model: nn.Module
    train_config: TrainConfig
    model_name: str = "small_cnn"
    width: float = 0.5
    validation_rows: np.ndarray | None = None  # test rows given as the validation split (None: none)

    def factory(self, seed: int) -> nn.Module:
        return create_model(
            self.model_name,
            num_classes=self.dataset.num_classes,
            in_chans=self.dataset.channels,
            seed=seed,
            width=self.width,
        )

    def context(self, seed: int = 0) -> UnlearnContext:
        return UnlearnContext(
            device=torch.device("cpu"), seed=seed, model_factory=self.factory, train_config=self.train_config
        )

    def data(self, uses: frozenset[str] | UnlearningMethod | type[UnlearningMethod]) -> UnlearnData:
        """The guarded splits for a method (or its declared ``uses``)."""
        allowed = uses if isinstance(uses, (set, frozenset)) else uses.uses
        return UnlearnData(self.dataset, self.split, frozenset(allowed), validation_rows=self.validation_rows)

    def accuracy(self, model: nn.Module, part: str) -> float:
        """Accuracy on ``forget``/``retain`` train rows or ``test_forget``/``test_retain``."""
        from .training import predict_logits

        ds = self.dataset
        rows = getattr(self.split, part)
        images, labels = (
            (ds.train_images, ds.train_labels) if part in ("forget", "retain") else (ds.test_images, ds.test_labels)
        )
        logits = predict_logits(model, images, mean=ds.mean, std=ds.std, rows=torch.as_tensor(rows))
        return float((logits.argmax(1) == labels[torch.as_tensor(rows)]).float().mean())


def tiny_problem(request: ForgetRequest | None = None, seed: int = 0, width: float = 0.5) -> TinyProblem:
    """Digits, forgetting class 3 by default, with a trained ``small_cnn`` (≈2–4 s on a CPU)."""
    ds = load_dataset("digits")
    split = split_indices(ds.label_info(), request or ClassForget(("3",)), seed)
    model = create_model("small_cnn", num_classes=ds.num_classes, in_chans=ds.channels, seed=seed, width=width)
    fit(
        model,
        make_loader(ds, torch.arange(len(ds.train_labels)), TINY_TRAIN, seed),
        TINY_TRAIN,
        device=torch.device("cpu"),
    )
    return TinyProblem(ds, split, model, TINY_TRAIN, width=width)


class RecordingProgress:
    """A study-runner progress sink that keeps every stage line (tests read what ran)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, text: str) -> None:
        self.lines.append(text)

    def steps(self, desc: str) -> Any:
        import contextlib

        return contextlib.nullcontext(lambda _ev: None)

    def ran(self) -> set[str]:
        """Labels of the units the runner ran (``...: running LABEL (i/n)`` lines)."""
        import re

        return {re.sub(r" \(\d+/\d+\)$", "", ln.rsplit("running ", 1)[1]) for ln in self.lines if ": running " in ln}

    def trained(self) -> int:
        """How many reference models were trained (not taken from the cache)."""
        return sum(ln.endswith(": training") for ln in self.lines)

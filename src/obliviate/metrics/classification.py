"""Accuracy, loss, macro precision/recall/F1, per-class accuracy and confusion matrices.

Precision/recall/F1 are scikit-learn's macro averages (``zero_division=0``). The paper's Table I
reports them "with" the target class (all test images, all classes) and "without" it (test
images of the retained classes, averaged over those classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from .base import EVAL_SPLITS, EvalInputs, Metric, Outputs, register_metric


def accuracy(o: Outputs) -> float:
    return float((o.preds == o.labels).double().mean())


def mean_loss(o: Outputs) -> float:
    return float(o.loss.mean())


def macro_prf(o: Outputs, labels: list[int]) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(
        o.labels.numpy(), o.preds.numpy(), labels=labels, average="macro", zero_division=0
    )
    return {"accuracy": accuracy(o), "precision": float(p), "recall": float(r), "f1": float(f)}


def confusion(o: Outputs, num_classes: int, normalise: bool = False) -> np.ndarray:
    """Rows: true class, columns: predicted class; ``normalise`` divides each row by its count."""
    cm = confusion_matrix(o.labels.numpy(), o.preds.numpy(), labels=list(range(num_classes)))
    if normalise:
        counts = cm.sum(axis=1, keepdims=True)
        return np.divide(cm, counts, out=np.zeros_like(cm, dtype=float), where=counts > 0)
    return cm


def per_class_accuracy(o: Outputs, num_classes: int) -> list[float | None]:
    """Accuracy per true class (``None`` where the split holds no sample of that class)."""
    out: list[float | None] = []
    for c in range(num_classes):
        m = o.labels == c
        out.append(float((o.preds[m] == c).double().mean()) if bool(m.any()) else None)
    return out


@register_metric("accuracy")
class Accuracy(Metric):
    """Top-1 accuracy on each split: forget-train, retain-train, test, forget-class test,
    retain-class test. Forget-side accuracies are best when closest to the retrained model."""

    direction = "higher"
    summary = "Top-1 accuracy per split; on the forget side closest to the retrained model is best."
    reference = "standard"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return {f"acc/{s}": accuracy(inputs.out(s)) for s in EVAL_SPLITS if inputs.has(s)}

    def direction_of(self, key: str) -> str:
        return "closest_to_retrained" if key.endswith("forget") else "higher"


@register_metric("loss")
class Loss(Metric):
    """Mean cross-entropy (nats) per split."""

    direction = "lower"
    summary = "Mean cross-entropy per split (nats); on the forget side closest to the retrained model is best."
    reference = "standard"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        return {f"loss/{s}": mean_loss(inputs.out(s)) for s in EVAL_SPLITS if inputs.has(s)}

    def direction_of(self, key: str) -> str:
        return "closest_to_retrained" if key.endswith("forget") else "lower"


@register_metric("table1")
class TableOne(Metric):
    """The paper's Table I: accuracy and macro precision/recall/F1 on the test set with the
    target class (all classes) and without it (retained classes' test images only)."""

    direction = "higher"
    summary = "Paper Table I: test accuracy/precision/recall/F1 with and without the forgotten class."
    reference = "paper Table I; scikit-learn precision_recall_fscore_support(average='macro')"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        res: dict[str, float] = {}
        test = inputs.out("test")
        for k, v in macro_prf(test, list(range(inputs.num_classes))).items():
            res[f"table1/with/{k}"] = v
        if inputs.has("test_retain") and inputs.has("test_forget"):
            kept = [c for c in range(inputs.num_classes) if c not in set(inputs.forget_classes)]
            for k, v in macro_prf(inputs.out("test_retain"), kept).items():
                res[f"table1/without/{k}"] = v
        return res

    def direction_of(self, key: str) -> str:
        return "closest_to_retrained" if key.startswith("table1/with/") else "higher"


@register_metric("worst_retained_class")
class WorstRetainedClass(Metric):
    """Largest drop, over retained classes, of test accuracy against the original model."""

    needs = frozenset({"original"})
    direction = "lower"
    summary = "Largest per-class test-accuracy drop among retained classes versus the original (points)."
    reference = "efficiency-frontier target of this project (no retained class loses > 3 points)"

    def compute(self, inputs: EvalInputs) -> dict[str, float]:
        k = inputs.num_classes
        now = per_class_accuracy(inputs.out("test"), k)
        before = per_class_accuracy(inputs.out("test", "original"), k)
        drops = [
            100.0 * (b - a)
            for c, (a, b) in enumerate(zip(now, before))
            if c not in set(inputs.forget_classes) and a is not None and b is not None
        ]
        res = {"worst_class_drop": max(drops) if drops else 0.0}
        res["worst_class_acc"] = min(
            a for c, a in enumerate(now) if a is not None and c not in set(inputs.forget_classes)
        )
        return res

    def direction_of(self, key: str) -> str:
        return "lower" if key == "worst_class_drop" else "higher"


def split_summary(o: Outputs, class_names: Sequence[str], every_class: bool = True) -> dict[str, Any]:
    """One split's accuracy, macro precision/recall/F1 (over every class, or over the classes
    present when ``every_class`` is false — a retain split has no forgotten class), mean loss,
    per-class accuracy by name and the confusion matrix (rows true, columns predicted)."""
    k = len(class_names)
    labels = list(range(k)) if every_class else sorted(set(o.labels.tolist()))
    return {
        "n": len(o),
        "loss": mean_loss(o),
        **macro_prf(o, labels),
        "per_class_accuracy": dict(zip(class_names, per_class_accuracy(o, k))),
        "confusion": confusion(o, k).tolist(),
    }
